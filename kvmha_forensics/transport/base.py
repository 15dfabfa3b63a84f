"""The transport seam: what capture, status and watch need of "a guest", whoever manages it.

A transport has two halves. An :class:`Address` says where a guest is (a QMP socket path, a
libvirt domain URI + name) and opens a conversation with it; the :class:`Guest` it yields is
that conversation: the QEMU runstate, QMP and HMP commands, events, the local QEMU pid.
:mod:`.qmp` implements both on a qemu.qmp session; a libvirt transport maps them onto
libvirt-python (lifecycle events, ``qemuMonitorCommand`` pass-through, state + reason,
``virDomainCoreDumpWithFormat``) and lives beside it (docs/architecture.md).

Every method raises only the semantic classes of :mod:`..errors` (:class:`~..errors.GuestGone`,
:class:`~..errors.GuestHeld`, :class:`~..errors.NotAMonitor`,
:class:`~..errors.TransportConfigError`, :class:`~..errors.CommandFailed`,
:class:`~..errors.TransportTimeout`), so callers never look at a transport's own exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, cast, runtime_checkable

from ..vocabulary import JSON, JSONObject

DumpFormat = Literal["elf", "kdump-zlib"]
DumpProgress = Callable[[int, int], None]
"""Called with (bytes completed, bytes total) as the dump goes on."""


@dataclass(frozen=True, slots=True)
class Event:
    """A guest event in QMP's vocabulary: name, data, and the emitter's own timestamp
    (seconds since the epoch). Transports that are not QMP translate to these names."""

    name: str
    data: Mapping[str, object]
    timestamp: float

    @classmethod
    def from_message(cls, msg: Mapping[str, object]) -> Event:
        """From a QMP event message (``event``, ``data``, ``timestamp``)."""
        stamp = cast(Mapping[str, int], msg.get("timestamp") or {})
        when = stamp.get("seconds", 0) + stamp.get("microseconds", 0) / 1e6
        return cls(str(msg["event"]), cast(Mapping[str, object], msg.get("data") or {}), when)

    def to_json(self) -> JSONObject:
        return {"event": self.name, "data": dict(self.data), "timestamp": self.timestamp}

    @classmethod
    def from_json(cls, doc: JSON) -> Event:
        """The inverse of :meth:`to_json` (an event as a bundle records it); raises
        ``ValueError`` on anything else."""
        if not isinstance(doc, dict) or not isinstance(doc.get("event"), str):
            raise ValueError(f"not an event record: {doc!r:.80}")
        data, stamp = doc.get("data") or {}, doc.get("timestamp") or 0.0
        if not isinstance(data, dict) or not isinstance(stamp, int | float):
            raise ValueError(f"not an event record: {doc!r:.80}")
        return cls(doc["event"], data, float(stamp))


class Guest(Protocol):
    """One open conversation with a guest's monitor. Obtain it from :meth:`Address.connect`."""

    @property
    def where(self) -> str:
        """The address as records print it (``qmp`` field of status and watch records)."""
        ...

    @property
    def pid(self) -> int | None:
        """The local QEMU process's pid; None when unknown (remote, or not told)."""
        ...

    @property
    def qemu_version(self) -> str:
        """``MAJOR.MINOR.MICRO`` of the QEMU behind the guest, or ``unknown``."""
        ...

    @property
    def connected(self) -> bool:
        """False once the transport has seen the conversation end."""
        ...

    @property
    def seen(self) -> list[Event]:
        """Every event received so far, oldest first (callers may trim it)."""
        ...

    async def runstate(self) -> str:
        """QEMU's RunState name (``running``, ``internal-error``, ``paused``…).

        Raises: GuestGone, TransportTimeout, CommandFailed."""
        ...

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> JSON:
        """Run a QMP command, return its ``return`` value.

        Raises: CommandFailed (refused), GuestGone (lost mid-command), TransportTimeout."""
        ...

    async def hmp(self, command_line: str) -> str:
        """Run a read-only human-monitor command (e.g. ``info registers -a``); its text.

        Raises: as :meth:`execute`."""
        ...

    def events(self) -> list[Event]:
        """Events received since the last call, oldest first (all are kept in :attr:`seen`)."""
        ...

    async def next_event(self, timeout: float) -> Event | None:
        """The next event, or None when none came within ``timeout`` seconds."""
        ...

    async def dump_destination(self, fd: int, path: Path) -> str:
        """The ``protocol`` argument of ``dump-guest-memory`` that makes QEMU write into
        ``fd`` (open at ``path``): ``fd:NAME`` after passing it, else ``file:PATH``.

        Raises: as :meth:`execute`."""
        ...


class Address(Protocol):
    """Where a guest is, and how to open a conversation with it."""

    def __str__(self) -> str: ...

    @property
    def label(self) -> str:
        """A short name for the guest before it tells its own (e.g. the socket's stem)."""
        ...

    def connect(self, timeout: float) -> AbstractAsyncContextManager[Guest]:
        """Open, negotiate (bounded by ``timeout``) and close at the end of the block.

        Raises: GuestGone, GuestHeld, NotAMonitor, TransportConfigError, TransportTimeout."""
        ...

    def owners(self) -> list[int] | None:
        """Live local processes that serve this address; None when that cannot be known
        (e.g. a TCP endpoint), which makes a ``gone`` guest not failover-safe."""
        ...


@runtime_checkable
class Managed(Protocol):
    """What a guest behind a manager (libvirt) adds for capture: the manager's view of it,
    and the files the manager keeps for it. A plain QMP guest has none of this."""

    @property
    def monitor(self) -> bool:
        """False when monitor commands are off: no HMP, registers come from the dump."""
        ...

    async def manager_identity(self) -> JSONObject:
        """The manager's record of the guest (versions, state and reason, configuration)."""
        ...

    def qemu_log(self) -> tuple[bytes, str] | None:
        """QEMU's log since the guest's last start (bounded) and where it came from."""
        ...

    async def console_path(self) -> Path | None:
        """The guest's serial console file, when the manager's configuration names one."""
        ...
