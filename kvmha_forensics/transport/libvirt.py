"""The libvirt transport: a domain reached through libvirtd, behind the :class:`~.base.Guest`
interface (docs/libvirt.md).

libvirt holds each domain's QMP socket. :class:`Domain` (the :class:`~.base.Address`) names a
domain on a libvirt URI; :class:`DomainGuest` talks to it in one of two modes:

- *monitor* (the default): QMP and HMP commands through libvirt's monitor pass-through
  (``virDomainQemuMonitorCommand``; libvirt then logs the domain as tainted
  ``custom-monitor``), QEMU's own events through libvirt's QMP event pass-through, and
  libvirt's lifecycle events beside them (``LIBVIRT_LIFECYCLE``);
- *API-only*: libvirt's own APIs only. :meth:`DomainGuest.execute` answers the read-only
  queries capture, status and watch ask (``query-status`` from the domain's state and reason,
  ``query-block-jobs`` from its block jobs, ``query-migrate`` and ``query-jobs`` from its job,
  ``dump-guest-memory`` through ``virDomainCoreDumpWithFormat``) and refuses every other
  command; events are libvirt's lifecycle and I/O-error events in QMP's vocabulary.

Events reach the asyncio loop from libvirt's default event loop, run in one daemon thread.
libvirt-python is imported on first use: without it, only this transport is unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

from ..errors import (
    CommandFailed,
    GuestGone,
    InputError,
    ManagerUnavailable,
    TransportError,
    TransportTimeout,
)
from ..vocabulary import JSON, JSONObject
from .base import Event, Guest
from .libvirt_api import (
    BLOCK_JOB_TYPES,
    PAUSED_RUNSTATES,
    STATE_NAMES,
    STATE_RUNSTATES,
    Dump,
    as_qmp,
    job_answer,
    qmp_return,
    reason_names,
)
from .libvirt_files import local, log_dir, log_since_start, pid_of
from .libvirt_hub import LIFECYCLE, Hub, lib, translate

log = logging.getLogger(__name__)

DEFAULT_URI = "qemu:///system"
# A libvirt call may wait behind libvirtd's own work on a busy host: each gets at least this
# long (a caller with a deadline of its own, like status, still answers on time).
CALL_FLOOR = 10.0
INTERNAL_ERROR = b"KVM internal error"
# Always through libvirt's dump API, in both modes: libvirtd 9.0 crashes (SIGSEGV in
# qemuProcessHandleDumpCompleted) on the DUMP_COMPLETED of a dump it did not start itself.
DUMP_COMMANDS = frozenset({"dump-guest-memory", "query-dump"})
# Answered from libvirt's own state in both modes: they need no domain job, so they answer
# at once while libvirtd is still handling the freeze (a monitor command waits for that job).
# query-status asks the monitor only for a pause libvirt cannot explain (paused, unknown).
FROM_LIBVIRT = DUMP_COMMANDS | {"query-status", "query-block-jobs", "query-jobs",
                                "query-migrate", "query-name", "query-uuid"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Domain:
    """A libvirt domain (by name or UUID) on ``uri``: the :class:`~.base.Address`.

    ``api_only``: libvirt's own APIs only, no monitor pass-through. ``events``: subscribe to
    the domain's events (a one-shot ``status`` does not need them)."""

    name: str
    uri: str = DEFAULT_URI
    api_only: bool = False
    events: bool = True

    def __str__(self) -> str:
        return f"{self.name}@{self.uri}"

    @property
    def label(self) -> str:
        return self.name

    def connect(self, timeout: float) -> AbstractAsyncContextManager[Guest]:
        return self.open(timeout)

    @asynccontextmanager
    async def open(self, timeout: float) -> AsyncIterator[DomainGuest]:
        """:meth:`connect`, typed as this transport's guest.

        Raises: GuestGone, ManagerUnavailable, TransportConfigError, TransportTimeout."""
        hub = await Hub.get(self.uri, timeout, self.events)
        guest = await DomainGuest.attach(self, hub, timeout)
        try:
            yield guest
        finally:
            guest.detach()

    def owners(self) -> list[int] | None:
        if not local(self.uri):
            return None
        pid = pid_of(self.uri, self.name)
        return [pid] if pid else []


