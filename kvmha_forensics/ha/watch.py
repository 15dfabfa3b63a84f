"""Watch guests over QMP; the moment one freezes, give HA the signal, then capture and analyze.

Each guest has its own task and its own QMP connection. A task sleeps until an event
arrives or the connection ends, and reads the runstate on every event (an internal error
stops the guest with a bare ``STOP``; a resume has no freeze event). A slow status poll
(``poll_interval``, each guest at its own phase) is the net for an event that never came; an
idle guest costs nothing else. On a freeze, in this order:

1. the HA signal: a :class:`Signal` record (one JSON line from the CLI) and the hook started
   with it; neither waits for anything below;
2. capture into ``out`` over the watcher's own connection (no second client needed);
3. analysis of the bundle;
4. the hook again, with the bundle and the verdict (after the first hook run has ended).

A lost connection is a ``gone`` signal; the task then reconnects with backoff, so a QEMU
restart or a re-created socket is picked up. :meth:`Watcher.stop` (SIGTERM in the CLI) ends
the watch; captures in flight get ``grace`` seconds to finish, then are finished *incomplete*.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analyze import analyze, gather
from ..capture.memory_source import MemorySource
from ..capture.steps import Capture, CaptureOptions, MemoryFormat, Progress, guest_lock
from ..errors import (
    BusyError,
    ForensicsError,
    GuestGone,
    ManagerUnavailable,
    TransportConfigError,
)
from ..transport.base import Address, Event, Guest, Managed
from ..transport.dirwatch import SocketDirectory
from ..transport.local import process_alive
from ..transport.replies import name_of
from ..vocabulary import JSONObject
from .freeze import FREEZE_EVENTS, RUNSTATES, WRITER_EVENTS, FreezeState, assess
from .hooks import HookResult, HookSpec, run_hook
from .records import (
    AnalysisRecord,
    CaptureRecord,
    HookRecord,
    Record,
    Signal,
    Sink,
    StateChange,
    VerdictSummary,
)

log = logging.getLogger(__name__)

SEEN_KEEP = 256  # events kept per connection while the guest runs
GONE_WAIT = 1.0  # seconds to let an exiting QEMU finish exiting before judging "gone"
LIBVIRT_RESCAN = 30.0  # seconds between listings of libvirt's domains (events wake it sooner)
SCAN_EVERY = 1.0  # seconds before trying again an unreadable --socket-dir or libvirt listing
CONFIRM_WAIT = 10.0  # seconds a capture waits for the state read that confirms an event's freeze
RETRY_FIRST = 0.5  # seconds before the first reconnect (doubling up to retry_max)


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """What to watch and what to do on a freeze (``out=None``: signal only, no capture)."""

    endpoints: tuple[Address, ...] = ()
    socket_dir: Path | None = None
    libvirt: str | None = None  # watch every domain on this libvirt URI
    libvirt_api_only: bool = False
    pattern: str = "*"
    out: Path | None = None
    memory_format: MemoryFormat = "elf"
    memory_source: MemorySource = "auto"
    capture_timeout: float = 600.0
    analyze: bool = True
    debuginfo_dirs: tuple[Path, ...] = ()
    hook: HookSpec | None = None
    poll_interval: float = 120.0
    connect_timeout: float = 2.0
    retry_max: float = 10.0
    grace: float = 30.0
    max_captures: int = 2


BundleAnalyzer = Callable[[Path, tuple[Path, ...]], VerdictSummary]


def bundle_verdict(bundle: Path, debuginfo_dirs: tuple[Path, ...] = ()) -> VerdictSummary:
    """Step (3): analyze ``bundle`` (as ``kvmha-forensics analyze`` does) into a verdict."""
    inputs, problems = gather(bundle, debuginfo_dirs=debuginfo_dirs)
    v = analyze(inputs, problems).verdict
    return VerdictSummary(v.cause, v.summary, v.culprit, v.signature, v.confidence)


@dataclass
class Episode:
    """One freeze of one QEMU: the events since it last ran, what was signaled."""

    events: list[Event] = field(default_factory=list)
    signaled: tuple[str | None, bool] | None = None
    pipeline: asyncio.Task[None] | None = None
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)  # a state read: frozen

    def __post_init__(self) -> None:
        self.confirmed.set()  # cleared while a freeze is known only from its event


class GuestWatch:
    """The task watching one guest's address, across reconnects."""

    def __init__(self, watcher: Watcher, endpoint: Address, *, from_dir: bool) -> None:
        self.w = watcher
        self.endpoint = endpoint
        self.from_dir = from_dir
        self.label = endpoint.label
        self.pid: int | None = None  # the QEMU of the current episode
        self.last_problem: str | None = None
        self.episode = Episode()
        self.quiet = False  # no job or migration at the last assessment, nor events of one since

    async def run(self) -> None:
        first = backoff = min(RETRY_FIRST, self.w.opts.poll_interval)
        while not self.w.stopping.is_set():
            if self.from_dir and not self.w.present(self.endpoint):
                log.info("%s: gone from its directory or host, no longer watched", self.endpoint)
                return
            owned: int | None = None
            lost: str | None = None
            try:
                async with self.endpoint.connect(self.w.opts.connect_timeout) as guest:
                    backoff = first
                    owned = self._own(guest.pid)
                    if owned is not None:
                        await self._connected(guest)
                        lost = "QEMU closed the QMP connection"
            except ManagerUnavailable as exc:  # says nothing about the guest: no signal
                self._unreachable(str(exc))
            except TransportConfigError as exc:  # nothing at the address yet, or a call
                self._unreachable(str(exc))  # the transport lacks: neither is a lost guest
                if owned is not None:  # the latter: no quick retries
                    backoff = self.w.opts.retry_max
            except ForensicsError as exc:
                lost = str(exc)
                if owned is None:
                    self._unreachable(lost)
            except Exception as exc:  # a bug must not end this guest's watch
                log.exception("%s: watch failed: %s", self.endpoint, exc)
                lost = f"watch failed: {exc}"
            finally:
                if owned is not None and self.w.owners.get(owned) is self:
                    del self.w.owners[owned]
            if owned is not None and lost and not self.w.stopping.is_set():
                await self._lost(lost)
            await self.w.sleep(backoff)
            backoff = min(backoff * 2, self.w.opts.retry_max)

    def _own(self, pid: int | None) -> int | None:
        """Claim the QEMU behind this socket (0 when its pid is unknown); None if another
        socket of the same QEMU is already watched."""
        owner = self.w.owners.get(pid) if pid else None
        if owner is not None and owner is not self:
            self._unreachable(f"QEMU {pid} is already watched through {owner.endpoint}")
            return None
        if pid:
            self.w.owners[pid] = self
        return pid or 0

    def _unreachable(self, why: str) -> None:
        if why != self.last_problem:
            self.last_problem = why
            self.w.emit(StateChange(self.label, str(self.endpoint), None, "unreachable", None, why))

    async def _connected(self, guest: Guest) -> None:
        pid = guest.pid
        if pid != self.pid or pid is None:
            self.episode = Episode()
        self.pid = pid
        name = name_of(await guest.execute("query-name"))
        self.label = str(name) if name else self.label
        self.episode.events.extend(guest.events())
        freeze = await assess(guest, self.episode.events)
        self.quiet = freeze.quiet
        self.last_problem = None
        self.w.emit(StateChange(self.label, str(self.endpoint), pid, freeze.state,
                                freeze.runstate, "connected"))  # fmt: skip
        await self._judge(guest, freeze, "connect", None)
        try:
            await self._loop(guest, freeze.runstate)
        finally:
            if self.episode.pipeline is not None:  # it captures over this connection
                self.episode.confirmed.set()  # no more reads: the capture decides
                await asyncio.wait([self.episode.pipeline])

    async def _loop(self, guest: Guest, runstate: str | None) -> None:
        """Until the connection ends: the runstate on every event, and on each poll (the
        first at a random phase, so many guests do not poll together).

        Events that arrive while the runstate is read may tell of a change made after QEMU
        answered: the runstate is read again at once. A change's trigger is its first freeze
        event among this read's events and those of the read before when that one found no
        change (QEMU sends ``GUEST_PANICKED`` before its vCPUs stop)."""
        interval = self.w.opts.poll_interval
        next_poll = time.monotonic() + interval * random.random()
        before: list[Event] = []  # the last read's events, when it found no change
        again = False
        while not self.w.stopping.is_set():
            if not guest.connected:
                raise GuestGone("QEMU closed the QMP connection")
            reread, wait = again, 0.0 if again else max(0.0, next_poll - time.monotonic())
            event = await self._next_event(guest, wait) if wait else None
            fresh = ([event] if event else []) + guest.events()
            self.episode.events.extend(fresh)
            if runstate == "running":
                del self.episode.events[:-SEEN_KEEP], guest.seen[:-SEEN_KEEP]
            if not fresh and not reread and time.monotonic() < next_poll:
                continue  # woken by the connection's end (checked above) or the stop
            next_poll = time.monotonic() + interval
            if not guest.connected:
                continue
            if any(e.name in WRITER_EVENTS for e in fresh):
                self.quiet = False
            unsafe = self.episode.signaled is not None and not self.episode.signaled[1]
            early = self._announced(guest, fresh)
            if early is not None:  # signaled now; the reads below confirm it (a stale answer,
                said, by = early  # still 'running', changes nothing)
                self.episode.confirmed.clear()  # the capture waits for it
                await self._judge(guest, said, f"event {by.name}", by.timestamp)
            # a freeze event: the runstate, jobs and migration in one round trip, not two
            likely = any(e.name in FREEZE_EVENTS for e in fresh)
            freeze = await assess(guest, self.episode.events) if likely else None
            if freeze is not None:
                self.quiet = freeze.quiet
            now = freeze.runstate if freeze else await guest.runstate()
            if now is not None and RUNSTATES.get(now, ("paused", None))[0] == "frozen":
                self.episode.confirmed.set()
            late = guest.events()  # arrived during the queries
            self.episode.events.extend(late)
            fresh += late
            evidence, again = before + fresh, bool(late)
            if now == runstate and not unsafe:
                before = evidence[-SEEN_KEEP:] if reread else fresh
                continue
            runstate, before = now, []
            if freeze is None:
                freeze = await assess(guest, self.episode.events)
            elif late:  # they may refine the cause (no new query: the same runstate)
                freeze = freeze.with_events(self.episode.events)
            trigger = next(
                (e for e in evidence if e.name in FREEZE_EVENTS), fresh[0] if fresh else None
            )
            how = f"event {trigger.name}" if trigger else "poll"
            await self._judge(guest, freeze, how, trigger.timestamp if trigger else None)

    def _announced(self, guest: Guest, fresh: list[Event]) -> tuple[FreezeState, Event] | None:
        """Through libvirt's monitor pass-through, the freeze QEMU's own event announces,
        before libvirtd is asked anything: libvirtd answers nothing about the domain until it
        has handled the freeze itself (docs/libvirt.md, *What bounds both modes*)."""
        if self.episode.signaled is not None or not (isinstance(guest, Managed) and guest.monitor):
            return None
        return FreezeState.announced(fresh, self.quiet)

    async def _next_event(self, guest: Guest, timeout: float) -> Event | None:
        """``guest.next_event``, cut short when the watcher stops."""
        event = asyncio.ensure_future(guest.next_event(timeout))
        try:
            await asyncio.wait((event, self.w.stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not event.done():
                event.cancel()
                await asyncio.wait((event,))
        return None if event.cancelled() else event.result()

    async def _judge(
        self, guest: Guest, freeze: FreezeState, how: str, qemu_time: float | None
    ) -> None:
        ep = self.episode
        if freeze.state != "frozen":
            if how != "connect":
                self.w.emit(StateChange(self.label, str(self.endpoint), self.pid, freeze.state,
                                        freeze.runstate, how))  # fmt: skip
            if freeze.state == "running" and (ep.pipeline is None or ep.pipeline.done()):
                self.episode = Episode()
            return
        if ep.signaled == (freeze.runstate, freeze.failover_safe):
            return
        first = ep.signaled is None
        ep.signaled = (freeze.runstate, freeze.failover_safe)
        signal = Signal.of(self.label, str(self.endpoint), self.pid, freeze, how, qemu_time)
        self.w.emit(signal)
        hook = self.w.start_hook(self.label, "signal", signal.to_json())
        if first:
            ep.pipeline = self.w.spawn(self._pipeline(guest, signal, hook, tuple(ep.events)))

    async def _lost(self, why: str) -> None:
        pid, self.pid = self.pid, None
        deadline = time.monotonic() + GONE_WAIT
        while pid and process_alive(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        pids = [pid] if pid else self.endpoint.owners()
        freeze = FreezeState.gone(why, pids, self.episode.events)
        signal = Signal.of(self.label, str(self.endpoint), pid, freeze, "connection lost", None)
        self.w.emit(signal)
        self.w.start_hook(self.label, "signal", signal.to_json())
        self.episode = Episode()

    async def _pipeline(
        self,
        guest: Guest,
        signal: Signal,
        hook: asyncio.Task[HookResult] | None,
        events: tuple[Event, ...],
    ) -> None:
        capture = await self._capture(guest, events) if self.w.opts.out else None
        analysis = None
        if capture is not None and capture.bundle is not None:
            analysis = await self.w.analyze(self.label, Path(capture.bundle))
        if hook is not None:
            await hook
        if self.w.opts.hook is None:
            return
        report = {**signal.to_json(), "kind": "report"}
        report["bundle"] = capture.bundle if capture else None
        report["bundle_status"] = capture.status if capture else None
        report["capture_reasons"] = list(capture.reasons) if capture else []
        verdict = analysis.verdict if analysis else None
        report["verdict_cause"] = verdict.cause if verdict else None
        report["verdict_summary"] = verdict.summary if verdict else None
        report["verdict_culprit"] = verdict.culprit if verdict else None
        report["verdict_signature"] = verdict.signature if verdict else None
        report["analysis_status"] = analysis.status if analysis else None
        await self.w.run_hook(self.w.opts.hook, self.label, "report", report)

    async def _capture(self, guest: Guest, events: tuple[Event, ...]) -> CaptureRecord:
        out = self.w.opts.out
        assert out is not None
        where = str(self.endpoint)
        opts = CaptureOptions(
            self.endpoint, out, self.w.opts.memory_format, None, self.w.opts.capture_timeout,
            memory_source=self.w.opts.memory_source,
        )  # fmt: skip
        record: CaptureRecord
        async with self.w.capture_slots:
            try:
                out.mkdir(parents=True, exist_ok=True, mode=0o700)
                with guest_lock(guest.pid, self.endpoint):  # held from the signal on
                    with contextlib.suppress(TimeoutError):  # signaled from its event alone:
                        await asyncio.wait_for(self.episode.confirmed.wait(), CONFIRM_WAIT)
                    cap = Capture(guest, opts, self._progress)
                    if self.w.stopping.is_set():
                        cap.cut_short(self.w.opts.grace, self.w.grace_limit)
                    self.w.in_flight.add(cap)
                    try:
                        result = await cap.run(events)
                    finally:
                        self.w.in_flight.discard(cap)
            except (ForensicsError, OSError) as exc:
                skipped = isinstance(exc, BusyError)
                record = CaptureRecord(self.label, where, "skipped" if skipped else "failed",
                                       None, (str(exc),))  # fmt: skip
            else:
                m = result.manifest
                record = CaptureRecord(self.label, where, m.status, str(result.bundle),
                                       tuple(m.reasons))  # fmt: skip
        self.w.emit(record)
        return record

    def _progress(self, p: Progress) -> None:
        if p.status != "progress":
            log.debug("%s: capture %s %s %s", self.label, p.step, p.status, p.detail or "")


class Watcher:
    """Many :class:`GuestWatch` tasks, the socket-directory scan, and a clean stop."""

    def __init__(
        self, opts: WatchOptions, sink: Sink, analyzer: BundleAnalyzer | None = bundle_verdict
    ) -> None:
        self.opts = opts
        self.sink = sink
        self.analyzer = analyzer if opts.analyze else None
        self.stopping = asyncio.Event()
        self._stopped: asyncio.Future[bool] | None = None
        self.owners: dict[int, GuestWatch] = {}
        self.in_flight: set[Capture] = set()
        self.capture_slots = asyncio.Semaphore(opts.max_captures)
        self.analysis_slot = asyncio.Semaphore(1)
        self.guests: dict[str, asyncio.Task[None]] = {}
        self.domains: set[str] = set()  # active at the last libvirt scan
        self.scanned: set[str] = set()  # ever found by a libvirt scan
        self.background: set[asyncio.Task[None]] = set()
        self.hooks: set[asyncio.Task[HookResult]] = set()

    def emit(self, record: Record) -> None:
        self.sink(record)

    def stop(self) -> None:
        """End the watch: no new work; captures in flight get ``grace`` seconds, then end
        incomplete."""
        if self.stopping.is_set():
            return
        log.info("stopping: %d capture(s) in flight", len(self.in_flight))
        self.stopping.set()
        for cap in self.in_flight:
            cap.cut_short(self.opts.grace, self.grace_limit)

    @property
    def stopped(self) -> asyncio.Future[bool]:
        """One future, done once the watch stops, that every guest's wait shares."""
        if self._stopped is None:
            stopped: asyncio.Future[bool] = asyncio.ensure_future(self.stopping.wait())
            self._stopped = stopped
            return stopped
        return self._stopped

    @property
    def grace_limit(self) -> str:
        """The limit that ends a capture once the watch is stopping, as its reason says."""
        return f"--grace {self.opts.grace:g}s after the watcher was stopped (SIGTERM or SIGINT)"

    async def sleep(self, seconds: float) -> None:
        """Sleep, or return early when the watcher stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("watch task failed: %r", task.exception(), exc_info=task.exception())

    def start_hook(
        self, guest: str, phase: str, payload: JSONObject
    ) -> asyncio.Task[HookResult] | None:
        """Start the hook, if there is one, without waiting for it."""
        if self.opts.hook is None:
            return None
        task = asyncio.create_task(self.run_hook(self.opts.hook, guest, phase, payload))
        self.hooks.add(task)
        task.add_done_callback(self.hooks.discard)
        return task

    async def run_hook(
        self, hook: HookSpec, guest: str, phase: str, payload: JSONObject
    ) -> HookResult:
        result = await run_hook(hook, phase, payload)
        self.emit(HookRecord(guest, result))
        return result

    async def analyze(self, guest: str, bundle: Path) -> AnalysisRecord | None:
        if self.analyzer is None:
            return None
        if self.stopping.is_set():
            record = AnalysisRecord(guest, str(bundle), "skipped", None, "the watcher is stopping")
        else:
            async with self.analysis_slot:
                try:
                    verdict = await asyncio.to_thread(
                        self.analyzer, bundle, self.opts.debuginfo_dirs
                    )
                except Exception as exc:  # a failing analysis must not end the watch
                    log.warning("analysis of %s failed: %s", bundle, exc, exc_info=True)
                    record = AnalysisRecord(guest, str(bundle), "failed", None, str(exc))
                else:
                    record = AnalysisRecord(guest, str(bundle), "ok", verdict)
        self.emit(record)
        return record

    def present(self, endpoint: Address) -> bool:
        """Whether a guest found by a scan is still there: its socket exists, or its domain
        was active at the last libvirt scan."""
        key = str(endpoint)
        return key in self.domains if key in self.scanned else os.path.exists(key)

    async def _scan_libvirt(self, uri: str) -> None:
        from ..transport.libvirt import DomainScanner

        scanner = DomainScanner(uri, self.opts.libvirt_api_only, self.opts.connect_timeout)
        problem: str | None = None
        first = True
        while not self.stopping.is_set():
            try:
                found = await scanner.domains()
            except ForensicsError as exc:  # libvirtd restarting: try again
                if first:
                    raise  # not there at all: say so and end (exit code 5)
                if str(exc) != problem:
                    problem = str(exc)
                    self.emit(StateChange(uri, uri, None, "unreachable", None, problem))
                await self.sleep(min(self.opts.retry_max, SCAN_EVERY))
                continue
            problem, first = None, False
            self.domains = {str(d) for d in found}
            self.scanned |= self.domains
            for domain in found:
                self._watch(domain, from_dir=True)
            await scanner.wait(LIBVIRT_RESCAN, self.stopping)

    def _watch(self, endpoint: Address, *, from_dir: bool) -> None:
        key = str(endpoint)
        if key in self.guests and not self.guests[key].done():
            return
        task = asyncio.create_task(GuestWatch(self, endpoint, from_dir=from_dir).run())
        self.guests[key] = task
        task.add_done_callback(lambda _: self._forget(key, task))

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        """A guest's task ended (its socket or domain is gone): forget it."""
        if self.guests.get(key) is task:
            del self.guests[key]

    async def _scan(self, directory: Path) -> None:
        sockets = SocketDirectory(directory, self.opts.pattern)
        try:
            while not self.stopping.is_set():
                try:
                    found = await asyncio.to_thread(sockets.look)
                except OSError as exc:
                    log.warning("cannot scan %s: %s", directory, exc)
                    await self.sleep(SCAN_EVERY)
                    continue
                for endpoint in found or ():
                    self._watch(endpoint, from_dir=True)
                await sockets.wait(self.stopping)
        finally:
            sockets.close()

    async def run(self) -> None:
        """Watch until :meth:`stop`; then wait for captures, analyses and hooks in flight."""
        for endpoint in self.opts.endpoints:
            self._watch(endpoint, from_dir=False)
        scans = []
        if self.opts.socket_dir is not None:
            scans.append(self._scan(self.opts.socket_dir))
        if self.opts.libvirt is not None:
            scans.append(self._scan_libvirt(self.opts.libvirt))
        await asyncio.gather(*scans)
        await self.stopping.wait()
        await asyncio.gather(*self.guests.values(), return_exceptions=True)
        while self.background or self.hooks:
            await asyncio.gather(*self.background, *self.hooks, return_exceptions=True)
