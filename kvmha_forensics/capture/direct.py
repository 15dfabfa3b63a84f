"""Guest memory read straight from the QEMU process into an ELF core, QEMU's dump format.

:mod:`.hostpages` says which pages may hold data; every other page is zero and becomes part of
a ``p_filesz = 0`` segment, so the program headers, which come first in the file, are known
before any guest byte is read. The notes come next: the kernel's VMCOREINFO note is looked for
first, in guest-physical order (a Linux guest allocates it early at boot: a few MiB in). Then
one pass reads the pages that may hold data, chunk by chunk; threads hash each chunk as the
file has it (a chunked sha256, :mod:`.chunksum`, on both cores) while others write its non-zero
pages, all-zero pages staying holes of the file.
Nothing is ever written to QEMU's memory.
"""

from __future__ import annotations

import bisect
import mmap
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import OperationTimeout
from ..sources.registers import VcpuRegisters
from ..x86.cpunotes import cpu_notes
from .chunksum import Chunks
from .elfwrite import BUFFERS, MAX_SEGMENTS, CoreWriter, Load
from .guestram import RamRange
from .hostpages import PAGE, Extent, HostMemory, runs

CHUNK_PAGES = 2048  # 8 MiB per read and write
MIN_HOLE_PAGES = 16  # zero runs shorter than 64 KiB stay inside their data segment
_ZERO_PAGE = bytes(PAGE)
_SAMPLES = range(0, PAGE, PAGE // 8)
_ONE = bytes([0] + [1] * 255)
_ZEROS = memoryview(bytes(CHUNK_PAGES * PAGE))
_VMCOREINFO = b"VMCOREINFO\0\0OSRELEASE="
_MAX_NOTE = 16 << 10

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) of the segments in the file."""


@dataclass(frozen=True, slots=True)
class DirectResult:
    """The core written, and what it took."""

    chunks: Chunks
    size: int
    examined: int  # bytes that may hold data, all read
    written: int  # bytes of non-zero guest pages written (zero pages are holes)
    segments: int
    vmcoreinfo: bool

    def summary(self) -> str:
        mb = 1 << 20
        return (f"{self.examined / mb:.0f} MiB examined, {self.written / mb:.0f} MiB non-zero "
                f"written in {self.segments} segments"
                + ("" if self.vmcoreinfo else "; no VMCOREINFO note in guest memory"))  # fmt: skip


def write_core(
    pid: int,
    ranges: list[RamRange],
    vcpus: list[VcpuRegisters],
    fd: int,
    progress: Progress,
    expired: Callable[[], bool] = lambda: False,
) -> DirectResult:
    """Write the ELF core of QEMU process ``pid``'s guest RAM ``ranges`` to ``fd`` (synced).

    ``expired`` is asked at every chunk: when it says so, :class:`OperationTimeout` ends it."""
    with HostMemory(pid) as host:
        plans, examined, loads = plan_reads(host, ranges)
        total = sum(load.size for load in loads if load.in_file)
        step = stepper(progress, expired, total)
        writer = CoreWriter(fd, loads, CHUNK_PAGES * PAGE)
        try:
            pieces = file_pieces(ranges, loads)
            ring = [writer.ahead(k) for k in range(BUFFERS)]
            held, note = look_ahead(host, plans, pieces, ring, lambda: step(0))
            writer.start(cpu_notes(vcpus) + note)
            done = 0
            for size, pages in held:
                step(done)
                writer.buffer()  # the held buffer, in turn
                writer.submit(size, pages)
                done += size
            _write(host, plans, pieces[len(held) :], writer, step, done)
            chunks = writer.finish()
        except BaseException:
            writer.close()
            raise
    written = total - writer.holes
    return DirectResult(chunks, writer.size, examined, written, 1 + len(loads), bool(note))


def plan_reads(
    host: HostMemory, ranges: list[RamRange]
) -> tuple[list[list[Extent]], int, list[Load]]:
    """Each range's extents that may hold data, the bytes they cover, and the ELF segments
    (data runs and zero holes) of ``ranges``."""
    plans = [host.plan(r) for r in ranges]
    examined = sum(e.count for plan in plans for e in plan) * PAGE
    masks = [may_hold_data(plan, r.size // PAGE) for plan, r in zip(plans, ranges, strict=True)]
    return plans, examined, segments(ranges, masks)


def stepper(progress: Progress, expired: Callable[[], bool], total: int) -> Callable[[int], None]:
    """What a writer calls before each piece: :class:`OperationTimeout` once ``expired``
    says so, else ``progress(done, total)``."""

    def step(done: int) -> None:
        if expired():
            raise OperationTimeout("the memory read did not finish before the deadline")
        progress(done, total)

    return step


def may_hold_data(plan: list[Extent], pages: int) -> bytearray:
    """1 for each page of a range that ``plan`` says may hold data."""
    mask = bytearray(pages)
    for extent in plan:
        mask[extent.first : extent.first + extent.count] = b"\1" * extent.count
    return mask


Piece = tuple[int, int, int]
"""Pages ``[first, first + count)`` of RAM range ``index``: (index, first, count)."""


def file_pieces(ranges: list[RamRange], loads: list[Load]) -> list[Piece]:
    """The in-file segments' pages in file order, cut in pieces of at most one buffer."""
    out = []
    starts = [r.gpa for r in ranges]
    for load in loads:
        if load.in_file:
            i = bisect.bisect_right(starts, load.paddr) - 1
            first = (load.paddr - ranges[i].gpa) // PAGE
            count = load.size // PAGE
            out += [(i, first + skip, min(CHUNK_PAGES, count - skip))
                    for skip in range(0, count, CHUNK_PAGES)]  # fmt: skip
    return out


