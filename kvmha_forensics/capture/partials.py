"""Partial bundle directories left behind: found, judged and removed.

A capture builds its bundle under a hidden ``.NAME.partial-HEX`` and renames it when whole
(:class:`.bundle.BundleWriter`), holding an ``flock`` on that directory while it writes. A
capture that died (its node lost, the process killed) leaves the partial behind, unlocked.
A partial is removed only when no process on this host holds its lock and nothing in it was
written for ``older_than`` seconds: on shared storage a capture on another node holds no lock
visible here, and the age is what protects it, so ``older_than`` must exceed the longest
capture timeout in use (600 s by default). A partial holding a directory is not one a capture
wrote (bundles are flat): it is reported and kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

PARTIAL = re.compile(r"^\..+\.partial-[0-9a-f]+$")
STALE_AFTER = 3600.0  # seconds: six default capture timeouts
State = Literal["in-use", "recent", "stale", "foreign", "stuck"]


@dataclass(frozen=True, slots=True)
class Partial:
    """A partial bundle directory: its path, seconds since its last write, and its state
    (``stuck``: stale, but removing it failed, for ``why``)."""

    path: Path
    idle: float
    state: State
    why: str = ""


@contextlib.contextmanager
def _judged(path: Path, older_than: float, now: float) -> Iterator[tuple[Partial, int] | None]:
    """The partial at ``path`` and a descriptor of it, judged while this process holds its
    lock when free (so no other prune removes it meanwhile); None when it is gone or not a
    directory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield Partial(path, _scan(fd, now)[0], "in-use"), fd
            return
        idle, flat = _scan(fd, now)
        state: State = "foreign" if not flat else "stale" if idle >= older_than else "recent"
        yield Partial(path, idle, state), fd
    finally:
        os.close(fd)


def _scan(fd: int, now: float) -> tuple[float, bool]:
    """Seconds since the last write to the directory or any entry in it, and whether it is
    flat (no directory in it), as the partials captures write are."""
    newest, flat = os.fstat(fd).st_mtime, True
    for name in os.listdir(fd):
        with contextlib.suppress(OSError):
            found = os.stat(name, dir_fd=fd, follow_symlinks=False)
            newest, flat = max(newest, found.st_mtime), flat and not stat.S_ISDIR(found.st_mode)
    return max(0.0, now - newest), flat


def _names(parent: Path) -> list[str]:
    return sorted(name for name in os.listdir(parent) if PARTIAL.match(name))


def prune(parent: Path, older_than: float = STALE_AFTER, dry_run: bool = False) -> list[Partial]:
    """Every partial bundle directory in ``parent``, judged; the stale ones removed, unless
    ``dry_run``."""
    found = []
    for name in _names(parent):
        with _judged(parent / name, older_than, time.time()) as judged:
            if judged is None:
                continue
            partial, fd = judged
            if partial.state == "stale" and not dry_run:
                try:
                    _remove(partial.path, fd)
                except OSError as exc:
                    partial = replace(partial, state="stuck", why=exc.strerror or str(exc))
            found.append(partial)
    return found


def _remove(path: Path, fd: int) -> None:
    """Empty the flat directory open as ``fd`` (the one judged, whatever ``path`` names
    now), then remove it."""
    for name in os.listdir(fd):
        os.unlink(name, dir_fd=fd)
    os.rmdir(path)
