"""Partial bundle directories left behind: found, judged and removed.

A capture builds its bundle under a hidden ``.NAME.partial-HEX`` and renames it when whole
(:class:`.bundle.BundleWriter`), holding an ``flock`` on that directory while it writes. A
capture that died (its node lost, the process killed) leaves the partial behind, unlocked.
A partial is removed only when no process on this host holds its lock and nothing in it was
written for ``older_than`` seconds: on shared storage a capture on another node holds no lock
visible here, and the age is what protects it, so ``older_than`` must exceed the longest
capture timeout in use (600 s by default).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PARTIAL = re.compile(r"^\..+\.partial-[0-9a-f]+$")
STALE_AFTER = 3600.0  # seconds: six default capture timeouts
State = Literal["in-use", "recent", "stale"]


@dataclass(frozen=True, slots=True)
class Partial:
    """A partial bundle directory: its path, seconds since its last write, and its state."""

    path: Path
    idle: float
    state: State


@contextlib.contextmanager
def _judged(path: Path, older_than: float, now: float) -> Iterator[Partial | None]:
    """The partial at ``path``, judged while this process holds its lock when free (so no
    other prune removes it meanwhile); None when it is gone or not a directory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield Partial(path, _idle(fd, now), "in-use")
            return
        idle = _idle(fd, now)
        yield Partial(path, idle, "stale" if idle >= older_than else "recent")
    finally:
        os.close(fd)


def _idle(fd: int, now: float) -> float:
    """Seconds since the last write to the directory or any file in it (bundles are flat)."""
    newest = os.fstat(fd).st_mtime
    for name in os.listdir(fd):
        with contextlib.suppress(OSError):
            newest = max(newest, os.stat(name, dir_fd=fd, follow_symlinks=False).st_mtime)
    return max(0.0, now - newest)


def _names(parent: Path) -> list[str]:
    return sorted(name for name in os.listdir(parent) if PARTIAL.match(name))


def prune(parent: Path, older_than: float = STALE_AFTER, dry_run: bool = False) -> list[Partial]:
    """Every partial bundle directory in ``parent``, judged; the stale ones removed, unless
    ``dry_run``."""
    found = []
    for name in _names(parent):
        with _judged(parent / name, older_than, time.time()) as partial:
            if partial is None:
                continue
            if partial.state == "stale" and not dry_run:
                _remove(partial.path)
            found.append(partial)
    return found


def _remove(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in os.listdir(fd):
            os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)
