"""Baseline: the bare ``dump-guest-memory`` a minimal QMP script would issue."""

from __future__ import annotations

import asyncio
import sys

from qemu.qmp import QMPClient


async def main(socket: str, path: str, fmt: str) -> None:
    qmp = QMPClient("bare-dump")
    await qmp.connect(socket)
    args = {"paging": False, "protocol": f"file:{path}", "detach": True, "format": fmt}
    await qmp.execute("dump-guest-memory", args)
    while (await qmp.execute("query-dump"))["status"] == "active":  # type: ignore[index]
        await asyncio.sleep(0.05)
    await qmp.disconnect()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
