"""What ``watch --socket-dir`` looks at: the QMP sockets in a directory and its immediate
subdirectories, listed again only when something there may have changed.

Linux's inotify (through libc, with ctypes) wakes the watcher when an entry of the directory or
of one of its subdirectories is created, removed or renamed; an idle directory costs nothing.
Where inotify is unavailable (no such call, or the per-user limit of instances or watches is
reached) the directory and its subdirectories' modification times are checked every
:data:`POLL_EVERY` seconds instead, and listed only when one of them changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import struct
from pathlib import Path

from .qmp import Endpoint, find_endpoints

log = logging.getLogger(__name__)

POLL_EVERY = 1.0  # seconds between mtime checks where inotify is unavailable
RESCAN = 60.0  # seconds between listings with inotify, a net for what it cannot see (a mount)
# seconds between a change and the listing: whoever started a QEMU connects to its monitor
# first (QEMU greets one client per socket), as it did when the directory was checked each second
SETTLE = 1.0

# <sys/inotify.h>
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_ONLYDIR = 0x01000000
ENTRIES = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ONLYDIR
TOP = ENTRIES | IN_DELETE_SELF | IN_MOVE_SELF
HEADER = struct.Struct("iIII")  # wd, mask, cookie, len


class Inotify:
    """One inotify instance, non-blocking. Raises OSError when the kernel refuses it."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = (ctypes.c_int, ctypes.c_int)
        fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd = fd

    def add(self, path: Path, mask: int) -> int:
        """Watch ``path`` (the same path again: the same watch descriptor)."""
        wd = int(self._add(self.fd, os.fsencode(path), mask))
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch: {os.strerror(err)}", str(path))
        return wd

    def remove(self, wd: int) -> None:
        self._rm(self.fd, wd)  # fails only for a watch the kernel already dropped

    def read(self) -> int:
        """How many events were queued (a queue overflow is one); empties the queue."""
        count = 0
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return count
            at = 0
            while at + HEADER.size <= len(buf):
                at += HEADER.size + HEADER.unpack_from(buf, at)[3]
                count += 1

    def close(self) -> None:
        os.close(self.fd)


class SocketDirectory:
    """The sockets named like ``pattern`` under ``directory`` (as :func:`find_endpoints`
    finds them), and a wait until they may have changed."""

    def __init__(self, directory: Path, pattern: str, *, inotify: bool = True) -> None:
        self.directory = directory
        self.pattern = pattern
        self.notify: Inotify | None = None
        if inotify:
            try:
                self.notify = Inotify()
            except OSError as exc:
                log.info("inotify unavailable (%s): checking %s every %gs", exc, directory,
                         POLL_EVERY)  # fmt: skip
        self.top: int | None = None  # the directory's watch
        self.subdirs: dict[str, tuple[int, int]] = {}  # name → (inode, watch)
        self.stale = True  # something may have changed since the last listing
        self.stamp: tuple[object, ...] | None = None
        self.woken = asyncio.Event()
        self.reading = False
        self.broken = False  # inotify ran out of watches: back to checking mtimes

    def look(self) -> list[Endpoint] | None:
        """The sockets now, or None when nothing can have changed since the last look
        (blocking: run it in a thread). Raises OSError."""
        if self.notify is not None and self.stale and not self.broken:
            self.stale = False  # before the watches and listing: an event after it lists again
            try:
                self._watch_all(self.notify)
            except OSError as exc:
                self.stale = True
                if exc.errno not in (errno.ENOSPC, errno.ENOMEM):
                    raise
                log.info("inotify: %s; checking %s every %gs instead", exc, self.directory,
                         POLL_EVERY)  # fmt: skip
                self.broken = True  # wait() closes it, in the event loop
            else:
                return find_endpoints(self.directory, self.pattern)
        if self.notify is not None and not self.broken:
            return None
        stamp = directory_stamp(self.directory)  # before the listing: a change after it
        if stamp == self.stamp:  # shows in the next stamp
            return None
        found = find_endpoints(self.directory, self.pattern)
        self.stamp = stamp
        return found

    def _watch_all(self, notify: Inotify) -> None:
        """Watch the directory and each immediate subdirectory, the new ones before the
        listing (which then finds what was made in them before their watch)."""
        top = notify.add(self.directory, TOP)  # a directory put in its place: a new watch
        if self.top is not None and self.top != top:
            notify.remove(self.top)
        self.top = top
        now: dict[str, int] = {}
        with os.scandir(self.directory) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):  # removed meanwhile: an event says so
                    if entry.is_dir():
                        now[entry.name] = entry.stat().st_ino
        for name, (inode, wd) in list(self.subdirs.items()):
            if now.get(name) != inode:  # removed, or another directory by that name
                del self.subdirs[name]
                notify.remove(wd)
        for name, inode in now.items():
            if name not in self.subdirs:
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    self.subdirs[name] = (inode, notify.add(self.directory / name, ENTRIES))

    def _readable(self) -> None:
        """In the event loop: the kernel queued events (any of them: list again)."""
        if self.notify is not None and self.notify.read():
            self.stale = True
            self.woken.set()

    async def wait(self, stop: asyncio.Event) -> None:
        """Until the sockets may have changed, or ``stop`` is set (with inotify, at most
        :data:`RESCAN` s; else :data:`POLL_EVERY` s)."""
        if self.broken:
            self.close()
        if self.notify is None:
            timeout = POLL_EVERY
        else:
            if not self.reading:
                asyncio.get_running_loop().add_reader(self.notify.fd, self._readable)
                self.reading = True
            timeout = RESCAN
        self.woken.clear()
        if self.notify is not None and self.stale:
            return
        waits = [asyncio.create_task(self.woken.wait()), asyncio.create_task(stop.wait())]
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waits[0].cancel()
        if not done:
            self.stale = True  # the net: list again now and then
        elif self.notify is not None:
            await asyncio.wait(waits[1:], timeout=SETTLE)
        waits[1].cancel()

    def close(self) -> None:
        if self.notify is not None:
            if self.reading:
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    asyncio.get_running_loop().remove_reader(self.notify.fd)
            self.notify.close()
            self.notify = None


def directory_stamp(directory: Path) -> tuple[object, ...]:
    """The modification times of ``directory`` and of its immediate subdirectories: what
    :func:`find_endpoints` finds changes only when this does (a tenth of its cost)."""
    stamps = []
    with os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):  # removed meanwhile: the parent changed
                if entry.is_dir():
                    stamps.append((entry.name, entry.stat().st_mtime_ns))
    return (directory.stat().st_mtime_ns, *sorted(stamps))
