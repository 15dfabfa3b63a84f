"""Parsers of raw evidence: QEMU stderr logs and x86 register dumps."""
