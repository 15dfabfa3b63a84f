"""The QMP transport: a qemu.qmp session behind the :class:`~.base.Guest` interface.

:class:`Endpoint` is the :class:`~.base.Address` (a unix socket path, or ``HOST:PORT``);
:class:`QMPSession` the :class:`~.base.Guest`. QEMU serves one client per QMP socket; a second
client is accepted by the kernel but never greeted. The session turns that silence into
:class:`~..errors.GuestHeld` instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from qemu.qmp import (
    ConnectError,
    EventListener,
    ExecInterruptedError,
    ExecuteError,
    Message,
    QMPClient,
    Runstate,
)
from qemu.qmp.error import QMPError
from qemu.qmp.protocol import StateError

from ..errors import (
    AddressMissing,
    CommandFailed,
    GuestGone,
    GuestHeld,
    NotAMonitor,
    TransportConfigError,
    TransportTimeout,
)
from ..vocabulary import JSON
from .base import Event, Guest
from .local import socket_owners
from .replies import StatusInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A QMP endpoint: a unix socket path, or ``HOST:PORT`` for TCP."""

    path: str | None = None
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        host, sep, port = text.rpartition(":")
        if sep and port.isdigit() and "/" not in text:
            return cls(host=host.strip("[]") or "127.0.0.1", port=int(port))
        return cls(path=text)

    def __str__(self) -> str:
        return self.path if self.path is not None else f"{self.host}:{self.port}"

    @property
    def label(self) -> str:
        return Path(self.path).stem if self.path else str(self)

    def connect(self, timeout: float) -> AbstractAsyncContextManager[Guest]:
        return session(self, timeout)

    def owners(self) -> list[int] | None:
        return socket_owners(self.path) if self.path else None


def find_endpoints(directory: Path, pattern: str) -> list[Endpoint]:
    """Unix sockets named like ``pattern`` in ``directory`` and its immediate subdirectories,
    in path order."""
    found: set[Path] = set()
    for candidate in (*directory.glob(pattern), *directory.glob(f"*/{pattern}")):
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(candidate.lstat().st_mode):
                found.add(candidate)
    return [Endpoint(path=str(path)) for path in sorted(found)]


def _peer_pid(sock: socket.socket) -> int | None:
    if sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, _uid, _gid = struct.unpack("3i", creds)
    return pid or None


