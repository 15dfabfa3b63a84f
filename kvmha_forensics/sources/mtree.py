"""Parse QEMU's ``info mtree -f``: the flat views of the guest's address spaces.

Each ``FlatView #N`` section lists the address spaces rendered by it (``AS "memory"``,
``AS "cpu-memory-0"``, ``AS "I/O"``) and its non-overlapping ranges, one a line, as
``mtree_print_flatview()`` in QEMU's ``softmmu/memory.c`` prints them::

    00000000fed00000-00000000fed003ff (prio 0, i/o): hpet
    0000000000100000-000000000fffffff (prio 0, ram): pc.ram @0000000000100000 KVM

The kind is ``memory_region_type()`` (``ram``, ``rom``, ``romd``, ``ramd``, ``i/o``),
optionally prefixed ``nv-`` (non-volatile); ``@offset`` is the offset into the region and a
trailing word such as ``KVM`` the accelerator that maps it. An address in no range is
unassigned. Lines of the hierarchical view (``info mtree`` without ``-f``) are ignored, since
its ranges overlap. Tolerant: never raises; unrecognised lines are counted.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["FlatView", "MemoryMap", "Region", "RegionKind", "parse_mtree"]

RegionKind = Literal["ram", "rom", "romd", "ramd", "i/o", "unknown"]
_KINDS: frozenset[str] = frozenset({"ram", "rom", "romd", "ramd", "i/o"})
#: Kinds whose reads KVM serves from a memory slot (no exit to QEMU's device model).
MEMORY_KINDS: frozenset[str] = frozenset({"ram", "rom", "romd", "ramd"})

_FLATVIEW = re.compile(r"^\s*FlatView #(\d+)")
_AS = re.compile(r'^\s*AS "([^"]*)"')
_ROOT = re.compile(r"^\s*Root memory region:\s*(.*\S)")
_RANGE = re.compile(
    r"^\s*([0-9a-fA-F]+)-([0-9a-fA-F]+)\s+\(prio\s+(-?\d+),\s*(nv-)?([^)]*)\):\s*(.*)$"
)
_TREE = re.compile(r"^\s*address-space:")
# After the kind: the region name (may hold spaces), " @offset", the accelerators that map
# the range (" KVM"), and with -o an owner.
_TAIL = re.compile(
    r"^(?P<name>.*?)(?: @(?P<offset>[0-9a-fA-F]+))?(?P<accel>(?: (?:KVM|TCG|HVF|WHPX|NVMM|Xen))*)"
    r"(?: owner:.*)?$"
)


@dataclass(frozen=True, slots=True)
class Region:
    """One range of a flat view; ``end`` is inclusive, as QEMU prints it."""

    start: int
    end: int
    priority: int
    kind: RegionKind
    name: str
    offset: int | None = None
    accel: str | None = None
    nonvolatile: bool = False

    @property
    def is_memory(self) -> bool:
        """RAM/ROM-backed: KVM reads it without an MMIO exit."""
        return self.kind in MEMORY_KINDS

    def contains(self, address: int) -> bool:
        return self.start <= address <= self.end


@dataclass(frozen=True, slots=True)
class FlatView:
    """One ``FlatView #N``: the address spaces that share it and its sorted ranges."""

    number: int
    address_spaces: tuple[str, ...]
    root: str | None
    regions: tuple[Region, ...]

    def region_at(self, address: int) -> Region | None:
        """The range holding ``address``, or ``None`` (unassigned)."""
        starts = [r.start for r in self.regions]
        i = bisect.bisect_right(starts, address) - 1
        if i >= 0 and self.regions[i].contains(address):
            return self.regions[i]
        return None


@dataclass(frozen=True, slots=True)
class MemoryMap:
    """All flat views of one ``info mtree -f``, and the lines that were not understood."""

    flatviews: tuple[FlatView, ...]
    skipped_lines: int = 0
    hierarchical: bool = False

    def view(self, address_space: str = "memory") -> FlatView | None:
        """The flat view rendering ``address_space`` (``memory`` falls back to ``cpu-memory-0``)."""
        names = [address_space] + (["cpu-memory-0"] if address_space == "memory" else [])
        for name in names:
            for view in self.flatviews:
                if name in view.address_spaces:
                    return view
        return None

    def region_at(self, address: int, address_space: str = "memory") -> Region | None:
        """The range of ``address_space`` that holds ``address``; ``None`` when unassigned
        or when the map has no such address space."""
        view = self.view(address_space)
        return view.region_at(address) if view else None


def _region(m: re.Match[str]) -> Region:
    raw_kind = m.group(5).strip()
    kind: RegionKind = raw_kind if raw_kind in _KINDS else "unknown"  # type: ignore[assignment]
    tail = _TAIL.match(m.group(6).strip())
    assert tail is not None  # every group is optional
    accel = tail.group("accel").split()
    return Region(
        start=int(m.group(1), 16),
        end=int(m.group(2), 16),
        priority=int(m.group(3)),
        kind=kind,
        name=tail.group("name").strip(),
        offset=int(tail.group("offset"), 16) if tail.group("offset") else None,
        accel=accel[0] if accel else None,
        nonvolatile=m.group(4) is not None,
    )


@dataclass(slots=True)
class _Draft:
    number: int
    spaces: list[str]
    root: str | None
    regions: list[Region]

    def freeze(self) -> FlatView:
        ordered = tuple(sorted(self.regions, key=lambda r: r.start))
        return FlatView(self.number, tuple(self.spaces), self.root, ordered)


def parse_mtree(text: str | bytes) -> MemoryMap:
    """Parse ``info mtree -f`` output (bytes are decoded with replacement)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    views: list[FlatView] = []
    draft: _Draft | None = None
    skipped = 0
    hierarchical = False
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _FLATVIEW.match(line)
        if m:
            if draft is not None:
                views.append(draft.freeze())
            draft = _Draft(int(m.group(1)), [], None, [])
            continue
        if _TREE.match(line):
            hierarchical = True
            if draft is not None:
                views.append(draft.freeze())
            draft = None
            continue
        if draft is None:
            skipped += 1
            continue
        if m := _AS.match(line):
            draft.spaces.append(m.group(1))
        elif m := _ROOT.match(line):
            draft.root = m.group(1)
        elif m := _RANGE.match(line):
            region = _region(m)
            if region.end >= region.start:
                draft.regions.append(region)
            else:
                skipped += 1
        elif "No rendered FlatView" not in line:
            skipped += 1
    if draft is not None:
        views.append(draft.freeze())
    return MemoryMap(tuple(views), skipped, hierarchical)
