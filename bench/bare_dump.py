"""Baseline: the bare ``dump-guest-memory`` a minimal QMP script would issue.

With ``sha256`` as a fourth argument it is the *floor* of any checksummed capture: the same
dump, with a thread hashing the file as QEMU writes it (the least work a checksum can cost:
each byte read back once and hashed once), and nothing else. It prints the seconds from the
dump command to the end (the hash's end, with ``sha256``): the dump's cost without start-up.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import threading
import time

from qemu.qmp import QMPClient


def follow(path: str, done: threading.Event, digest: hashlib._Hash) -> None:
    buffer = bytearray(8 << 20)
    view = memoryview(buffer)
    while not os.path.exists(path):
        time.sleep(0.001)
    with open(path, "rb", buffering=0) as f:
        while True:
            finishing = done.is_set()
            got = f.readinto(buffer)
            if got:
                digest.update(view[:got])
            elif finishing:
                return
            else:
                time.sleep(0.002)


async def main(socket: str, path: str, fmt: str, hash_it: bool) -> None:
    qmp = QMPClient("bare-dump")
    await qmp.connect(socket)
    done, digest = threading.Event(), hashlib.sha256()
    reader = threading.Thread(target=follow, args=(path, done, digest))
    args = {"paging": False, "protocol": f"file:{path}", "detach": True, "format": fmt}
    start = time.perf_counter()
    await qmp.execute("dump-guest-memory", args)
    if hash_it:
        reader.start()
    while (await qmp.execute("query-dump"))["status"] == "active":  # type: ignore[index]
        await asyncio.sleep(0.05)
    if hash_it:
        done.set()
        reader.join()
    print(f"{time.perf_counter() - start:.6f}")
    await qmp.disconnect()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4], hash_it=sys.argv[4:5] == ["sha256"]))