def _open_socket(endpoint: Endpoint, timeout: float) -> socket.socket:
    try:
        if endpoint.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(endpoint.path)
        else:
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    except FileNotFoundError as exc:
        raise AddressMissing(
            f"no QMP socket at {endpoint}", "check the path given with --qmp (QEMU's -qmp option)"
        ) from exc
    except ConnectionRefusedError as exc:
        if endpoint.path is not None and not stat.S_ISSOCK(os.stat(endpoint.path).st_mode):
            hint = "give QEMU's -qmp unix socket"
            raise TransportConfigError(f"{endpoint} is not a socket", hint) from None
        raise GuestGone(
            f"connection to {endpoint} refused",
            "the socket exists but nothing listens: QEMU exited or was killed",
        ) from exc
    except TimeoutError as exc:
        raise TransportTimeout(f"connecting to {endpoint} timed out", "is QEMU hung?") from exc
    except BlockingIOError as exc:  # a unix socket's backlog is full: QEMU accepts no one now
        raise GuestHeld(
            f"{endpoint} is not accepting connections: another client holds the monitor",
            "find it with 'ss -xp' and end it, or use another QMP socket of this QEMU",
        ) from exc
    except OSError as exc:
        raise TransportConfigError(f"cannot connect to {endpoint}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


class Client(QMPClient):
    """qemu.qmp's client, formatting a message only when its debug log is on: qemu.qmp's own
    message hooks format each message as indented JSON for the debug log even when it is off
    (the largest item in a profile of an idle watcher's polls)."""

    def _cb_outbound(self, msg: Message) -> Message:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("--> %s", msg)
        return msg

    def _cb_inbound(self, msg: Message) -> Message:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("<-- %s", msg)
        return msg


@dataclass
class QMPSession:
    """One negotiated QMP connection (a :class:`~.base.Guest`). Open it with :func:`session`."""

    client: QMPClient
    endpoint: Endpoint
    pid: int | None
    timeout: float
    listener: EventListener = field(default_factory=EventListener)
    seen: list[Event] = field(default_factory=list)
    ended: asyncio.Future[Runstate] | None = None  # done when the connection's state changes

    @property
    def where(self) -> str:
        return str(self.endpoint)

    @property
    def connected(self) -> bool:
        return self.client.runstate == Runstate.RUNNING

    @property
    def qemu_version(self) -> str:
        greeting = self.client.greeting
        if greeting is None:
            return "unknown"
        qemu = cast(Mapping[str, int], greeting.QMP.version["qemu"])
        return f"{qemu['major']}.{qemu['minor']}.{qemu['micro']}"

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> JSON:
        """Run ``command``; raise CommandFailed, GuestGone or TransportTimeout."""
        limit = self.timeout
        try:
            return await asyncio.wait_for(
                self.client.execute(command, dict(arguments) if arguments else None), limit
            )
        except ExecuteError as exc:
            raise CommandFailed(f"QEMU refused {command}: {exc.error.error.desc}") from exc
        except (ExecInterruptedError, StateError) as exc:
            raise GuestGone(
                f"QEMU went away during {command}", "the QEMU process exited or closed QMP"
            ) from exc
        except TimeoutError as exc:
            raise TransportTimeout(f"QEMU did not answer {command} within {limit:g}s") from exc
        except QMPError as exc:  # the client is disconnecting
            raise GuestGone(f"QMP connection lost during {command}: {exc}") from exc

    async def runstate(self) -> str:
        return StatusInfo.from_json(await self.execute("query-status")).status

    async def hmp(self, command_line: str) -> str:
        """Run a human-monitor command (read-only ones only, e.g. ``info registers -a``)."""
        out = await self.execute("human-monitor-command", {"command-line": command_line})
        return str(out)

    def events(self) -> list[Event]:
        """Events received since the last call, oldest first (all are kept in :attr:`seen`)."""
        fresh = [Event.from_message(m) for m in self.listener.clear()]
        self.seen.extend(fresh)
        return fresh

    async def next_event(self, timeout: float) -> Event | None:
        """The next event; None after ``timeout`` s, or as soon as the connection ends."""
        if not self.connected:
            return None
        if self.ended is None:  # one waiter for the session, shared by every call
            self.ended = asyncio.ensure_future(self.client.runstate_changed())
        get = asyncio.ensure_future(self.listener.get())
        try:
            await asyncio.wait(
                (get, self.ended), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not get.done():
                get.cancel()
        if not get.done() or get.cancelled():
            return None
        event = Event.from_message(get.result())
        self.seen.append(event)
        return event

    async def dump_destination(self, fd: int, path: Path) -> str:
        """``fd:NAME`` after passing ``fd`` over SCM_RIGHTS (``getfd``); over TCP, which
        cannot pass descriptors, ``file:PATH`` (QEMU must share this host's file system)."""
        if self.endpoint.path is None:
            return f"file:{path}"
        fdname = f"kvmha-dump-{os.getpid()}"
        self.client.send_fd_scm(fd)
        await self.execute("getfd", {"fdname": fdname})
        return f"fd:{fdname}"


@asynccontextmanager
async def session(endpoint: Endpoint, timeout: float = 5.0) -> AsyncIterator[QMPSession]:
    """Connect, wait for the greeting (bounded: a held socket never greets), negotiate.

    Raises: GuestGone, GuestHeld, NotAMonitor, TransportConfigError, TransportTimeout."""
    sock = await asyncio.to_thread(_open_socket, endpoint, timeout)
    pid = _peer_pid(sock)
    client = Client("kvmha-forensics")
    qmp = QMPSession(client, endpoint, pid, timeout)
    client.register_listener(qmp.listener)
    try:
        await asyncio.wait_for(client.connect(sock), timeout)
    except TimeoutError as exc:
        sock.close()
        raise GuestHeld(
            f"{endpoint} accepted the connection but QEMU sent no QMP greeting in {timeout:g}s",
            "another client probably holds this socket (QEMU serves one client per QMP socket);"
            " use the guest's other -qmp socket",
        ) from exc
    except (ConnectError, QMPError, OSError, EOFError) as exc:
        sock.close()
        said = str(exc)[:200]
        raise NotAMonitor(
            f"{endpoint} does not speak QMP ({said})", "check the --qmp path"
        ) from exc
    try:
        yield qmp
    finally:
        if qmp.ended is not None:
            qmp.ended.cancel()
        try:
            await asyncio.wait_for(client.disconnect(), timeout)
        except (QMPError, OSError, EOFError, TimeoutError) as exc:
            log.debug("disconnect from %s: %s", endpoint, exc)
