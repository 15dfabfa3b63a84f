"""VMCOREINFO: the kernel's description of itself that drgn and crash need to read a dump.

QEMU stores it as an ELF note when the guest handed it over (``-device vmcoreinfo`` plus the
guest's ``qemu_fw_cfg`` driver). When it did not, the text still sits in guest memory
(``vmcoreinfo_data``, starting with ``OSRELEASE=``): :func:`scan` recovers it.
"""

from __future__ import annotations

import struct
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import NoteSegment

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
        return _note(path)
    except (ELFError, struct.error, ValueError, OSError):
        return None


def _note(path: Path) -> str | None:
    with path.open("rb") as f:
        elf = ELFFile(f)
        for segment in elf.iter_segments():
            if not isinstance(segment, NoteSegment):
                continue
            for note in segment.iter_notes():
                if note["n_name"] == "VMCOREINFO":
                    desc = note["n_desc"]
                    raw = desc.encode("latin-1") if isinstance(desc, str) else bytes(desc)
                    return raw.split(b"\0", 1)[0].decode("ascii", "replace")
    return None


def scan(path: Path) -> str | None:
    """Find VMCOREINFO text in a memory image by its first line, reading in bounded chunks."""
    overlap = MAX_SIZE
    with path.open("rb") as f:
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
