"""Drive ``dump-guest-memory`` into a file the bundle owns, hashing as QEMU writes.

The file is created by us (0600, no symlink followed) and handed to QEMU as the transport can
(:meth:`~..transport.base.Guest.dump_destination`: by descriptor over a QMP unix socket, by
path over TCP, where QEMU must share this host's file system and may write there as its
user). QEMU runs the dump detached; we wait for its ``DUMP_COMPLETED`` event, polling
``query-dump`` for progress in between, so the end is seen when QEMU announces it, not at the
next poll. ELF output is written sequentially, so a reader thread hashes it while it grows
and no second pass over guest-sized data is needed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ForensicsError, OperationTimeout
from ..transport.base import DumpFormat, DumpProgress, Guest
from ..transport.replies import DumpInfo

POLL = 0.05
CHUNK = 8 << 20


class DumpFailed(ForensicsError):
    """QEMU reported the dump as failed, or went away during it."""


class GrowingFileHasher(threading.Thread):
    """Hash a file while another process appends to it; :meth:`finish` drains and returns."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True, name="dump-hasher")
        self._path = path
        self._digest = hashlib.sha256()
        self._done = threading.Event()
        self._abort = threading.Event()
        self.size = 0

    def run(self) -> None:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        with self._path.open("rb", buffering=0) as f:
            while not self._abort.is_set():
                finishing = self._done.is_set()
                got = f.readinto(buffer)
                if got:
                    self._digest.update(view[:got])
                    self.size += got
                elif finishing:
                    return
                else:
                    time.sleep(0.002)

    def finish(self) -> str:
        """Hash what is left once the writer is done; the digest."""
        self._done.set()
        self.join()
        return self._digest.hexdigest()

    def abort(self) -> None:
        """Stop now: the dump failed or was abandoned, and QEMU may still be writing."""
        self._abort.set()
        self.join()


async def dump_memory(
    guest: Guest,
    fd: int,
    path: Path,
    fmt: DumpFormat,
    deadline: Callable[[], tuple[float, str]],
    progress: DumpProgress,
) -> str | None:
    """Dump guest memory to ``fd`` (at ``path``); its sha256 (None when QEMU did not write it
    in one sequential pass); raise :class:`DumpFailed` or a timeout.

    ``deadline`` is asked at every poll, for the time and the limit it comes from (``--timeout``):
    a watcher that is stopping shortens it mid-dump, and says so."""
    protocol = await guest.dump_destination(fd, path)
    hasher = GrowingFileHasher(path) if fmt == "elf" else None
    await guest.execute(
        "dump-guest-memory",
        {"paging": False, "protocol": protocol, "detach": True, "format": fmt},
    )
    if hasher:
        hasher.start()
    completed = False
    try:
        while True:
            info = DumpInfo.from_json(await guest.execute("query-dump"))
            status = info.status
            progress(info.completed, info.total)
            if status == "completed":
                completed = True
                break
            if status == "failed":
                raise DumpFailed(f"QEMU reports the memory dump failed ({_dump_error(guest)})")
            until, limit = deadline()
            if time.monotonic() > until:
                raise OperationTimeout(f"the memory dump did not finish before {limit}")
            await _until_dump_event(guest, POLL)
    finally:
        if hasher and not completed:
            await asyncio.to_thread(hasher.abort)
    digest = await asyncio.to_thread(hasher.finish) if hasher else None
    if hasher and hasher.size != os.fstat(fd).st_size:
        digest = None  # QEMU did not write sequentially after all: hash again later
    return digest


async def _until_dump_event(guest: Guest, timeout: float) -> None:
    """Wait up to ``timeout`` seconds, returning early when QEMU sends ``DUMP_COMPLETED``."""
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        event = await guest.next_event(left)
        if event is None or event.name == "DUMP_COMPLETED":
            return


def _dump_error(guest: Guest) -> str:
    guest.events()  # take in any not yet read
    for event in reversed(guest.seen):
        if event.name == "DUMP_COMPLETED" and "error" in event.data:
            return str(event.data["error"])
    return "no reason given"
