"""The disk's floor for a durable capture: write ``BYTES`` to a new file ``PATH`` the way the
direct capture writes its core (``O_DIRECT`` where the file system allows it, 8 MiB writes, two
in flight), then fsync it. Nothing is read from a guest and nothing is hashed."""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor

PIECE = 8 << 20
IN_FLIGHT = 2


def main(path: str, total: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with contextlib.suppress(OSError):  # tmpfs refuses: buffered there, as capture writes
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_DIRECT)
    buffers = [mmap.mmap(-1, PIECE) for _ in range(IN_FLIGHT)]
    for buffer in buffers:  # random: nothing below could compress or skip it
        buffer[:] = random.randbytes(PIECE)

    def write(index: int) -> None:
        at = index * PIECE
        view = memoryview(buffers[index % IN_FLIGHT])[: min(PIECE, total - at)]
        done = 0
        while done < len(view):
            done += os.pwritev(fd, [view[done:]], at + done)

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        list(pool.map(write, range(-(-total // PIECE))))
    os.fsync(fd)
    os.close(fd)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
