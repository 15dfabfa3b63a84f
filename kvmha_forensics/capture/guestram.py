"""Where a guest's RAM is: its guest-physical ranges and their host addresses in QEMU.

The ranges are those QEMU's own ``dump-guest-memory`` writes: the RAM and ROM ranges of the
flat view of address space ``memory`` (``info mtree -f``), not ROM devices (``romd``), RAM
devices (``ramd``) or non-volatile memory (QEMU's ``guest_phys_blocks_region_add()`` in
``softmmu/memory_mapping.c`` skips those). HMP ``gpa2hva`` gives each range's host address;
ranges contiguous both in the guest and in QEMU are merged, as QEMU merges them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..sources.mtree import Region, parse_mtree

DUMPED_KINDS = frozenset({"ram", "rom"})
_HVA = re.compile(r"is 0x([0-9a-fA-F]+)")


class LayoutError(ValueError):
    """The guest's RAM layout could not be read (no flat view, an unmapped range)."""


@dataclass(frozen=True, slots=True)
class RamRange:
    """Guest-physical ``[gpa, gpa + size)`` at host address ``hva`` in QEMU's process."""

    gpa: int
    size: int
    hva: int
    names: tuple[str, ...]


def dumped_regions(mtree_text: str) -> list[Region]:
    """The ranges of ``info mtree -f`` that QEMU's dump writes, in address order."""
    view = parse_mtree(mtree_text).view("memory")
    if view is None:
        raise LayoutError("info mtree -f has no flat view of address space 'memory'")
    return [r for r in view.regions if r.kind in DUMPED_KINDS and not r.nonvolatile]


async def ram_ranges(mtree_text: str, hmp: Callable[[str], Awaitable[str]]) -> list[RamRange]:
    """Each dumped range with its host address (one ``gpa2hva`` per range), merged."""
    merged: list[RamRange] = []
    for region in dumped_regions(mtree_text):
        reply = await hmp(f"gpa2hva {region.start:#x}")
        found = _HVA.search(reply)
        if found is None:
            raise LayoutError(f"gpa2hva {region.start:#x} gave no host address: {reply.strip()}")
        hva, size = int(found.group(1), 16), region.end - region.start + 1
        last = merged[-1] if merged else None
        if last and last.gpa + last.size == region.start and last.hva + last.size == hva:
            names = last.names + (() if region.name in last.names else (region.name,))
            merged[-1] = RamRange(last.gpa, last.size + size, last.hva, names)
        else:
            merged.append(RamRange(region.start, size, hva, (region.name,)))
    return merged
