"""Write an ELF64 core the way QEMU lays out its dump, hashing every byte as it is written.

Layout: the ELF header, the program headers (one ``PT_NOTE``, then the ``PT_LOAD`` segments
in guest-physical order, ``p_vaddr = p_paddr`` as in QEMU's dump without paging), the notes,
then the segments' bytes. A zero run is a ``PT_LOAD`` with ``p_filesz = 0`` and ``p_memsz``
its size: the ELF rule makes readers (drgn, crash, pyelftools) see zeros there, and the file
holds none of them. Writes are sequential; a thread hashes each buffer while the next is read,
writeback is started as data accumulates (``sync_file_range``), and
:meth:`CoreWriter.finish` syncs the file before returning.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import struct
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

from ..sources.elfcore import ET_CORE, PT_LOAD, PT_NOTE

EM_X86_64 = 62
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
DATA_ALIGN = 4096
WRITEBACK_EVERY = 64 << 20
SYNC_FILE_RANGE_WRITE = 2
MAX_SEGMENTS = 0xFFFE  # PT_NOTE + loads stay below PN_XNUM


@dataclass(frozen=True, slots=True)
class Load:
    """A ``PT_LOAD``: guest-physical ``[paddr, paddr + size)``, its bytes in the file or not."""

    paddr: int
    size: int
    in_file: bool


def _libc_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return cast(Callable[[int, int, int, int], int], fn)


_SYNC_FILE_RANGE = _libc_sync_file_range()


class CoreWriter:
    """Writes one core file to ``fd``: :meth:`start`, :meth:`write` each in-file segment's
    bytes in order, then :meth:`finish` for the sha256."""

    def __init__(self, fd: int, loads: list[Load], notes: bytes) -> None:
        if len(loads) > MAX_SEGMENTS:
            raise ValueError(f"{len(loads)} segments: more than an ELF header can count")
        self.fd = fd
        self.loads = loads
        self.notes = notes
        self.digest = hashlib.sha256()
        self.size = 0
        self.synced = 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="core-hash")
        self.pending: list[Future[None]] = []

    def header(self) -> bytes:
        """The ELF header, program headers, notes, and padding up to the first segment."""
        count = 1 + len(self.loads)
        notes_at = EHDR.size + count * PHDR.size
        data_at = -(-(notes_at + len(self.notes)) // DATA_ALIGN) * DATA_ALIGN
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

    def start(self) -> None:
        self.write(memoryview(self.header()))

    def write(self, data: memoryview) -> Future[None]:
        """Append ``data``; it is hashed in the background: reuse its buffer only once the
        returned future is done."""
        hashed = self.pool.submit(self.digest.update, data)
        self.pending.append(hashed)
        done = 0
        while done < len(data):
            done += os.write(self.fd, data[done:])
        self.size += len(data)
        if _SYNC_FILE_RANGE and self.size - self.synced >= WRITEBACK_EVERY:
            _SYNC_FILE_RANGE(self.fd, self.synced, self.size - self.synced, SYNC_FILE_RANGE_WRITE)
            self.synced = self.size
        if len(self.pending) > 64:
            self.pending = [p for p in self.pending if not p.done()]
        return hashed

    def drain(self) -> None:
        """Wait until every buffer handed to :meth:`write` has been hashed."""
        for pending in self.pending:
            pending.result()
        self.pending.clear()

    def finish(self) -> str:
        """Hash what is left, sync the file to disk, and return its sha256."""
        self.drain()
        self.pool.shutdown()
        os.fsync(self.fd)
        return self.digest.hexdigest()

    def abort(self) -> None:
        self.pool.shutdown(cancel_futures=True)