@dataclass
class DomainGuest:
    """One domain reached through libvirtd (a :class:`~.base.Guest`)."""

    address: Domain
    hub: Hub
    dom: Any
    name: str
    uuid: str
    timeout: float
    loop: asyncio.AbstractEventLoop
    qemu_version: str
    pid: int | None
    seen: list[Event] = field(default_factory=list)
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    gone: bool = False
    dump: Dump | None = None
    pending: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    async def attach(cls, address: Domain, hub: Hub, timeout: float) -> DomainGuest:
        lv, _ = lib()

        def lookup() -> tuple[Any, int]:
            conn = hub.conn
            by_uuid = re.fullmatch(r"[0-9a-fA-F-]{36}", address.name)
            dom = (
                conn.lookupByUUIDString(address.name)
                if by_uuid
                else conn.lookupByName(address.name)
            )
            return dom, int(conn.getVersion()) if hub.events else 0  # status needs none

        try:
            dom, version = await asyncio.wait_for(asyncio.to_thread(lookup), timeout)
        except TimeoutError as exc:
            raise TransportTimeout(
                f"libvirtd did not answer for {address} in {timeout:g}s"
            ) from exc
        except lv.libvirtError as exc:
            raise translate(exc, "lookup", address.name, address.uri) from exc
        name = str(dom.name())
        qemu = f"{version // 1000000}.{version // 1000 % 1000}.{version % 1000}"
        qemu = qemu if version else "unknown"
        pid = pid_of(address.uri, name) if local(address.uri) else None
        guest = cls(address, hub, dom, name, str(dom.UUIDString()), timeout,
                    asyncio.get_running_loop(), qemu, pid)  # fmt: skip
        hub.users += 1
        if hub.events:
            hub.subscribe(guest.uuid, guest._deliver, qmp_events=not address.api_only)
        return guest

    def detach(self) -> None:
        self.hub.users -= 1
        if self.hub.events:
            self.hub.unsubscribe(self.uuid, self._deliver, qmp_events=not self.address.api_only)
        if self.hub.users == 0 and not self.hub.events:
            Hub.hubs.pop((self.hub.uri, False), None)
            with contextlib.suppress(Exception):
                self.hub.conn.close()

    # --- events -------------------------------------------------------------------------
    def _deliver(self, _uuid: str, event: Event | None) -> None:
        """From the libvirt event thread: hand ``event`` to this guest's loop."""
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self.loop.call_soon_threadsafe(self._arrived, event)

    def _arrived(self, event: Event | None) -> None:
        if event is None:  # the domain stopped, or the connection to libvirtd closed
            self.gone = self.gone or self.hub.alive
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(event)
        if event.name == LIFECYCLE and self.address.api_only:
            if (event.data.get("event"), event.data.get("detail")) == ("suspended", "ioerror"):
                task = asyncio.create_task(self._io_error(event.timestamp))
                self.pending.add(task)
                task.add_done_callback(self.pending.discard)
            else:
                for translated in as_qmp(event):
                    self.queue.put_nowait(translated)

    async def _io_error(self, when: float) -> None:
        """libvirt 9.0 sends no I/O-error event here, only the lifecycle one: the disks and
        errors come from ``virDomainGetDiskErrors``, as QEMU's BLOCK_IO_ERROR, then STOP."""
        try:
            for disk in await self._block():
                if disk["io-status"] != "ok":
                    data = {"device": disk["device"], "nospace": disk["io-status"] == "nospace",
                            "action": "stop", "via": "virDomainGetDiskErrors"}  # fmt: skip
                    self.queue.put_nowait(Event("BLOCK_IO_ERROR", data, when))
        except TransportError as exc:
            log.debug("%s: disk errors unavailable: %s", self.name, exc)
        self.queue.put_nowait(Event("STOP", {}, when))

    @property
    def where(self) -> str:
        return str(self.address)

    @property
    def connected(self) -> bool:
        """False once the domain stopped; a lost libvirtd is :meth:`next_event`'s to say."""
        return not self.gone

    @property
    def monitor(self) -> bool:
        return not self.address.api_only

    def _check_hub(self) -> None:
        if not self.hub.alive:
            raise ManagerUnavailable(
                f"the connection to libvirtd at {self.address.uri} was lost",
                "waiting for libvirtd; every domain's state is read again once it is back",
            )

    def events(self) -> list[Event]:
        """Events received since the last call, oldest first (all are kept in :attr:`seen`)."""
        fresh: list[Event] = []
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if event is not None:
                fresh.append(event)
        self.seen.extend(fresh)
        return fresh

    async def next_event(self, timeout: float) -> Event | None:
        """The next event, or None after ``timeout`` s or when the domain stopped.

        Raises: ManagerUnavailable when the connection to libvirtd closed."""
        self._check_hub()
        try:
            got = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None
        if got is None:
            self._check_hub()
        else:
            self.seen.append(got)
        return got

    # --- commands -----------------------------------------------------------------------
    async def _call(self, what: str, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        lv, _ = lib()
        limit = max(self.timeout, CALL_FLOOR) if timeout is None else timeout
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn), limit)
        except TimeoutError as exc:
            raise TransportTimeout(f"libvirtd did not answer {what} within {limit:g}s") from exc
        except lv.libvirtError as exc:
            self._check_hub()
            if not self.hub.conn.isAlive():
                self.hub.alive = False
                self._check_hub()
            error = translate(exc, what, self.address.name, self.address.uri)
            if isinstance(error, CommandFailed | ManagerUnavailable) and not self._active():
                self.gone = True
                raise GuestGone(f"domain {self.name} stopped during {what}") from exc
            if isinstance(error, ManagerUnavailable):  # libvirtd is there: the domain refused
                error = CommandFailed(f"libvirt refused {what} on domain {self.name}: {exc}")
            raise error from exc

    def _active(self) -> bool:
        """Whether the domain still runs (False when it stopped or was undefined)."""
        lv, _ = lib()
        try:
            return bool(self.dom.isActive())
        except lv.libvirtError:
            return False

    async def execute(
        self,
        command: str,
        arguments: Mapping[str, object] | None = None,
        *,
        timeout: float | None = None,
    ) -> JSON:
        """A QMP command: through the monitor pass-through, or (API-only) answered from
        libvirt's own APIs. Raises CommandFailed, GuestGone, ManagerUnavailable,
        TransportTimeout."""
        if self.address.api_only or command in FROM_LIBVIRT:
            return await self._emulate(command, dict(arguments or {}), timeout)
        return await self._monitor(command, arguments, timeout)

    async def _monitor(
        self, command: str, arguments: Mapping[str, object] | None, timeout: float | None
    ) -> JSON:
        _, lq = lib()
        message = json.dumps(
            {"execute": command, **({"arguments": arguments} if arguments else {})}
        )
        reply = await self._call(
            command, lambda: lq.qemuMonitorCommand(self.dom, message, 0), timeout
        )
        return qmp_return(command, reply)

    async def hmp(self, command_line: str) -> str:
        """A read-only HMP command through the pass-through (not in API-only mode)."""
        if self.address.api_only:
            raise CommandFailed(
                f"HMP {command_line!r} needs the monitor pass-through",
                "it is off (--libvirt-api-only)",
            )
        _, lq = lib()
        flag = lq.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP
        reply = await self._call(
            command_line, lambda: lq.qemuMonitorCommand(self.dom, command_line, flag)
        )
        return str(reply)

    async def runstate(self) -> str:
        return await self._runstate()

    async def dump_destination(self, fd: int, path: Path) -> str:
        """``file:PATH``: the dump goes through libvirt's dump API, which opens the path."""
        return f"file:{path}"

    # --- libvirt's own view -------------------------------------------------------------
    async def state(self) -> tuple[str, int]:
        """libvirt's state name and reason code (``virDomainGetState``)."""
        state, reason = await self._call("get state", lambda: self.dom.state())
        return STATE_NAMES[state] if state < len(STATE_NAMES) else str(state), int(reason)

    async def state_reason(self) -> str:
        """``virsh domstate --reason``'s words, e.g. ``crashed (panicked)``."""
        lv, _ = lib()
        name, reason = await self.state()
        reasons = reason_names(lv, name)
        return f"{name} ({reasons.get(reason, str(reason))})"

    async def xml(self) -> str:
        """The domain's live XML."""
        return str(await self._call("get XML", lambda: self.dom.XMLDesc(0)))

    async def _runstate(self) -> str:
        state, reason = await self._call("get state", lambda: self.dom.state())
        if state == 5 or state == 0:  # shut off, no state
            self.gone = True
            raise GuestGone(f"domain {self.name} is shut off")
        if state != 3:
            return STATE_RUNSTATES.get(state, "paused")
        runstate = PAUSED_RUNSTATES[reason] if reason < len(PAUSED_RUNSTATES) else "paused"
        if reason == 0 and not self.address.api_only:  # a pause libvirt cannot explain
            status = cast(JSONObject, await self._monitor("query-status", None, None))
            return str(status.get("status"))
        if reason == 0:
            try:
                logged = await asyncio.to_thread(self.qemu_log)
            except InputError:
                logged = None  # capture's qemu-log step says why
            if logged is not None and INTERNAL_ERROR in logged[0]:
                return "internal-error"
        return runstate

    def qemu_log(self) -> tuple[bytes, str] | None:
        """The domain's QEMU log since its last start, and its path (None when there is none
        here); a FIFO, a device or a link to nothing there is an :class:`InputError`."""
        if not local(self.address.uri):
            return None  # libvirtd's host has the file
        path = log_dir(self.address.uri) / f"{self.name}.log"
        if not os.path.lexists(path):
            return None
        return log_since_start(path), f"{path}, since the domain's last start"

    async def console_path(self) -> Path | None:
        """The serial console's file: ``<serial type='file'>``'s source, else a serial or
        console ``<log file=…>``."""
        if not local(self.address.uri):
            return None  # libvirtd's host has the file
        root = ET.fromstring(await self.xml())
        for dev in (*root.iterfind("devices/serial"), *root.iterfind("devices/console")):
            source = dev.find("source")
            if dev.get("type") == "file" and source is not None and source.get("path"):
                return Path(str(source.get("path")))
            logged = dev.find("log")
            if logged is not None and logged.get("file"):
                return Path(str(logged.get("file")))
        return None

    async def manager_identity(self) -> JSONObject:
        """What the bundle's identity records of libvirt: its version, the domain's state
        and reason, its XML."""
        version = int(await self._call("get version", lambda: self.hub.conn.getLibVersion()))
        return {
            "uri": self.address.uri,
            "libvirt_version": f"{version // 1000000}.{version // 1000 % 1000}.{version % 1000}",
            "domain": self.name,
            "uuid": self.uuid,
            "state_reason": await self.state_reason(),
            "mode": "api-only" if self.address.api_only else "monitor",
            "xml": await self.xml(),
        }

    # --- API-only: QMP queries answered from libvirt's APIs -------------------------------
    async def _emulate(self, command: str, args: JSONObject, timeout: float | None) -> JSON:
        if command == "query-status":
            runstate = await self._runstate()
            return {"status": runstate, "running": runstate == "running", "singlestep": False}
        if command == "query-name":
            return {"name": self.name}
        if command == "query-uuid":
            return {"UUID": self.uuid}
        if command == "query-kvm":
            kind = ET.fromstring(await self.xml()).get("type")
            return {"enabled": kind == "kvm", "present": kind == "kvm"}
        if command == "query-block-jobs":
            return await self._block_jobs()
        if command == "query-block":
            return cast(JSON, await self._block())
        if command in ("query-jobs", "query-migrate"):
            stats = await self._call("get job stats", lambda: self.dom.jobStats(0))
            return job_answer(command, cast(dict[str, Any], stats))
        if command == "dump-guest-memory":
            self.dump = Dump(self, str(args.get("protocol", "")), str(args.get("format", "elf")))
            self.dump.start()
            return {}
        if command == "query-dump":
            if self.dump is None:
                return {"status": "none", "completed": 0, "total": 0}
            return await self.dump.query()
        raise CommandFailed(
            f"{command} needs the monitor pass-through", "it is off (--libvirt-api-only)"
        )

    async def _block(self) -> list[JSONObject]:
        """``query-block``'s device and io-status, from the XML and the disk errors."""
        root = ET.fromstring(await self.xml())
        errors = cast(
            dict[str, int], await self._call("get disk errors", partial(self.dom.diskErrors, 0))
        )
        status = {0: "ok", 1: "failed", 2: "nospace"}
        return [
            {"device": str(t.get("dev")), "qdev": str(t.get("dev")),
             "io-status": status.get(errors.get(str(t.get("dev")), 0), "failed")}
            for t in root.iterfind("devices/disk/target")
        ]  # fmt: skip

    async def _block_jobs(self) -> list[JSONObject]:
        root = ET.fromstring(await self.xml())
        targets = [t.get("dev") for t in root.iterfind("devices/disk/target") if t.get("dev")]
        jobs: list[JSONObject] = []
        for target in targets:
            info = await self._call("get block job", partial(self.dom.blockJobInfo, target, 0))
            if info:
                kind = BLOCK_JOB_TYPES.get(int(info.get("type", 0)), "unknown")
                jobs.append({"device": target, "type": kind, "len": info.get("end", 0),
                             "offset": info.get("cur", 0), "status": "running",
                             "paused": False, "busy": True})  # fmt: skip
        return jobs


