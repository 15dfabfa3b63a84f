"""kvmha-forensics: postmortem forensics and the failover-safe signal for frozen KVM guests."""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
