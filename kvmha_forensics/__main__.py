"""``python -m kvmha_forensics``: the same as the ``kvmha-forensics`` command."""

from .cli import main

main()