async def preflight(uri: str, timeout: float) -> None:
    """Open the URI's shared connection once, so a URI that can never serve a QEMU domain
    (a wrong one, or not the QEMU driver) ends a watch at its start (TransportConfigError);
    libvirtd not running is left to the watch, which waits for it."""
    with contextlib.suppress(ManagerUnavailable, TransportTimeout):
        await Hub.get(uri, timeout, events=True)


class DomainScanner:
    """Every active domain on ``uri``, listed in one call, and a wake-up as soon as a domain
    starts, stops or is undefined (or the connection to libvirtd closes)."""

    def __init__(self, uri: str, api_only: bool, timeout: float) -> None:
        self.uri = uri
        self.api_only = api_only
        self.timeout = timeout
        self.changed = asyncio.Event()
        self.hub: Hub | None = None

    def _listener(self, _uuid: str, _name: str, kind: str) -> None:
        if kind in ("started", "stopped", "undefined", "closed"):
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.changed.set)

    async def domains(self) -> list[Domain]:
        """The active domains now. Raises: ManagerUnavailable, TransportTimeout."""
        self.loop = asyncio.get_running_loop()
        hub = await Hub.get(self.uri, self.timeout, events=True)
        if hub is not self.hub:
            hub.domain_listeners.append(self._listener)
            self.hub = hub
        lv, _ = lib()
        self.changed.clear()
        try:
            found = await asyncio.wait_for(
                asyncio.to_thread(hub.conn.listAllDomains, lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE),
                self.timeout,
            )
        except TimeoutError as exc:
            raise TransportTimeout(f"libvirtd at {self.uri} did not list its domains") from exc
        except lv.libvirtError as exc:
            raise translate(exc, "list domains", "-", self.uri) from exc
        return [Domain(str(d.name()), self.uri, self.api_only) for d in found]

    async def wait(self, timeout: float, stop: asyncio.Event) -> None:
        """Until a domain starts, stops or is undefined, ``stop`` is set, or ``timeout`` s."""
        waits = [asyncio.create_task(self.changed.wait()), asyncio.create_task(stop.wait())]
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
