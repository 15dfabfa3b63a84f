"""ELF core files as QEMU and the kernel write them: the header, program headers and notes.

Capture and analysis need only a dump's PT_LOAD segments and PT_NOTE notes, read here with
``struct``. pyelftools, which reads the vmlinux (:mod:`..debuginfo`), costs ~23 ms to import:
a twentieth of a whole capture, spent before the first byte of the dump is read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

ELF_MAGIC = b"\x7fELF"
ET_CORE = 4
HEAD = 18  # e_ident (16 bytes) and e_type
PT_LOAD = 1
PT_NOTE = 4
PN_XNUM = 0xFFFF  # e_phnum overflow: the real count is section 0's sh_info
MAX_TABLE = 64 << 20  # bytes of program headers: QEMU writes one per RAM block
MAX_NOTES = 64 << 20

# Per ELF class: the header after e_ident, one program header, the field positions in it
# (p_type, p_offset, p_paddr, p_filesz, p_memsz), and where sh_info sits in a section header.
_LAYOUT = {
    1: ("HHIIIIIHHHHHH", "IIIIIIII", (0, 1, 3, 4, 5), 28),
    2: ("HHIQQQIHHHHHH", "IIQQQQQQ", (0, 2, 4, 5, 6), 44),
}


class ElfError(ValueError):
    """Not an ELF file this reader can use (bad magic, class or byte order, cut short)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """A program header; bytes past ``filesz`` up to ``memsz`` read as zero (the ELF rule)."""

    type: int
    offset: int
    paddr: int
    filesz: int
    memsz: int


@dataclass(frozen=True, slots=True)
class Note:
    name: str
    type: int
    desc: bytes


@dataclass(frozen=True, slots=True)
class Core:
    """What a memory dump's ELF headers say: byte order and program headers."""

    order: str
    segments: tuple[Segment, ...]

    @property
    def loads(self) -> tuple[Segment, ...]:
        return tuple(s for s in self.segments if s.type == PT_LOAD)

    def notes(self, f: BinaryIO) -> Iterator[Note]:
        """The notes of every PT_NOTE segment, in file order; a cut-off note ends the walk."""
        for seg in self.segments:
            if seg.type != PT_NOTE:
                continue
            f.seek(seg.offset)
            blob = f.read(min(seg.filesz, MAX_NOTES))
            pos = 0
            while pos + 12 <= len(blob):
                namesz, descsz, kind = struct.unpack_from(self.order + "III", blob, pos)
                start = pos + 12 + _align4(namesz)
                if start + descsz > len(blob):
                    break
                name = blob[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
                yield Note(name.decode("ascii", "replace"), kind, blob[start : start + descsz])
                pos = start + _align4(descsz)


def is_core(head: bytes) -> bool:
    """Whether an ELF header is a core file (e_type ET_CORE), as QEMU's and the kernel's dumps
    are; a header too short to tell is taken as one (the truncation is reported elsewhere)."""
    if len(head) < HEAD:
        return True
    e_type = head[16:HEAD]
    value = int.from_bytes(e_type, "little" if head[5] == 1 else "big")  # EI_DATA: 1 = LSB
    return value == ET_CORE


def read_core(f: BinaryIO) -> Core:
    """The program headers of the ELF file open as ``f``; :class:`ElfError` if unreadable
    (an offset past any possible file included: a seek there fails, or overflows)."""
    try:
        return _read_core(f)
    except (OSError, OverflowError) as exc:
        raise ElfError(f"unreadable headers ({exc})") from exc


def _read_core(f: BinaryIO) -> Core:
    f.seek(0)
    ident = f.read(16)
    if len(ident) < 16 or not ident.startswith(ELF_MAGIC):
        raise ElfError("no ELF magic")
    if ident[4] not in _LAYOUT or ident[5] not in (1, 2):
        raise ElfError(f"unknown ELF class {ident[4]} or byte order {ident[5]}")
    order = "<" if ident[5] == 1 else ">"
    header, phdr, fields, sh_info_at = _LAYOUT[ident[4]]
    raw = f.read(struct.calcsize(order + header))
    if len(raw) < struct.calcsize(order + header):
        raise ElfError("ELF header cut short")
    values = struct.unpack(order + header, raw)
    phoff, shoff, phentsize, phnum = values[4], values[5], values[8], values[9]
    if phnum == PN_XNUM:
        f.seek(shoff + sh_info_at)
        raw = f.read(4)
        if len(raw) < 4:
            raise ElfError("section header 0 (the program header count) cut short")
        (phnum,) = struct.unpack(order + "I", raw)
    size = struct.calcsize(order + phdr)
    if phnum and (phentsize < size or phnum * phentsize > MAX_TABLE):
        raise ElfError(f"implausible program headers: {phnum} of {phentsize} bytes")
    f.seek(phoff)
    table = f.read(phnum * phentsize)
    if len(table) < phnum * phentsize:
        raise ElfError("program headers cut short")
    t, o, p, s, m = fields
    segments = []
    for i in range(phnum):
        v = struct.unpack_from(order + phdr, table, i * phentsize)
        segments.append(Segment(v[t], v[o], v[p], v[s], max(v[m], v[s])))
    return Core(order, tuple(segments))


def _align4(n: int) -> int:
    return (n + 3) & ~3
