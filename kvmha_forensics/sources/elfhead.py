"""What an ELF file is, from its first bytes (no parsing library needed for that)."""

from __future__ import annotations

ELF_MAGIC = b"\x7fELF"
ET_CORE = 4
HEAD = 18  # e_ident (16 bytes) and e_type


def is_core(head: bytes) -> bool:
    """Whether an ELF header is a core file (e_type ET_CORE), as QEMU's and the kernel's dumps
    are; a header too short to tell is taken as one (the truncation is reported elsewhere)."""
    if len(head) < HEAD:
        return True
    e_type = head[16:HEAD]
    value = int.from_bytes(e_type, "little" if head[5] == 1 else "big")  # EI_DATA: 1 = LSB
    return value == ET_CORE
