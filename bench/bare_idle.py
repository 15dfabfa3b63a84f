"""The baseline of the watcher-at-scale bench: bare asyncio holding one negotiated QMP
connection per socket and doing nothing else but print each event it reads (one JSON line:
``qmp``, ``event``, ``qemu_time``). Prints ``{"kind": "ready"}`` once every connection is
negotiated, then runs until the peers close or it is ended."""

from __future__ import annotations

import asyncio
import json
import sys


async def hold(path: str, ready: asyncio.Semaphore) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    await reader.readline()  # the greeting
    writer.write(b'{"execute": "qmp_capabilities"}\n')
    await reader.readline()
    ready.release()
    while line := await reader.readline():
        message = json.loads(line)
        if "event" in message:
            stamp = message["timestamp"]
            when = stamp["seconds"] + stamp["microseconds"] / 1e6
            record = {"kind": "event", "qmp": path, "event": message["event"], "qemu_time": when}
            print(json.dumps(record), flush=True)


async def main(paths: list[str]) -> None:
    ready = asyncio.Semaphore(0)
    holders = [asyncio.create_task(hold(p, ready)) for p in paths]
    for _ in paths:
        await ready.acquire()
    print(json.dumps({"kind": "ready"}), flush=True)
    await asyncio.gather(*holders)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
