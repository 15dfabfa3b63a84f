"""Compare two ELF memory dumps guest-physical page by page, whatever their segments."""

from __future__ import annotations

from pathlib import Path

from kvmha_forensics.sources.elfcore import read_core
from kvmha_forensics.x86.paging import ElfMemory

CHUNK = 8 << 20
PAGE = 4096


def covered(path: Path) -> list[tuple[int, int]]:
    """The guest-physical ``[start, end)`` ranges a dump covers, merged."""
    with path.open("rb") as f:
        spans = sorted((s.paddr, s.paddr + s.memsz) for s in read_core(f).loads)
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def differing_pages(ours: Path, theirs: Path) -> list[int]:
    """Guest-physical addresses of the pages whose bytes differ (first 20)."""
    assert covered(ours) == covered(theirs)
    a, b = ElfMemory(ours), ElfMemory(theirs)
    found: list[int] = []
    try:
        for start, end in covered(theirs):
            for at in range(start, end, CHUNK):
                size = min(CHUNK, end - at)
                x, y = a.read(at, size), b.read(at, size)
                assert x is not None and y is not None
                if x != y:
                    found += [at + o for o in range(0, size, PAGE)
                              if x[o : o + PAGE] != y[o : o + PAGE]]  # fmt: skip
                if len(found) >= 20:
                    return found[:20]
    finally:
        a.close()
        b.close()
    return found
