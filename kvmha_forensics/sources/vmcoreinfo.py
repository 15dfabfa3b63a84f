"""VMCOREINFO: the kernel's description of itself that drgn and crash need to read a dump.

QEMU stores it as an ELF note when the guest handed it over (``-device vmcoreinfo`` plus the
guest's ``qemu_fw_cfg`` driver). When it did not, the text still sits in guest memory
(``vmcoreinfo_data``, starting with ``OSRELEASE=``): :func:`scan` recovers it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..input_files import opened
from .elfcore import ElfError, read_core

MARKER = b"OSRELEASE="
CHUNK = 8 << 20
MAX_SIZE = 16 << 10  # VMCOREINFO_BYTES is one page; allow room


def parse(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines into a dict (the later value wins, as the kernel's readers do)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def _plausible(blob: bytes) -> str | None:
    text = blob.split(b"\0", 1)[0]
    if b"\nPAGESIZE=" not in text or b"\nSYMBOL(" not in text:
        return None
    try:
        return text.decode("ascii")
    except UnicodeDecodeError:
        return None


def from_elf_note(path: Path) -> str | None:
    """The VMCOREINFO note QEMU wrote into an ELF dump, if any (None for a damaged ELF)."""
    try:
        with opened(path) as f:
            for note in read_core(f).notes(f):
                if note.name == "VMCOREINFO":
                    return note.desc.split(b"\0", 1)[0].decode("ascii", "replace")
    except (ElfError, OSError, InputError):
        return None
    return None


def scan(path: Path) -> str | None:
    """Find VMCOREINFO text in a memory image by its first line, reading in bounded chunks."""
    overlap = MAX_SIZE
    with opened(path) as f:
        tail = b""
        while chunk := f.read(CHUNK):
            window = tail + chunk
            start = window.find(MARKER)
            while start != -1:
                if start + MAX_SIZE > len(window) and len(chunk) == CHUNK:
                    break  # may continue in the next chunk: look again with more data
                found = _plausible(window[start : start + MAX_SIZE])
                if found:
                    return found
                start = window.find(MARKER, start + 1)
            tail = window[-overlap:] if start == -1 else window[start:]
    return None
