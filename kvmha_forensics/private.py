"""Files that may quote guest memory: written 0600, never through a symlink, atomically;
and renames that never replace what is at the new name."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from .errors import InputError


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (0600), via a temporary file beside it."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from exc


_RENAME_NOREPLACE = 1


def rename_noreplace(src: str, dst: str, dir_fd: int) -> None:
    """Rename ``src`` to ``dst``, both in the directory ``dir_fd``, never replacing anything
    at ``dst`` (not even a dangling link): :class:`FileExistsError` when there is something.

    ``renameat2(RENAME_NOREPLACE)``; where the file system lacks it, a check then
    ``rename``, which never follows a link at ``dst`` either."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        done = renameat2(dir_fd, os.fsencode(src), dir_fd, os.fsencode(dst), _RENAME_NOREPLACE)
        if done == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(code, os.strerror(code), dst)
    try:
        os.lstat(dst, dir_fd=dir_fd)
    except FileNotFoundError:
        try:
            os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise FileExistsError(errno.EEXIST, "something appeared there", dst) from exc
            raise
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