def look_ahead(
    host: HostMemory, plans: list[list[Extent]], pieces: list[Piece], ring: list[mmap.mmap],
    tick: Callable[[], None],
) -> tuple[list[tuple[int, bytearray]], bytes]:  # fmt: skip
    """Find the guest kernel's VMCOREINFO note (b"" if none), which goes in the header, before
    any page: the first pieces are read into the ``ring`` of buffers (each with its non-zero
    pages: the list returned), to be written once the header is, so that a note found among
    them (the usual case: Linux allocates it early at boot) costs no second read. Past them,
    the search reads on into a buffer of its own, and those pieces are read again."""
    held: list[tuple[int, bytearray]] = []
    for k, (i, first, count) in enumerate(pieces[: len(ring)]):
        tick()
        buffer = ring[k]
        fill(host, plans[i], first, count, memoryview(buffer)[: count * PAGE])
        held.append((count * PAGE, nonzero_pages(buffer, count)))
        note = find_note(buffer, count * PAGE)
        if note:
            return held, note
    scratch = bytearray(CHUNK_PAGES * PAGE)
    for i, first, count in pieces[len(ring) :]:
        tick()
        fill(host, plans[i], first, count, memoryview(scratch)[: count * PAGE])
        note = find_note(scratch, count * PAGE)
        if note:
            return held, note
    return held, b""


def nonzero_pages(buffer: bytearray | mmap.mmap, n: int) -> bytearray:
    """1 for each of the first ``n`` pages of ``buffer`` that holds a non-zero byte.

    A few bytes of every page are looked at first, all pages at once (strided slices, OR-ed as
    integers): a page with data almost always shows it there. Only pages whose samples are all
    zero are compared in full."""
    seen = 0
    for offset in _SAMPLES:
        seen |= int.from_bytes(buffer[offset : n * PAGE : PAGE], "little")
    mask = bytearray(seen.to_bytes(n, "little").translate(_ONE))
    pos = mask.find(0)
    while pos != -1:
        if buffer[pos * PAGE : (pos + 1) * PAGE] != _ZERO_PAGE:
            mask[pos] = 1
        pos = mask.find(0, pos + 1)
    return mask


def find_note(buffer: bytearray | mmap.mmap, size: int) -> bytes:
    """The kernel's VMCOREINFO ELF note (``vmcoreinfo_note``, page-aligned), if in ``buffer``."""
    pos = buffer.find(_VMCOREINFO, 0, size)
    while pos != -1:
        start = pos - 12
        if start >= 0:
            namesz, descsz, kind = struct.unpack_from("<III", buffer, start)
            end = pos + 12 + ((descsz + 3) & ~3)
            if namesz == 11 and kind == 0 and descsz <= _MAX_NOTE and end <= size:
                return bytes(buffer[start:end])
        pos = buffer.find(_VMCOREINFO, pos + 1, size)
    return b""


def segments(ranges: list[RamRange], masks: list[bytearray]) -> list[Load]:
    """PT_LOAD segments covering every range: non-zero runs in the file, zero runs not. Zero
    runs shorter than the minimum hole stay in the file, the minimum doubling until the count
    fits an ELF header."""
    hole = MIN_HOLE_PAGES
    while True:
        loads: list[Load] = []
        for ram, mask in zip(ranges, masks, strict=True):
            loads += _range_loads(ram, mask, hole)
        if len(loads) <= MAX_SEGMENTS:
            return loads
        hole *= 2


def _range_loads(ram: RamRange, mask: bytearray, hole: int) -> list[Load]:
    merged: list[list[int]] = []
    for a, b in runs(mask):
        if merged and a - merged[-1][1] < hole:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    loads, pos = [], 0
    for a, b in merged:
        if a > pos:
            loads.append(Load(ram.gpa + pos * PAGE, (a - pos) * PAGE, False))
        loads.append(Load(ram.gpa + a * PAGE, (b - a) * PAGE, True))
        pos = b
    if pos < len(mask):
        loads.append(Load(ram.gpa + pos * PAGE, (len(mask) - pos) * PAGE, False))
    return loads


def _write(
    host: HostMemory,
    plans: list[list[Extent]],
    pieces: list[Piece],
    writer: CoreWriter,
    progress: Callable[[int], None],
    done: int,
) -> None:
    """Read each piece into the writer's next buffer and submit it with the pages that are
    not all zero; ``done`` bytes were submitted before."""
    for i, first, count in pieces:
        progress(done)
        buffer = writer.buffer()
        fill(host, plans[i], first, count, memoryview(buffer)[: count * PAGE])
        writer.submit(count * PAGE, nonzero_pages(buffer, count))
        done += count * PAGE
    progress(done)


def fill(host: HostMemory, plan: list[Extent], first: int, count: int, view: memoryview) -> None:
    """Pages ``[first, first + count)`` of a range into ``view``: read where ``plan`` has
    data, zero elsewhere."""
    end, pos = first + count, first
    i = max(bisect.bisect_right(plan, first, key=lambda e: e.first) - 1, 0)
    while i < len(plan) and plan[i].first < end:
        extent = plan[i]
        a, b = max(extent.first, pos), min(extent.first + extent.count, end)
        if b > a:
            if a > pos:
                view[(pos - first) * PAGE : (a - first) * PAGE] = _ZEROS[: (a - pos) * PAGE]
            host.read(extent, a - extent.first, view[(a - first) * PAGE : (b - first) * PAGE])
            pos = b
        i += 1
    if pos < end:
        view[(pos - first) * PAGE :] = _ZEROS[: (end - pos) * PAGE]
