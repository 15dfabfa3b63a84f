"""A minimal writer of the cpio ``newc`` format the kernel unpacks as its initramfs."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True, slots=True)
class Entry:
    """One archive member: a directory, a regular file (``data``) or a character device."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def directory(name: str) -> Entry:
    return Entry(name, stat.S_IFDIR | 0o755)


def file(name: str, source: Path, mode: int = 0o644) -> Entry:
    return Entry(name, stat.S_IFREG | mode, source.read_bytes())


def chardev(name: str, major: int, minor: int) -> Entry:
    return Entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))


def _pad(out: BinaryIO, length: int) -> None:
    out.write(b"\0" * (-length % 4))


def _member(out: BinaryIO, ino: int, entry: Entry) -> None:
    name = entry.name.encode() + b"\0"
    fields = (ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, *entry.rdev, len(name), 0)
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out.write(header + name)
    _pad(out, len(header) + len(name))
    out.write(entry.data)
    _pad(out, len(entry.data))


def write(out: BinaryIO, entries: list[Entry]) -> None:
    """Write ``entries`` (parents before children) and the trailer."""
    for ino, entry in enumerate(entries, start=1):
        _member(out, ino, entry)
    _member(out, 0, Entry("TRAILER!!!", 0))
