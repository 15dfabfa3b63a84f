"""makedumpfile's *flattened* format, as QEMU 7.2 writes ``kdump-zlib`` to a descriptor.

The stream is a 4 KiB header (``makedumpfile`` signature, type, version), then records of a
big-endian ``(offset: int64, size: int64)`` followed by ``size`` bytes to place at ``offset``;
an offset of -1 ends it (makedumpfile's ``-R`` rearranges the same stream). QEMU leaves the
kdump header's utsname empty, which libkdumpfile (drgn) refuses: :func:`fix_utsname` fills it.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from ..errors import InputError

SIGNATURE = b"makedumpfile\0"
HEADER_SIZE = 4096
RECORD = struct.Struct(">qq")
KDUMP_SIGNATURE = b"KDUMP   "
UTSNAME_OFFSET = 12  # after signature[8] and header_version (int32)
UTS_FIELD = 65  # sysname, nodename, release, version, machine, domainname
CHUNK = 1 << 20


def rearrange(source: Path, dest_fd: int) -> int:
    """Write the flattened ``source`` as a plain file to ``dest_fd``; return its size."""
    end = 0
    with source.open("rb") as f:
        if f.read(HEADER_SIZE)[: len(SIGNATURE)] != SIGNATURE:
            raise InputError(f"{source} is not a makedumpfile flattened stream")
        while True:
            head = f.read(RECORD.size)
            if len(head) < RECORD.size:
                raise InputError(f"{source} ends before its end marker (truncated dump)")
            offset, size = RECORD.unpack(head)
            if offset == -1:
                return end
            if offset < 0 or size < 0:
                raise InputError(f"{source} has a corrupt record ({offset}, {size})")
            while size:
                data = f.read(min(size, CHUNK))
                if not data:
                    raise InputError(f"{source} is truncated inside a record")
                os.pwrite(dest_fd, data, offset)
                offset += len(data)
                size -= len(data)
            end = max(end, offset)


def fix_utsname(fd: int, release: str, machine: str = "x86_64") -> None:
    """Fill the empty fields of a kdump header's utsname. libkdumpfile takes a utsname with
    an empty field for no utsname at all, and then cannot tell the architecture."""
    if os.pread(fd, len(KDUMP_SIGNATURE), 0) != KDUMP_SIGNATURE:
        raise InputError("not a kdump file (no 'KDUMP   ' signature)")
    fields = {0: "Linux", 1: "(none)", 2: release, 3: "unknown", 4: machine, 5: "(none)"}
    for index, value in fields.items():
        offset = UTSNAME_OFFSET + index * UTS_FIELD
        current = os.pread(fd, UTS_FIELD, offset)
        if current.strip(b"\0"):
            continue
        os.pwrite(fd, value.encode()[: UTS_FIELD - 1].ljust(UTS_FIELD, b"\0"), offset)
