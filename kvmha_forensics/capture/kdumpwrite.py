"""Guest memory read straight from the QEMU process into a kdump-compressed file, zlib per page.

The format is makedumpfile's *diskdump* (``KDUMP   ``, header version 6), laid out as QEMU's
``dump-guest-memory`` lays out ``kdump-zlib``, but written as a plain file (QEMU 7.2 writes
the *flattened* stream, which readers cannot open as it is). In blocks of one page: the
header; the sub-header with the ELF notes after it (each vCPU's ``NT_PRSTATUS`` and QEMU CPU
state, then VMCOREINFO); two identical bitmaps with a bit per page frame of guest RAM; a page
descriptor (offset, size, flags) per RAM page in frame order; then the pages: one zero page,
named by the descriptor of every zero page, then each other page compressed with zlib (level
1, as QEMU), or as it is where zlib does not make it smaller. Unlike QEMU, the header's
utsname is filled (libkdumpfile takes a utsname with an empty field for none) and phys_base
is VMCOREINFO's ``NUMBER(phys_base)`` read as the decimal number Linux writes.

The pages that may hold data are found and read as for the ELF core (:mod:`.direct`); they are
compressed on every core (``zlib`` lets go of the GIL) while the next ones are read. The file
is written through the page cache (descriptors and pages go to two places of it at once), then
hashed chunk by chunk on every core as it is on disk (:func:`.chunksum.hash_file`) and synced.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..sources.registers import VcpuRegisters
from ..sources.vmcoreinfo import parse as parse_vmcoreinfo
from ..x86.cpunotes import cpu_notes
from .chunksum import LANES, Chunks, hash_file
from .direct import (
    CHUNK_PAGES,
    Progress,
    file_pieces,
    fill,
    look_ahead,
    nonzero_pages,
    plan_reads,
    stepper,
)
from .elfwrite import BUFFERS
from .guestram import RamRange
from .hostpages import PAGE, HostMemory

HEADER = struct.Struct("<8sI390s6sQQIIIIIIIIII")  # QEMU's DiskDumpHeader64
SUB_HEADER = struct.Struct("<QIIQQQQQQQQQQQ")  # QEMU's KdumpSubHeader64
DESCRIPTOR = struct.Struct("<QIIQ")  # offset, size, flags, page flags
SIGNATURE = b"KDUMP   "
HEADER_VERSION = 6
DUMP_LEVEL = 1
COMPRESSED_ZLIB = 1
LEVEL = 1  # Z_BEST_SPEED, as QEMU
UTS_FIELD = 65
NOTE_HEAD = 12 + 12  # namesz, descsz, type; then "VMCOREINFO\0" padded to 12
_ZERO_RUN = 1 << 15  # zero-page descriptors written at a time


@dataclass(frozen=True, slots=True)
class KdumpResult:
    """The kdump file written, and what it took."""

    chunks: Chunks
    size: int
    examined: int  # bytes that may hold data, all read
    nonzero: int  # bytes of non-zero pages, compressed
    vmcoreinfo: str | None

    def summary(self) -> str:
        mb = 1 << 20
        return (f"{self.examined / mb:.0f} MiB examined, {self.nonzero / mb:.0f} MiB non-zero "
                f"compressed into a {self.size / mb:.0f} MiB kdump file"
                + ("" if self.vmcoreinfo else "; no VMCOREINFO note in guest memory"))  # fmt: skip


def utsname(release: str) -> bytes:
    """The header's utsname as capture fills QEMU's (:func:`..sources.flattened.fix_utsname`)."""
    fields = ("Linux", "(none)", release, "unknown", "x86_64", "(none)")
    return b"".join(f.encode()[: UTS_FIELD - 1].ljust(UTS_FIELD, b"\0") for f in fields)


def bitmap(ranges: list[RamRange]) -> bytearray:
    """A bit per page frame (bit ``pfn % 8`` of byte ``pfn // 8``) set for guest RAM, padded
    to whole blocks."""
    end = max(r.gpa + r.size for r in ranges) // PAGE
    size = (end + 7) // 8
    bits = bytearray((size + PAGE - 1) // PAGE * PAGE)
    for r in ranges:
        a, b = r.gpa // PAGE, (r.gpa + r.size) // PAGE
        while a < b and a % 8:
            bits[a // 8] |= 1 << (a % 8)
            a += 1
        whole = (b - a) // 8
        bits[a // 8 : a // 8 + whole] = b"\xff" * whole
        for pfn in range(a + whole * 8, b):
            bits[pfn // 8] |= 1 << (pfn % 8)
    return bits


def write_kdump(
    pid: int,
    ranges: list[RamRange],
    vcpus: list[VcpuRegisters],
    fd: int,
    progress: Progress,
    expired: Callable[[], bool] = lambda: False,
) -> KdumpResult:
    """Write the kdump-zlib file of QEMU process ``pid``'s guest RAM ``ranges`` to ``fd``
    (hashed and synced). ``expired`` is asked at every piece, as by :func:`.direct.write_core`."""
    ranges = sorted(ranges, key=lambda r: r.gpa)
    with HostMemory(pid) as host:
        plans, examined, loads = plan_reads(host, ranges)
        pieces = file_pieces(ranges, loads)
        total = sum(count for _, _, count in pieces) * PAGE
        step = stepper(progress, expired, total)
        ring = [mmap.mmap(-1, CHUNK_PAGES * PAGE) for _ in range(BUFFERS)]
        pool = ThreadPoolExecutor(LANES, thread_name_prefix="kdump-zlib")
        try:
            held, note = look_ahead(host, plans, pieces, ring, lambda: step(0))
            layout = _Layout(ranges, vcpus, note)
            layout.write_head(fd)
            writer = _PageWriter(fd, layout, pool)
            bases, done = layout.bases, 0
            for k, (i, first, count) in enumerate(pieces):
                step(done)
                done += count * PAGE
                buffer = ring[k % len(ring)]
                writer.drain(keep=1)  # pieces before k - 1 written: their buffers are free
                if k < len(held):
                    mask = held[k][1]
                else:
                    fill(host, plans[i], first, count, memoryview(buffer)[: count * PAGE])
                    mask = nonzero_pages(buffer, count)
                writer.submit(bases[i] + first, buffer, count, mask)
            writer.drain(keep=0)
            writer.zero_descriptors_until(layout.pages)
            step(total)
        finally:
            pool.shutdown(cancel_futures=True)  # waits for a page being compressed
            for buffer in ring:
                with contextlib.suppress(BufferError):
                    buffer.close()
    size = writer.end
    chunks = hash_file(fd, size)
    os.fsync(fd)
    info = layout.vmcoreinfo
    return KdumpResult(chunks, size, examined, writer.nonzero, info)


class _Layout:
    """Where each part of the file goes, and its head (header, sub-header, notes, bitmaps)."""

    def __init__(self, ranges: list[RamRange], vcpus: list[VcpuRegisters], note: bytes) -> None:
        self.cpu_notes = cpu_notes(vcpus)
        self.note = note
        self.nr_cpus = len(vcpus)
        self.info_size = struct.unpack_from("<I", note, 4)[0] if note else 0
        text = note[NOTE_HEAD : NOTE_HEAD + self.info_size]
        self.vmcoreinfo = text.decode(errors="replace") if note else None
        self.bits = bitmap(ranges)
        self.max_mapnr = max(r.gpa + r.size for r in ranges) // PAGE
        self.pages = sum(r.size for r in ranges) // PAGE
        self.bases: list[int] = []
        base = 0
        for r in ranges:
            self.bases.append(base)
            base += r.size // PAGE
        notes = len(self.cpu_notes) + len(note)
        self.sub_blocks = -(-(SUB_HEADER.size + notes) // PAGE)
        self.bitmap_blocks = 2 * len(self.bits) // PAGE
        self.descriptors = (1 + self.sub_blocks + self.bitmap_blocks) * PAGE
        self.zero_page = self.descriptors + DESCRIPTOR.size * self.pages
        self.data = self.zero_page + PAGE

    def write_head(self, fd: int) -> None:
        """The header, sub-header, notes and bitmaps, and the one zero page."""
        info = parse_vmcoreinfo(self.vmcoreinfo or "")
        try:
            phys_base = int(info.get("NUMBER(phys_base)", "0")) % (1 << 64)
        except ValueError:
            phys_base = 0
        header = HEADER.pack(
            SIGNATURE, HEADER_VERSION, utsname(info.get("OSRELEASE", "unknown")), bytes(6), 0, 0,
            COMPRESSED_ZLIB, PAGE, self.sub_blocks, self.bitmap_blocks,
            min(self.max_mapnr, 0xFFFFFFFF), 0, 0, 0, 0, self.nr_cpus,
        )  # fmt: skip
        at_notes = PAGE + SUB_HEADER.size
        at_info = at_notes + len(self.cpu_notes) + NOTE_HEAD if self.note else 0
        notes = self.cpu_notes + self.note
        sub = SUB_HEADER.pack(
            phys_base, DUMP_LEVEL, 0, 0, 0, at_info, self.info_size, at_notes, len(notes), 0,
            0, 0, 0, self.max_mapnr,
        )  # fmt: skip
        head = bytearray(self.descriptors)
        head[: HEADER.size] = header
        head[PAGE : PAGE + SUB_HEADER.size] = sub
        head[at_notes : at_notes + len(notes)] = notes
        bitmaps = (1 + self.sub_blocks) * PAGE
        head[bitmaps : bitmaps + len(self.bits)] = self.bits
        head[bitmaps + len(self.bits) : bitmaps + 2 * len(self.bits)] = self.bits
        _pwrite_all(fd, head, 0)
        _pwrite_all(fd, bytes(PAGE), self.zero_page)


Compressed = list[bytes | None]
"""Each page's zlib stream, or None where it is not smaller than the page."""


def _compress(view: memoryview, pages: list[int]) -> Compressed:
    out: Compressed = []
    for p in pages:
        packed = zlib.compress(view[p * PAGE : (p + 1) * PAGE], LEVEL)
        out.append(packed if len(packed) < PAGE else None)
    return out


class _PageWriter:
    """Compresses each piece's non-zero pages on the pool's threads, and writes the pieces in
    order as they are done: their pages after the ones before, their descriptors in place
    (zero pages name the one zero page)."""

    def __init__(self, fd: int, layout: _Layout, pool: ThreadPoolExecutor) -> None:
        self.fd = fd
        self.layout = layout
        self.pool = pool
        self.end = layout.data
        self.next_descriptor = 0  # index of the first descriptor not written yet
        self.nonzero = 0
        self.zero = DESCRIPTOR.pack(layout.zero_page, PAGE, 0, 0)
        self.pending: deque[tuple[int, mmap.mmap, bytearray, list[Future[Compressed]]]] = deque()

    def submit(self, index: int, buffer: mmap.mmap, count: int, mask: bytearray) -> None:
        """Piece of ``count`` pages in ``buffer``, the first being RAM page ``index``; ``mask``
        says which are not all zero. ``buffer`` is used until :meth:`drain` writes it."""
        pages = [p for p in range(count) if mask[p]]
        view = memoryview(buffer)
        cut = -(-len(pages) // LANES)
        jobs = [self.pool.submit(_compress, view, pages[j : j + cut])
                for j in range(0, len(pages), cut)] if pages else []  # fmt: skip
        self.pending.append((index, buffer, mask[:count], jobs))

    def drain(self, keep: int) -> None:
        """Write the pieces done but the last ``keep`` (whose pages are being compressed)."""
        while len(self.pending) > keep:
            index, buffer, mask, jobs = self.pending.popleft()
            packed = [c for job in jobs for c in job.result()]
            self._write(index, buffer, mask, packed)

    def _write(self, index: int, buffer: mmap.mmap, mask: bytearray, packed: Compressed) -> None:
        self.zero_descriptors_until(index)
        descriptors, data = [], []
        at, k = self.end, 0
        for p, nonzero in enumerate(mask):
            if not nonzero:
                descriptors.append(self.zero)
                continue
            page = packed[k]
            k += 1
            if page is None:
                page = buffer[p * PAGE : (p + 1) * PAGE]
                descriptors.append(DESCRIPTOR.pack(at, PAGE, 0, 0))
            else:
                descriptors.append(DESCRIPTOR.pack(at, len(page), COMPRESSED_ZLIB, 0))
            data.append(page)
            at += len(page)
        _pwrite_all(self.fd, b"".join(data), self.end)
        self.end = at
        self.nonzero += k * PAGE
        self._descriptors(b"".join(descriptors), len(mask))

    def zero_descriptors_until(self, index: int) -> None:
        """Zero-page descriptors for the RAM pages up to ``index`` not written yet."""
        while self.next_descriptor < index:
            n = min(index - self.next_descriptor, _ZERO_RUN)
            self._descriptors(self.zero * n, n)

    def _descriptors(self, raw: bytes, count: int) -> None:
        at = self.layout.descriptors + self.next_descriptor * DESCRIPTOR.size
        _pwrite_all(self.fd, raw, at)
        self.next_descriptor += count


def _pwrite_all(fd: int, data: bytes | bytearray, at: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, at)
        view, at = view[n:], at + n
