"""Write an ELF64 core the way QEMU lays out its dump, hashing every byte as it is written.

Layout: the ELF header, the program headers (one ``PT_NOTE``, then the ``PT_LOAD`` segments
in guest-physical order, ``p_vaddr = p_paddr`` as in QEMU's dump without paging), the notes,
then the segments' bytes. A zero run is a ``PT_LOAD`` with ``p_filesz = 0`` and ``p_memsz``
its size: the ELF rule makes readers (drgn, crash, pyelftools) see zeros there, and the file
holds none of them. The file is written in order, hashed chunk by chunk as it has the bytes
(:mod:`.chunksum`; all-zero pages of a segment are left as holes, which read as zeros), and
synced before :meth:`CoreWriter.finish` returns.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import mmap
import os
import struct
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

from ..sources.elfcore import ET_CORE, PT_LOAD, PT_NOTE
from .chunksum import LANES, ChunkHasher, Chunks, chunk_size
from .hostpages import PAGE, runs

EM_X86_64 = 62
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
DATA_ALIGN = 4096
SYNC_FILE_RANGE_WRITE = 2
MAX_SEGMENTS = 0xFFFE  # PT_NOTE + loads stay below PN_XNUM
BUFFERS = 6


@dataclass(frozen=True, slots=True)
class Load:
    """A ``PT_LOAD``: guest-physical ``[paddr, paddr + size)``, its bytes in the file or not."""

    paddr: int
    size: int
    in_file: bool


def _libc_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return cast(Callable[[int, int, int, int], int], fn)


_SYNC_FILE_RANGE = _libc_sync_file_range()


class CoreWriter:
    """Writes one core file to ``fd`` through a ring of page-aligned buffers: :meth:`start`
    with the notes, then for each in-file segment's bytes :meth:`buffer` (fill it) and
    :meth:`submit`, then :meth:`finish` for the chunked sha256. The first buffers may be filled
    before the notes are known (:meth:`ahead`), and submitted after :meth:`start`.

    Threads hash (one per chunk lane) and write each buffer while the caller fills the next;
    pages the caller says are all zero are skipped (holes of the file: no disk write). Where
    the file system allows it, the file is written with ``O_DIRECT``: no copy into the page
    cache, and the bytes are on the device when the write returns (``finish`` then syncs only
    the metadata); elsewhere writeback is started as data accumulates (``sync_file_range``).
    """

    def __init__(self, fd: int, loads: list[Load], chunk: int) -> None:
        if len(loads) > MAX_SEGMENTS:
            raise ValueError(f"{len(loads)} segments: more than an ELF header can count")
        self.fd = fd
        self.loads = loads
        self.notes = b""
        self.chunk = chunk
        self.size = self.holes = 0
        self.direct = _set_direct(fd)
        self.hasher: ChunkHasher | None = None
        self.writer = ThreadPoolExecutor(LANES, thread_name_prefix="core-write")
        self.buffers = [mmap.mmap(-1, chunk) for _ in range(BUFFERS)]
        self.busy: list[list[Future[None]]] = [[] for _ in range(BUFFERS)]
        self.turn = 0
        self.head: mmap.mmap | None = None
        self.head_busy: list[Future[None]] = []

    def data_at(self) -> int:
        """Where the first segment's bytes start: after the headers and notes, aligned."""
        notes_at = EHDR.size + (1 + len(self.loads)) * PHDR.size
        return -(-(notes_at + len(self.notes)) // DATA_ALIGN) * DATA_ALIGN

    def file_size(self) -> int:
        return self.data_at() + sum(load.size for load in self.loads if load.in_file)

    def header(self) -> bytes:
        """The ELF header, program headers, notes, and padding up to the first segment."""
        count = 1 + len(self.loads)
        notes_at = EHDR.size + count * PHDR.size
        data_at = self.data_at()
        ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
        out = [EHDR.pack(ident, ET_CORE, EM_X86_64, 1, 0, EHDR.size, 0, 0, EHDR.size,
                         PHDR.size, count, 0, 0, 0)]  # fmt: skip
        out.append(PHDR.pack(PT_NOTE, 0, notes_at, 0, 0, len(self.notes), len(self.notes), 0))
        offset = data_at
        for load in self.loads:
            filesz = load.size if load.in_file else 0
            out.append(PHDR.pack(PT_LOAD, 0, offset, load.paddr, load.paddr, filesz, load.size, 0))
            offset += filesz
        out.append(self.notes)
        head = b"".join(out)
        return head + bytes(data_at - len(head))

    def start(self, notes: bytes) -> None:
        """Write the header with ``notes`` (a multiple of the page size, as every segment is),
        from a buffer of its own: the ring's buffers may already hold the first segments'
        bytes (:meth:`ahead`)."""
        self.notes = notes
        self.hasher = ChunkHasher(chunk_size(self.file_size()))
        head = self.header()
        self.head = mmap.mmap(-1, len(head))
        self.head[:] = head
        view = memoryview(self.head)
        self.head_busy = self.hasher.update(view)
        self.head_busy.append(self.writer.submit(self._write, view, [(0, len(head))], 0))
        self.size = len(head)

    def ahead(self, k: int) -> mmap.mmap:
        """The ring's ``k``-th buffer from the next one, to fill before :meth:`start`; they
        are then submitted in that order (``k`` below :data:`BUFFERS`)."""
        assert self.hasher is None and k < BUFFERS
        return self.buffers[k]

    def buffer(self) -> mmap.mmap:
        """The next buffer of the ring, once its earlier contents are hashed and written."""
        for pending in self.busy[self.turn]:
            pending.result()
        return self.buffers[self.turn]

    def submit(self, size: int, pages: bytes | bytearray | None = None) -> None:
        """Hash and append the first ``size`` bytes of the buffer :meth:`buffer` gave; with
        ``pages`` (0 or 1 per page), only the pages marked 1 are written, the others are holes."""
        assert self.hasher is not None, "start() first"
        view = memoryview(self.buffers[self.turn])[:size]
        spans = [(0, size)] if pages is None else [(a * PAGE, b * PAGE) for a, b in runs(pages)]
        self.busy[self.turn] = self.hasher.update(view)
        self.busy[self.turn].append(self.writer.submit(self._write, view, spans, self.size))
        self.holes += size - sum(b - a for a, b in spans)
        self.size += size
        self.turn = (self.turn + 1) % BUFFERS

    def _write(self, view: memoryview, spans: list[tuple[int, int]], at: int) -> None:
        """Write ``view``'s ``spans`` at file offset ``at`` on; the rest stays a hole."""
        for a, b in spans:
            done = a
            while done < b:
                done += os.pwritev(self.fd, [view[done:b]], at + done)
        if not self.direct and _SYNC_FILE_RANGE:
            _SYNC_FILE_RANGE(self.fd, at, len(view), SYNC_FILE_RANGE_WRITE)

    def finish(self) -> Chunks:
        """Wait for every buffer, sync the file, and return its chunked sha256."""
        assert self.hasher is not None, "start() first"
        for pending in [*self.head_busy, *(f for turn in self.busy for f in turn)]:
            pending.result()
        self.close()
        os.ftruncate(self.fd, self.size)  # the file may end in a hole
        os.fsync(self.fd)
        return self.hasher.result()

    def close(self) -> None:
        """Stop the threads (dropping queued work) and free the buffers."""
        if self.hasher is not None:
            self.hasher.close()
        self.writer.shutdown(cancel_futures=True)
        self.busy, self.head_busy = [[] for _ in range(BUFFERS)], []
        for buffer in [*self.buffers, *([self.head] if self.head is not None else [])]:
            with contextlib.suppress(BufferError):
                buffer.close()


def _set_direct(fd: int) -> bool:
    """Turn on O_DIRECT for ``fd``; False where the file system refuses it (tmpfs)."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
    except OSError:
        return False
    return True
