"""A QMP session over qemu.qmp: connect with timeouts, typed errors, events, the peer's pid.

QEMU serves one client per QMP socket; a second client is accepted by the kernel but never
greeted. The session turns that silence into a :class:`~.errors.QMPProblem` instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

from qemu.qmp import ConnectError, EventListener, ExecInterruptedError, ExecuteError, QMPClient
from qemu.qmp.error import QMPError
from qemu.qmp.protocol import StateError

from .errors import OperationTimeout, QMPProblem

log = logging.getLogger(__name__)

JSONValue = object
JSONObject = dict[str, object]


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


@dataclass(frozen=True, slots=True)
class Event:
    """A QMP event: name, data and QEMU's own timestamp (seconds since the epoch)."""

    name: str
    data: Mapping[str, object]
    timestamp: float

    @classmethod
    def from_message(cls, msg: Mapping[str, object]) -> Event:
        stamp = cast(Mapping[str, int], msg.get("timestamp") or {})
        when = stamp.get("seconds", 0) + stamp.get("microseconds", 0) / 1e6
        return cls(str(msg["event"]), cast(Mapping[str, object], msg.get("data") or {}), when)

    def to_json(self) -> JSONObject:
        return {"event": self.name, "data": dict(self.data), "timestamp": self.timestamp}


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
        raise QMPProblem(
            f"no QMP socket at {endpoint}", "check the path given with --qmp (QEMU's -qmp option)"
        ) from exc
    except ConnectionRefusedError as exc:
        if endpoint.path is not None and not stat.S_ISSOCK(os.stat(endpoint.path).st_mode):
            hint = "give QEMU's -qmp unix socket"
            raise QMPProblem(f"{endpoint} is not a socket", hint) from None  # not "gone"
        raise QMPProblem(
            f"connection to {endpoint} refused", "QEMU is not running or not listening there"
        ) from exc
    except TimeoutError as exc:
        raise OperationTimeout(f"connecting to {endpoint} timed out", "is QEMU hung?") from exc
    except OSError as exc:
        raise QMPProblem(f"cannot connect to {endpoint}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


@dataclass
class QMPSession:
    """One negotiated QMP connection. Use :func:`session` to open and close it."""

    client: QMPClient
    endpoint: Endpoint
    peer_pid: int | None
    timeout: float
    listener: EventListener = field(default_factory=EventListener)
    seen: list[Event] = field(default_factory=list)

    @property
    def qemu_version(self) -> str:
        greeting = self.client.greeting
        if greeting is None:
            return "unknown"
        qemu = cast(Mapping[str, int], greeting.QMP.version["qemu"])
        return f"{qemu['major']}.{qemu['minor']}.{qemu['micro']}"

    async def execute(
        self,
        command: str,
        arguments: Mapping[str, object] | None = None,
        *,
        timeout: float | None = None,
    ) -> JSONValue:
        """Run ``command``; QMP errors and lost connections become :class:`QMPProblem`."""
        limit = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(
                self.client.execute(command, dict(arguments) if arguments else None), limit
            )
        except ExecuteError as exc:
            raise QMPProblem(f"QEMU refused {command}: {exc.error.error.desc}") from exc
        except (ExecInterruptedError, StateError) as exc:
            raise QMPProblem(
                f"QEMU went away during {command}", "the QEMU process exited or closed QMP"
            ) from exc
        except TimeoutError as exc:
            raise OperationTimeout(f"QEMU did not answer {command} within {limit:g}s") from exc

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
        try:
            event = Event.from_message(await asyncio.wait_for(self.listener.get(), timeout))
        except TimeoutError:
            return None
        self.seen.append(event)
        return event

    def send_fd(self, fd: int) -> None:
        """Pass ``fd`` to QEMU over SCM_RIGHTS (follow with ``getfd``)."""
        self.client.send_fd_scm(fd)


@asynccontextmanager
async def session(endpoint: Endpoint, timeout: float = 5.0) -> AsyncIterator[QMPSession]:
    """Connect, wait for the greeting (bounded: a held socket never greets), negotiate."""
    sock = await asyncio.to_thread(_open_socket, endpoint, timeout)
    pid = _peer_pid(sock)
    client = QMPClient("kvmha-forensics")
    qmp = QMPSession(client, endpoint, pid, timeout)
    client.register_listener(qmp.listener)
    try:
        await asyncio.wait_for(client.connect(sock), timeout)
    except TimeoutError as exc:
        sock.close()
        raise QMPProblem(
            f"{endpoint} accepted the connection but QEMU sent no QMP greeting in {timeout:g}s",
            "another client probably holds this socket (QEMU serves one client per QMP socket);"
            " use the guest's other -qmp socket",
        ) from exc
    except (ConnectError, QMPError, OSError, EOFError) as exc:
        sock.close()
        raise QMPProblem(f"{endpoint} does not speak QMP ({exc})", "check the --qmp path") from exc
    try:
        yield qmp
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), timeout)
        except (QMPError, OSError, EOFError, TimeoutError) as exc:
            log.debug("disconnect from %s: %s", endpoint, exc)
