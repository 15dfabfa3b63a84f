"""The one way kvmha-forensics opens a file it did not write: bounded, type-checked, and
without following a link where the caller says so.

Inputs may be written by a guest, by another user, or by an attacker who planted a FIFO, a
device or a link where a log or an artifact was expected. So every input is:

- looked at first (``stat``, or ``lstat`` when links are not followed) and refused unless it is
  a regular file: a FIFO would block the reader, ``/dev/zero`` never ends, and merely opening a
  device such as ``/dev/watchdog`` has effects;
- opened with ``O_NONBLOCK`` (a FIFO swapped in meanwhile cannot block the open), ``O_NOCTTY``,
  ``O_NOFOLLOW`` when links are not followed, then checked again with ``fstat``: it must be the
  same regular file that was looked at;
- read to a stated bound (:func:`read_input`), keeping its head, its tail, or both.

docs/limits.md lists which inputs follow links and the bounds.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from .errors import InputError

Keep = Literal["head", "tail", "ends"]
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


def describe(mode: int) -> str:
    """What kind of file ``mode`` (``st_mode``) is, as an article and a noun."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def refusal(path: str | os.PathLike[str], follow: bool = True) -> str | None:
    """Why ``path`` is not an input that may be read (missing, a FIFO, a device, a link when
    ``follow`` is false…), or None when it is a regular file."""
    try:
        st = os.stat(path, follow_symlinks=follow)
    except OSError as exc:
        return _why(exc, follow)
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link (not followed here)"
    return f"{describe(st.st_mode)}, not a regular file"


def absent(path: str | os.PathLike[str]) -> str:
    """Why a path that names no file is absent: ``does not exist``, or the link that leads
    nowhere (``is a symbolic link loop``, ``is a symbolic link to nothing (TARGET)``)."""
    try:
        target = os.readlink(path)
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return f"is a symbolic link to nothing ({target})"
    return "does not exist"


def _why(exc: OSError, follow: bool) -> str:
    if exc.errno == errno.ELOOP and not follow:
        return "a symbolic link (not followed here)"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "missing"
    return f"unreadable ({exc.strerror or exc})"


def open_input(path: str | os.PathLike[str], follow: bool = True) -> int:
    """A read-only descriptor on the regular file ``path``; :class:`InputError` otherwise.

    ``follow=False``: a link at the last component is refused (``O_NOFOLLOW``)."""
    why = refusal(path, follow)
    if why is not None:
        raise InputError(f"{path} is {why}")
    before = os.stat(path, follow_symlinks=follow)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | (0 if follow else os.O_NOFOLLOW))
    except OSError as exc:
        raise InputError(f"{path} is {_why(exc, follow)}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise InputError(f"{path} changed while it was opened", "is something replacing it?")
    os.set_blocking(fd, True)
    return fd


@contextmanager
def opened(path: str | os.PathLike[str], follow: bool = True) -> Iterator[BinaryIO]:
    """:func:`open_input` as a binary file object, closed at the end."""
    with os.fdopen(open_input(path, follow), "rb") as f:
        yield f


@dataclass(frozen=True, slots=True)
class Bounded:
    """What :func:`read_input` kept of a file: ``data``, the file's ``size``, bytes ``left``
    out."""

    data: bytes
    size: int
    left: int

    def note(self, name: str, keep: Keep) -> str | None:
        """The sentence a report carries when part of the file was left out."""
        if not self.left:
            return None
        part = {"head": "first", "tail": "last", "ends": "first and last"}[keep]
        return f"{name} is {self.size} bytes: only its {part} {len(self.data)} were read"


def read_bounded(f: BinaryIO, limit: int, keep: Keep = "head") -> Bounded:
    """At most ``limit`` bytes of the open regular file ``f``: its head, its tail (from a line
    start), or both ends (half each, with a marker between)."""
    size = os.fstat(f.fileno()).st_size
    if size <= limit:
        data = f.read(limit + 1)[:limit]  # the file may have grown: still only limit bytes
        return Bounded(data, size, max(0, size - len(data)))
    if keep == "head":
        return Bounded(f.read(limit), size, size - limit)
    if keep == "tail":
        f.seek(size - limit)
        skipped = len(f.readline(min(limit, 64 << 10)))  # to the next line start, bounded
        data = f.read(limit - skipped)
        return Bounded(data, size, size - len(data))
    half = limit // 2
    head = f.read(half)
    f.seek(size - half)
    cut = size - 2 * half
    return Bounded(head + f"\n[kvmha-forensics: {cut} bytes cut here]\n".encode() + f.read(half),
                   size, cut)  # fmt: skip


def read_input(
    path: str | os.PathLike[str], limit: int, keep: Keep = "head", follow: bool = True
) -> Bounded:
    """:func:`open_input`, then :func:`read_bounded`; an unreadable file is an
    :class:`InputError`."""
    with opened(path, follow) as f:
        try:
            return read_bounded(f, limit, keep)
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


def plain_relative(rel: str) -> Path:
    """``rel`` as a path inside a directory: relative, no ``..``, no empty parts;
    :class:`ValueError` otherwise."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in rel:
        raise ValueError(f"artifact path {rel!r} is not a plain path inside the bundle")
    return Path(rel)


def parse_json(data: bytes, where: str | os.PathLike[str]) -> object:
    """``data`` as JSON; invalid or absurdly nested JSON is an :class:`InputError`."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise InputError(f"{where} is not usable JSON: nested too deeply") from exc
    except ValueError as exc:  # UnicodeDecodeError included
        raise InputError(f"{where} is not valid JSON: {exc}") from exc
