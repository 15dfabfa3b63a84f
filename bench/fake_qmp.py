"""Scripted QMP peers for the watcher-at-scale bench: one process per socket (as one QEMU per
guest), serving one client at a time as QEMU does, and answering what ``watch`` asks of an
idle QEMU 7.2 (greeting, ``qmp_capabilities``, ``query-status``, ``query-name``, the job and
migration queries). ``SIGUSR1`` freezes a peer: it sends ``GUEST_PANICKED`` stamped with the
wall clock, as QEMU stamps its events, and answers ``guest-panicked`` from then on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path

from kvmha_forensics.vocabulary import JSON

GREETING = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": ""},
                    "capabilities": ["oob"]}}  # fmt: skip
FIXED: dict[str, JSON] = {"qmp_capabilities": {}, "query-block-jobs": [], "query-jobs": [],
                          "query-migrate": {}}  # fmt: skip
DECODER = json.JSONDecoder()


class Peer:
    """One fake QEMU's monitor on ``path``."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.status = "running"
        self.one_client = asyncio.Lock()
        self.client: asyncio.StreamWriter | None = None

    def answer(self, command: str) -> dict[str, JSON]:
        if command == "query-status":
            running = self.status == "running"
            return {"return": {"status": self.status, "singlestep": False, "running": running}}
        if command == "query-name":
            return {"return": {"name": self.name}}
        if command in FIXED:
            return {"return": FIXED[command]}
        desc = f"The command {command} has not been found"
        return {"error": {"class": "CommandNotFound", "desc": desc}}

    def freeze(self) -> None:
        self.status = "guest-panicked"
        now = time.time()
        stamp = {"seconds": int(now), "microseconds": int(now % 1 * 1e6)}
        event = {"event": "GUEST_PANICKED", "data": {"action": "pause"}, "timestamp": stamp}
        if self.client is not None:
            self.client.write(json.dumps(event).encode() + b"\r\n")

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self.one_client:
            self.client = writer
            writer.write(json.dumps(GREETING).encode() + b"\r\n")
            buffer = ""
            try:  # QMP is a stream of JSON objects, not of lines (qemu.qmp sends no newline)
                while chunk := await reader.read(4096):
                    buffer += chunk.decode()
                    while buffer.strip():
                        try:
                            request, end = DECODER.raw_decode(buffer.lstrip())
                        except ValueError:
                            break  # the rest of this object is still on its way
                        buffer = buffer.lstrip()[end:]
                        reply = self.answer(str(request.get("execute")))
                        if "id" in request:
                            reply["id"] = request["id"]
                        writer.write(json.dumps(reply).encode() + b"\r\n")
            except ConnectionError:
                pass
            finally:
                self.client = None
                writer.close()

    async def run(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.freeze)
        server = await asyncio.start_unix_server(self.serve, str(self.path))
        async with server:
            await server.serve_forever()


def start(directory: Path, count: int) -> list[tuple[int, Path]]:
    """Fork ``count`` peers, each on ``directory/gNNN/qmp.sock``; their pids and sockets,
    once every socket listens. Fork before starting any thread."""
    peers = []
    for i in range(count):
        path = directory / f"g{i:03d}" / "qmp.sock"
        path.parent.mkdir(parents=True)
        pid = os.fork()
        if pid == 0:  # the peer
            try:
                asyncio.run(Peer(path, f"g{i:03d}").run())
            finally:
                os._exit(0)
        peers.append((pid, path))
    while not all(path.exists() for _, path in peers):
        time.sleep(0.05)
    return peers


def stop(peers: list[tuple[int, Path]]) -> None:
    """End the peers :func:`start` forked (by their pids)."""
    for pid, _ in peers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid, _ in peers:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
