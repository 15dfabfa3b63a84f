"""libvirt-python underneath the libvirt transport: the lazy import, the error translation,
libvirt's default event loop in one thread, and :class:`Hub`, one connection per URI whose
events are handed to subscribers by domain UUID."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar

from ..errors import (
    CommandFailed,
    EnvironmentProblem,
    GuestGone,
    GuestHeld,
    ManagerUnavailable,
    TransportConfigError,
    TransportError,
    TransportTimeout,
)
from ..vocabulary import JSONObject
from .base import Event

log = logging.getLogger(__name__)

LIFECYCLE = "LIBVIRT_LIFECYCLE"
# virDomainEventType and the details that matter here (libvirt-domain.h)
EVENTS = ("defined", "undefined", "started", "suspended", "resumed", "stopped", "shutdown",
          "pmsuspended", "crashed")  # fmt: skip
SUSPENDED_DETAILS = ("paused", "migrated", "ioerror", "watchdog", "restored", "from-snapshot",
                     "api-error", "postcopy", "postcopy-failed")  # fmt: skip
STOPPED_DETAILS = ("shutdown", "destroyed", "crashed", "migrated", "saved", "failed",
                   "from-snapshot")  # fmt: skip
CRASHED_DETAILS = ("panicked", "crashloaded")
SHUTDOWN_DETAILS = ("finished", "guest", "host")
DETAILS = {"suspended": SUSPENDED_DETAILS, "stopped": STOPPED_DETAILS,
           "crashed": CRASHED_DETAILS, "shutdown": SHUTDOWN_DETAILS,
           "resumed": ("unpaused", "migrated", "from-snapshot", "postcopy", "postcopy-failed"),
           "started": ("booted", "migrated", "restored", "from-snapshot", "wakeup"),
           "defined": ("added", "updated", "renamed", "from-snapshot"),
           "undefined": ("removed", "renamed")}  # fmt: skip


def lib() -> tuple[ModuleType, ModuleType]:
    try:
        import libvirt
        import libvirt_qemu
    except ImportError as exc:
        raise EnvironmentProblem(
            "libvirt-python is not installed",
            "pip install 'kvmha-forensics[libvirt]' (it builds against libvirt-dev and pkg-config)",
        ) from exc
    if not _quiet:
        libvirt.registerErrorHandler(_ignore_error, None)  # errors are raised, not printed
        _quiet.append(True)
    return libvirt, libvirt_qemu


_quiet: list[bool] = []


def _ignore_error(_context: object, _error: object) -> None:
    return None


def translate(exc: Exception, what: str, name: str, uri: str) -> TransportError:
    """A libvirtError (about domain ``name`` on ``uri``) as the transport's semantic error."""
    lv, _ = lib()
    code = exc.get_error_code() if isinstance(exc, lv.libvirtError) else None
    text = exc.get_error_message() if isinstance(exc, lv.libvirtError) else str(exc)
    if code == lv.VIR_ERR_NO_DOMAIN:
        return GuestGone(f"no domain {name} on {uri}", "virsh list --all")
    if code == lv.VIR_ERR_OPERATION_INVALID:
        return GuestGone(f"domain {name} is not running ({text})")
    if code in (lv.VIR_ERR_OPERATION_TIMEOUT, lv.VIR_ERR_AGENT_UNRESPONSIVE):
        return GuestHeld(f"{what} on domain {name}: {text}",
                         "another libvirt job holds the domain; try again")  # fmt: skip
    if code in (lv.VIR_ERR_AUTH_FAILED, lv.VIR_ERR_ACCESS_DENIED, lv.VIR_ERR_INVALID_ARG,
                lv.VIR_ERR_NO_SUPPORT, lv.VIR_ERR_CONFIG_UNSUPPORTED):  # fmt: skip
        return TransportConfigError(f"{what} on {name}@{uri}: {text}")
    if code in (lv.VIR_ERR_SYSTEM_ERROR, lv.VIR_ERR_NO_CONNECT, lv.VIR_ERR_RPC,
                lv.VIR_ERR_INVALID_CONN):  # fmt: skip
        return ManagerUnavailable(
            f"cannot reach libvirtd at {uri} ({text})",
            "is libvirtd running? (systemctl status libvirtd, or start 'libvirtd -d')",
        )
    return CommandFailed(f"libvirt refused {what} on domain {name}: {text}")


def _check_driver(conn: Any, uri: str) -> None:
    """Raise TransportConfigError (and close ``conn``) unless ``uri`` is libvirt's QEMU
    driver: another (``test:///default``, LXC, Xen) lacks the calls a QEMU guest needs."""
    lv, _ = lib()
    try:
        driver = str(conn.getType())
    except lv.libvirtError as exc:
        driver = f"unknown ({exc.get_error_message()})"
    if driver != "QEMU":
        with contextlib.suppress(lv.libvirtError):
            conn.close()
        raise TransportConfigError(
            f"libvirt URI {uri} is the {driver} driver, not QEMU's",
            "kvmha-forensics reads QEMU domains: check --connect (qemu:///system or "
            "qemu:///session)",
        )


