"""Where a libvirt domain's event → signal time goes: the watcher runs in this process over
one ``panic`` lab domain at a time (``KVMHA_BENCH_ROUNDS`` freezes; ``api-only`` as the
argument for that mode, else monitor mode: one mode per process, as the CLI has it), its
libvirt calls and the events it receives stamped. Beside it, the floor: a bare probe on a
connection of its own that asks libvirt the domain's state (``virDomainGetState``, in a
thread of its own) the moment QEMU's ``GUEST_PANICKED`` reaches it through libvirt's QMP
event pass-through. QEMU's own stamp on that event is the zero of each timeline (ms)."""

from __future__ import annotations

import asyncio
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu

from bench.bench_libvirt import URI, QemuClock
from kvmha_forensics.ha import watch
from kvmha_forensics.ha.records import Record, Signal, StateChange
from kvmha_forensics.lab import domains, libvirtd, scenarios
from kvmha_forensics.transport.base import Event
from kvmha_forensics.transport.libvirt import Domain, DomainGuest
from kvmha_forensics.transport.libvirt_hub import Hub, _EventThread

ROUNDS = int(os.environ.get("KVMHA_BENCH_ROUNDS", "3"))
trace: list[tuple[float, str]] = []


def note(what: str, at: float | None = None) -> None:
    trace.append((time.time() if at is None else at, what))


def wrap() -> None:
    call, arrived, send = DomainGuest._call, DomainGuest._arrived, Hub._send

    def traced_send(self: Hub, uuid: str, event: Event | None) -> None:
        label = "None" if event is None else event.name
        if event is not None and event.name == "LIBVIRT_LIFECYCLE":
            label += f" {event.data.get('event')}/{event.data.get('detail')}"
        note(f"event {label} from libvirtd (event thread)")
        send(self, uuid, event)

    async def traced_call(self: DomainGuest, what: str, fn: Any, timeout: Any = None) -> Any:
        note(f"{what} asked")
        try:
            got = await call(self, what, fn, timeout)
        except Exception as exc:
            note(f"{what} raised {type(exc).__name__}")
            raise
        shown = got if isinstance(got, list | tuple | int | str) else type(got).__name__
        note(f"{what} answered {str(shown)[:40]}")
        return got

    def traced_arrived(self: DomainGuest, event: Event | None) -> None:
        label = "None" if event is None else event.name
        if event is not None and event.name == "LIBVIRT_LIFECYCLE":
            label += f" {event.data.get('event')}/{event.data.get('detail')}"
        note(f"event {label} reaches the loop")
        arrived(self, event)

    DomainGuest._call = traced_call  # type: ignore[method-assign]
    DomainGuest._arrived = traced_arrived  # type: ignore[method-assign]
    Hub._send = traced_send  # type: ignore[method-assign]


zero: list[float] = [0.0]


class Probe:
    """The bare floor: libvirt's state of a domain, asked as soon as its panic is known."""

    def __init__(self) -> None:
        self.conn = libvirt.open(URI)
        self.asked: queue.Queue[str] = queue.Queue()
        self.id = libvirt_qemu.qemuMonitorEventRegister(
            self.conn, None, "GUEST_PANICKED", self._event, None, 0
        )
        threading.Thread(target=self._ask, daemon=True).start()

    def _event(self, _c: object, dom: Any, _e: str, _s: int, _u: int, _d: object,
               _o: object) -> None:  # fmt: skip
        note("probe: GUEST_PANICKED from libvirtd")
        self.asked.put(dom.name())

    def _ask(self) -> None:
        while True:
            name = self.asked.get()
            state = self.conn.lookupByName(name).state()
            note(f"probe: state answered {state}")

    def close(self) -> None:
        libvirt_qemu.qemuMonitorEventDeregister(self.conn, self.id)


async def one(conn: Any, clock: QemuClock, root: Path, name: str, api_only: bool) -> float:
    lab = domains.start(conn, scenarios.get("panic"), name, root / name, paused=True)
    signals: list[Signal] = []
    connected = asyncio.Event()

    def sink(record: Record) -> None:
        if isinstance(record, Signal) and record.state == "frozen":
            note("signal")
            signals.append(record)
        elif isinstance(record, StateChange) and record.detail == "connected":
            connected.set()

    opts = watch.WatchOptions(endpoints=(Domain(name, URI, api_only),), analyze=False)
    watcher = watch.Watcher(opts, sink, analyzer=None)
    task = asyncio.create_task(watcher.run())
    try:
        await connected.wait()
        await asyncio.sleep(0.5)
        trace.clear()
        zero[0] = time.time()  # until QEMU's stamp is known
        await asyncio.to_thread(conn.lookupByName(name).resume)
        while not signals:
            await asyncio.sleep(0.002)
    finally:
        watcher.stop()
        await task
        domains.destroy(conn, lab)
    zero[0] = clock.stamps[name]
    print(f"{name} ({'api-only' if api_only else 'monitor'}):")
    for at, what in sorted(trace):
        print(f"  {(at - zero[0]) * 1e3:8.1f} ms  {what}")
    return next(at for at, what in trace if what == "signal") - zero[0]


async def rounds(conn: Any, clock: QemuClock, root: Path, api_only: bool) -> list[float]:
    mode = "api-only" if api_only else "monitor"
    return [await one(conn, clock, root, f"kvmha-prof-{mode}-{i}", api_only) for i in range(ROUNDS)]


def main(api_only: bool) -> None:
    _EventThread.ensure()
    wrap()
    with libvirtd.shared(), tempfile.TemporaryDirectory(prefix="kvmha-prof-lv-") as tmp:
        conn = libvirt.open(URI)
        clock, probe = QemuClock(conn), Probe()
        try:
            load = os.getloadavg()[0]
            got = asyncio.run(rounds(conn, clock, Path(tmp), api_only))
        finally:
            clock.close()
            probe.close()
            conn.close()
    print(f"load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    shown = ", ".join(f"{v * 1e3:.1f}" for v in got)
    print(f"signal: median {statistics.median(got) * 1e3:.1f} ms ({shown})")


if __name__ == "__main__":
    main(sys.argv[1:] == ["api-only"])
