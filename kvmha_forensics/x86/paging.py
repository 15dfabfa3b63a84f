"""Guest virtual → physical translation by walking the guest's page tables in a memory dump.

Intel SDM vol. 3A ch. 4: with CR0.PG clear, linear = physical; 32-bit paging (2 levels,
4-byte entries, 4 MiB pages with CR4.PSE); PAE (CR4.PAE: a 4-entry PDPT, then 8-byte entries,
2 MiB pages); 4-level and 5-level (CR4.LA57) paging in long mode (EFER.LMA), with 1 GiB and
2 MiB pages. Only the dump is read: nothing here touches the live guest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from ..errors import InputError
from ..input_files import open_input, opened
from ..sources.elfcore import ElfError, read_core
from .modes import CR0_PG, EFER_LMA

CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
CR4_LA57 = 1 << 12
PRESENT = 1
PAGE_SIZE_BIT = 1 << 7
ADDR_MASK = 0x000F_FFFF_FFFF_F000


class PhysicalMemory(Protocol):
    """Guest-physical memory: bytes, and little-endian table entries."""

    def read(self, physical: int, size: int) -> bytes | None: ...

    def word(self, address: int, width: int) -> int | None: ...


class ElfMemory:
    """Guest-physical reads from a QEMU ELF dump (its PT_LOAD segments, by p_paddr)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with opened(path) as f:
                self.segments = read_core(f).loads
        except (ElfError, OSError, InputError):
            self.segments = ()
        self._fd = open_input(path)

    def close(self) -> None:
        os.close(self._fd)

    def read(self, physical: int, size: int) -> bytes | None:
        """``size`` bytes at ``physical``, or None when any of them is not in the dump. Bytes
        a segment covers past its ``p_filesz`` are zero (the ELF rule)."""
        out = bytearray()
        while len(out) < size:
            at = physical + len(out)
            seg = next((s for s in self.segments if s.paddr <= at < s.paddr + s.memsz), None)
            if seg is None:
                return None
            want = min(size - len(out), seg.paddr + seg.memsz - at)
            inside = max(0, min(want, seg.paddr + seg.filesz - at))
            data = os.pread(self._fd, inside, seg.offset + at - seg.paddr) if inside else b""
            if len(data) != inside:
                return None
            out += data + bytes(want - inside)
        return bytes(out)

    def word(self, address: int, width: int) -> int | None:
        """A little-endian 4- or 8-byte entry at ``address``."""
        raw = self.read(address, width)
        return int.from_bytes(raw, "little") if raw else None


def _walk(mem: PhysicalMemory, table: int, linear: int, shifts: tuple[int, ...], width: int,
          large: frozenset[int]) -> int | None:  # fmt: skip
    """Walk tables indexed by ``linear >> shift`` (9 or 10 bits); ``large`` are the shifts at
    which a PS bit maps a large page."""
    index_bits = 10 if width == 4 else 9
    for shift in shifts:
        index = (linear >> shift) & ((1 << index_bits) - 1)
        entry = mem.word(table + index * width, width)
        if entry is None or not entry & PRESENT:
            return None
        if shift in large and entry & PAGE_SIZE_BIT:
            if width == 4:  # a 4 MiB page: bits 31:22, and PSE-36 bits 20:13 → 39:32
                base = (entry & 0xFFC0_0000) | ((entry >> 13) & 0xFF) << 32
            else:
                base = entry & ADDR_MASK & ~((1 << shift) - 1)
            return base | (linear & ((1 << shift) - 1))
        table = entry & (0xFFFF_F000 if width == 4 else ADDR_MASK)
    return table | (linear & 0xFFF)


def translate(
    mem: PhysicalMemory, cr0: int, cr3: int, cr4: int, efer: int, linear: int
) -> int | None:
    """The guest-physical address of ``linear`` under these control registers, or None."""
    if not cr0 & CR0_PG:
        return linear
    if efer & EFER_LMA:
        shifts = (48, 39, 30, 21, 12) if cr4 & CR4_LA57 else (39, 30, 21, 12)
        return _walk(mem, cr3 & ADDR_MASK, linear, shifts, 8, frozenset({30, 21}))
    if cr4 & CR4_PAE:
        pdpte = mem.word((cr3 & 0xFFFF_FFE0) + ((linear >> 30) & 3) * 8, 8)
        if pdpte is None or not pdpte & PRESENT:
            return None
        return _walk(mem, pdpte & ADDR_MASK, linear, (21, 12), 8, frozenset({21}))
    large = frozenset({22}) if cr4 & CR4_PSE else frozenset()
    return _walk(mem, cr3 & 0xFFFF_F000, linear & 0xFFFF_FFFF, (22, 12), 4, large)


def read_virtual(
    mem: PhysicalMemory, cr0: int, cr3: int, cr4: int, efer: int, linear: int, size: int
) -> bytes | None:
    """``size`` bytes at a linear address, page by page; None if any page is unmapped."""
    out = b""
    while len(out) < size:
        address = linear + len(out)
        chunk = min(size - len(out), 0x1000 - (address & 0xFFF))
        physical = translate(mem, cr0, cr3, cr4, efer, address)
        data = mem.read(physical, chunk) if physical is not None else None
        if data is None:
            return None
        out += data
    return out
