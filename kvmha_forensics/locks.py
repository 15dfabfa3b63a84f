"""Locks between kvmha-forensics processes, kept where only their owner can create entries.

A lock is a file in the runtime directory (:func:`..xdg.runtime_dir`: ``/run/kvmha-forensics``
for root). The directory must be a directory (not a link), owned by the user, mode 0700, or it
is refused; the lock file is opened without following a link. Lock files stay (removing one
would race with its next user).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import BusyError, InputError
from .xdg import RUNTIME_ENV, runtime_dir


def _private_dir(path: Path) -> int:
    """A descriptor on ``path``, created 0700 if missing; refused unless it is a directory
    (not a link) of this user's that nobody else may write."""
    hint = f"remove it (kvmha-forensics creates it again), or set {RUNTIME_ENV}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise InputError(f"cannot create the lock directory {path}: {exc.strerror}", hint) from exc
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        what = "a symbolic link" if exc.errno == errno.ELOOP else "not a directory"
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            what = f"unusable ({exc.strerror})"
        raise InputError(f"the lock directory {path} is {what}", hint) from exc
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
        os.close(fd)
        mode = f"{stat.S_IMODE(st.st_mode):04o}"
        raise InputError(
            f"the lock directory {path} is mode {mode}, owner uid {st.st_uid}: it must be 0700"
            f" and owned by uid {os.geteuid()}",
            hint,
        )
    return fd


@contextmanager
def exclusive(name: str, busy: BusyError) -> Iterator[None]:
    """Hold the lock ``name`` (a file name) for the block; ``busy`` is raised at once when
    another process holds it."""
    where = runtime_dir()
    dir_fd = _private_dir(where)
    try:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            raise InputError(
                f"cannot open the lock {where / name}: {exc.strerror}", f"remove {where / name}"
            ) from exc
    finally:
        os.close(dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"the lock {where / name} is not a regular file", "remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise busy from exc
        yield
    finally:
        os.close(fd)
