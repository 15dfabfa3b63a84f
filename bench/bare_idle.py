"""The baseline of the watcher-at-scale bench: bare asyncio holding one negotiated QMP
connection per socket and doing nothing else. Prints ``ready`` once every connection is
negotiated, then waits until the peers close or it is ended."""

from __future__ import annotations

import asyncio
import sys


async def hold(path: str) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    await reader.readline()  # the greeting
    writer.write(b'{"execute": "qmp_capabilities"}\n')
    await reader.readline()
    ready.release()
    await reader.read()  # until the peer closes


async def main(paths: list[str]) -> None:
    holders = [asyncio.create_task(hold(p)) for p in paths]
    for _ in paths:
        await ready.acquire()
    print("ready", flush=True)
    await asyncio.gather(*holders)


ready = asyncio.Semaphore(0)

if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
