"""``python -m kvmha_forensics``: the same as the ``kvmha-forensics`` command."""

from .entry import main

main()
