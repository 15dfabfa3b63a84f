"""A scripted guest behind the transport interface: replies and events, no QEMU.

As QEMU's python/tests/protocol.py drives its protocol against a null peer, these fakes drive
the HA state machine (assess, status, the watcher, capture's steps) in milliseconds; the lab
tests keep the end-to-end proof on a real QEMU.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kvmha_forensics.errors import CommandFailed, ForensicsError, GuestGone
from kvmha_forensics.transport.base import Event, Guest
from kvmha_forensics.vocabulary import JSON, JSONObject

Reply = JSON | ForensicsError | Callable[[Mapping[str, object] | None], JSON]


def event(name: str, **data: object) -> Event:
    return Event(name, data, 1.0)


@dataclass
class FakeGuest:
    """A guest whose runstate, jobs, migration and other replies the test sets as it goes.

    ``replies`` maps a command (or ``hmp:LINE``) to a value, an error to raise, or a function
    of the arguments; an unknown command is refused as QEMU would (:class:`CommandFailed`)."""

    state: str = "running"
    pid: int | None = None
    block_jobs: list[dict[str, object]] = field(default_factory=list)
    jobs: list[dict[str, object]] = field(default_factory=list)
    migration: str = "none"
    replies: dict[str, Reply] = field(default_factory=dict)
    where: str = "fake.qmp"
    qemu_version: str = "7.2.0"
    seen: list[Event] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    alive: bool = True
    _queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    _fresh: list[Event] = field(default_factory=list)

    @property
    def connected(self) -> bool:
        return self.alive

    def emit(self, *events: Event) -> None:
        """QEMU sends ``events`` (they wait to be read, as on a socket)."""
        for e in events:
            self._queue.put_nowait(e)

    def becomes(self, runstate: str, *events: Event) -> None:
        """QEMU changes runstate and sends ``events`` about it."""
        self.state = runstate
        self.emit(*events)

    def hang_up(self) -> None:
        """QEMU exits: the connection ends, every later command fails as gone."""
        self.alive = False

    async def runstate(self) -> str:
        reply = await self.execute("query-status")
        assert isinstance(reply, dict)
        return str(reply["status"])

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> JSON:
        self.commands.append(command)
        await asyncio.sleep(0)  # a real round trip yields to the loop
        if not self.alive:
            raise GuestGone(f"QEMU went away during {command}")
        builtin: dict[str, JSON] = {
            "query-status": {"status": self.state, "running": self.state == "running"},
            "query-block-jobs": self.block_jobs,
            "query-jobs": self.jobs,
            "query-migrate": {"status": self.migration} if self.migration != "none" else {},
            "query-name": {},
        }
        reply = self.replies.get(command, builtin.get(command, CommandFailed(f"no {command}")))
        if isinstance(reply, ForensicsError):
            raise reply
        if callable(reply):
            return reply(arguments)
        return reply

    async def hmp(self, command_line: str) -> str:
        return str(await self.execute(f"hmp:{command_line}"))

    def events(self) -> list[Event]:
        fresh = []
        while not self._queue.empty():
            fresh.append(self._queue.get_nowait())
        self.seen.extend(fresh)
        return fresh

    async def next_event(self, timeout: float) -> Event | None:
        try:
            got = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        self.seen.append(got)
        return got

    async def dump_destination(self, fd: int, path: Path) -> str:
        return f"file:{path}"


@dataclass
class FakeAddress:
    """An address whose connections the test scripts: each ``connect`` takes the next item of
    ``sessions`` (a guest, or an error to raise); when they run out, connecting fails as gone."""

    sessions: list[FakeGuest | ForensicsError]
    name: str = "fake.qmp"
    pids: list[int] | None = field(default_factory=list)
    connects: int = 0

    def __str__(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        return Path(self.name).stem

    def owners(self) -> list[int] | None:
        return self.pids

    def connect(self, timeout: float) -> AbstractAsyncContextManager[Guest]:
        return self._open()

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[Guest]:
        self.connects += 1
        await asyncio.sleep(0)
        if not self.sessions:
            raise GuestGone(f"connection to {self.name} refused")
        nxt = self.sessions.pop(0)
        if isinstance(nxt, ForensicsError):
            raise nxt
        yield nxt


@dataclass
class FakeDomain(FakeGuest):
    """A guest behind libvirt's monitor pass-through (:class:`~kvmha_forensics.transport.base.
    Managed`, ``monitor`` true), whose state queries wait while ``busy`` is set: libvirtd
    answers nothing about a domain while it handles the domain's freeze itself."""

    monitor: bool = True
    busy: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> JSON:
        if self.busy.is_set():
            await self.done.wait()
        return await super().execute(command, arguments)

    async def manager_identity(self) -> JSONObject:
        return {"domain": self.where}

    def qemu_log(self) -> tuple[bytes, str] | None:
        return None

    async def console_path(self) -> Path | None:
        return None