class _EventThread:
    """libvirt's default event loop, in one daemon thread for the whole process. It must be
    registered before a connection is opened for that connection to deliver events."""

    lock = threading.Lock()
    started = False

    @classmethod
    def ensure(cls) -> None:
        with cls.lock:
            if cls.started:
                return
            lv, _ = lib()
            lv.virEventRegisterDefaultImpl()
            threading.Thread(target=cls._run, name="libvirt-events", daemon=True).start()
            cls.started = True

    @staticmethod
    def _run() -> None:
        lv, _ = lib()
        while True:
            try:
                lv.virEventRunDefaultImpl()
            except lv.libvirtError as exc:  # never ends the loop
                log.debug("libvirt event loop: %s", exc)


Sink = Callable[[str, Event | None], None]
"""Receives (domain UUID, event); a None event means the domain's QEMU is gone."""


class Hub:
    """One libvirt connection with its event callbacks, shared by every guest on that URI in
    this process; events are handed to subscribers by domain UUID. A hub whose connection
    closed (libvirtd stopped or restarted) is dead: the next :meth:`get` opens a new one."""

    hubs: ClassVar[dict[tuple[str, bool], Hub]] = {}

    def __init__(self, uri: str, conn: Any, events: bool) -> None:
        self.uri = uri
        self.conn = conn
        self.events = events
        self.alive = True
        self.users = 0
        self.subscribers: dict[str, list[Sink]] = {}
        self.domain_listeners: list[Callable[[str, str, str], None]] = []
        self.callbacks: list[int] = []
        self.qmp_callback: int | None = None
        self.qmp_users = 0

    @classmethod
    async def get(cls, uri: str, timeout: float, events: bool) -> Hub:
        """The live hub for ``uri`` (opened when there is none)."""
        key = (uri, events)
        hub = cls.hubs.get(key)
        if hub is not None and hub.alive:
            return hub
        if events:
            _EventThread.ensure()
        lv, _ = lib()
        try:
            conn = await asyncio.wait_for(asyncio.to_thread(lv.open, uri), timeout)
        except TimeoutError as exc:
            raise TransportTimeout(f"libvirtd at {uri} did not answer in {timeout:g}s") from exc
        except lv.libvirtError as exc:
            error = translate(exc, "connect", "-", uri)
            if isinstance(error, ManagerUnavailable):
                raise error from exc
            raise TransportConfigError(
                f"cannot open libvirt URI {uri}: {exc.get_error_message()}", "check --connect"
            ) from exc
        await asyncio.to_thread(_check_driver, conn, uri)
        hub = cls(uri, conn, events)
        if events:
            await asyncio.to_thread(hub._register)
        cls.hubs[key] = hub
        return hub

    def _register(self) -> None:
        lv, _ = lib()
        self.conn.registerCloseCallback(self._closed, None)
        with contextlib.suppress(lv.libvirtError):
            self.conn.setKeepAlive(5, 3)
        self.callbacks = [
            self.conn.domainEventRegisterAny(
                None, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None
            ),
        ]

    def subscribe(self, uuid: str, sink: Sink, *, qmp_events: bool) -> None:
        """Deliver ``uuid``'s events to ``sink`` (with QEMU's own events when ``qmp_events``)."""
        self.subscribers.setdefault(uuid, []).append(sink)
        if qmp_events and self.events:
            self.qmp_users += 1
            if self.qmp_callback is None:
                _, lq = lib()
                self.qmp_callback = lq.qemuMonitorEventRegister(
                    self.conn, None, None, self._qmp_event, None, 0
                )

    def unsubscribe(self, uuid: str, sink: Sink, *, qmp_events: bool) -> None:
        sinks = self.subscribers.get(uuid, [])
        if sink in sinks:
            sinks.remove(sink)
        if not sinks:
            self.subscribers.pop(uuid, None)
        if qmp_events and self.events:
            self.qmp_users -= 1

    def _send(self, uuid: str, event: Event | None) -> None:
        for sink in list(self.subscribers.get(uuid, ())):
            sink(uuid, event)

    # the callbacks below run in the libvirt event thread
    def _lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        uuid, name = dom.UUIDString(), dom.name()
        kind = EVENTS[event] if event < len(EVENTS) else str(event)
        details = DETAILS.get(kind, ())
        what = details[detail] if detail < len(details) else str(detail)
        data: JSONObject = {"event": kind, "detail": what, "domain": name}
        self._send(uuid, Event(LIFECYCLE, data, time.time()))
        if kind in ("stopped", "undefined"):
            self._send(uuid, None)
        for listener in list(self.domain_listeners):
            listener(uuid, name, kind)

    def _qmp_event(
        self, _conn: Any, dom: Any, event: str, seconds: int, micros: int, details: str | None,
        _opaque: Any,
    ) -> None:  # fmt: skip
        try:
            data = json.loads(details) if details else {}
        except ValueError:
            data = {"raw": details}
        self._send(dom.UUIDString(), Event(event, data, seconds + micros / 1e6))

    def _closed(self, _conn: Any, reason: int, _opaque: Any) -> None:
        log.info("libvirt connection to %s closed (reason %d)", self.uri, reason)
        self.alive = False
        for uuid in list(self.subscribers):
            self._send(uuid, None)
        for listener in list(self.domain_listeners):
            listener("", "", "closed")
