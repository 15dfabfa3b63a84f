"""Where the watcher's event → signal time goes, over many idle QMP peers: the watcher runs
in this process (its guest methods wrapped to stamp each step), the peers are
:mod:`bench.fake_qmp`'s, frozen one at a time. Per freeze, from QEMU's stamp on the event:
the event handed to the guest's task, the runstate read, the freeze assessed, the signal
record emitted. Prints the median, p99 and max of each step, and the slowest freezes."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import fake_qmp
from bench.bench_watch_scale import percentile
from kvmha_forensics.ha import watch
from kvmha_forensics.ha.records import Record, Signal, StateChange
from kvmha_forensics.transport import qmp
from kvmha_forensics.transport.base import Event

GUESTS = int(os.environ.get("KVMHA_BENCH_GUESTS", "500"))
FREEZES = int(os.environ.get("KVMHA_BENCH_FREEZES", "100"))
stamps: dict[str, dict[str, float]] = defaultdict(dict)
collections: list[tuple[float, float, int]] = []  # (start, seconds, generation)
_gc_start: list[float] = [0.0]


def on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_start[0] = time.perf_counter()
    else:
        spent = time.perf_counter() - _gc_start[0]
        collections.append((time.time() - spent, spent, info["generation"]))


def mark(where: str, step: str) -> None:
    stamps[where].setdefault(step, time.time())


def wrap() -> None:
    next_event = qmp.QMPSession.next_event
    runstate = qmp.QMPSession.runstate
    assess = watch.assess

    async def traced_next_event(self: qmp.QMPSession, timeout: float) -> Event | None:
        got = await next_event(self, timeout)
        if got is not None:
            mark(self.where, "event")
        return got

    async def traced_runstate(self: qmp.QMPSession) -> str:
        got = await runstate(self)
        if got != "running":
            mark(self.where, "runstate")
        return got

    async def traced_assess(guest: Any, events: Any = ()) -> Any:
        got = await assess(guest, events)
        if got.state == "frozen":
            mark(guest.where, "assessed")
        return got

    qmp.QMPSession.next_event = traced_next_event  # type: ignore[method-assign]
    qmp.QMPSession.runstate = traced_runstate  # type: ignore[method-assign]
    watch.assess = traced_assess


async def drive(root: Path, peers: list[tuple[int, Path]]) -> dict[str, Signal]:
    signals: dict[str, Signal] = {}
    connected: set[str] = set()

    def sink(record: Record) -> None:
        if isinstance(record, Signal):
            mark(record.qmp, "signal")
            signals[record.qmp] = record
        elif isinstance(record, StateChange) and record.detail == "connected":
            connected.add(record.qmp)

    opts = watch.WatchOptions(socket_dir=root, pattern="qmp.sock", analyze=False)
    watcher = watch.Watcher(opts, sink, analyzer=None)
    task = asyncio.create_task(watcher.run())
    while len(connected) < len(peers):
        await asyncio.sleep(0.1)
    if os.environ.get("KVMHA_BENCH_GC_FREEZE"):
        gc.collect()
        gc.freeze()
    await asyncio.sleep(3)
    gc.callbacks.append(on_gc)
    for pid, path in peers[:FREEZES]:
        os.kill(pid, signal.SIGUSR1)
        while str(path) not in signals:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
    watcher.stop()
    await task
    return signals


def main() -> None:
    wrap()
    with tempfile.TemporaryDirectory(prefix="kvmha-bench-tail-") as tmp:
        root = Path(tmp)
        peers = fake_qmp.start(root, GUESTS)
        try:
            load = os.getloadavg()[0]
            signals = asyncio.run(drive(root, peers))
        finally:
            fake_qmp.stop(peers)
    steps: dict[str, list[float]] = defaultdict(list)
    total: list[tuple[float, str]] = []
    for where, sig in signals.items():
        t0 = sig.qemu_time or 0.0
        previous = t0
        for step in ("event", "runstate", "assessed", "signal"):
            at = stamps[where].get(step)
            if at is not None:
                steps[step].append(at - previous)
                previous = at
        total.append((stamps[where]["signal"] - t0, where))
    print(f"{len(signals)} freezes of {GUESTS} peers, load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    show: Callable[[list[float]], str] = lambda v: (  # noqa: E731
        f"p50 {statistics.median(v) * 1e3:6.2f}  p99 {percentile(v, 0.99) * 1e3:6.2f}  "
        f"max {max(v) * 1e3:6.2f} ms"
    )
    for step, values in steps.items():
        print(f"  {step:9} (from the step before) {show(values)}")
    print(f"  {'total':9} {show([t for t, _ in total])}")
    by_gen = defaultdict(list)
    for _, spent, gen in collections:
        by_gen[gen].append(spent)
    for gen, spent in sorted(by_gen.items()):
        print(f"  gc gen {gen}: {len(spent)} collections, max {max(spent) * 1e3:.2f} ms")
    for t, where in sorted(total)[-5:]:
        t0 = signals[where].qemu_time or 0.0
        parts = {k: round((v - t0) * 1e3, 2) for k, v in stamps[where].items()}
        end = stamps[where]["signal"]
        pauses = [round(d * 1e3, 2) for at, d, _ in collections if t0 <= at <= end]
        print(f"  slow: {t * 1e3:.1f} ms {parts} gc pauses within: {pauses}")


if __name__ == "__main__":
    main()
