"""The watcher at host scale: ``watch --socket-dir`` over 500 idle QMP peers, beside a bare
asyncio process holding the same 500 connections and doing nothing (the floor).

- idle: the watcher's CPU (utime + stime from /proc, all its threads) over a window once every
  guest is connected, as a share of one core, and its RSS; the same for the bare holder;
- freezes: peers frozen one at a time (``GUEST_PANICKED`` with the peer's wall-clock stamp,
  as QEMU stamps it) while the others stay idle; event → signal is from that stamp to the
  moment the watcher's signal line is read; every freeze must be signaled.

The peers are :mod:`bench.fake_qmp` (one forked process per socket, as one QEMU per guest).
Targets (issue 13): ≤ 1 % of a core and ≤ 100 MB idle, signal p99 ≤ 10 ms.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import fake_qmp
from bench.common import PYTHON, JsonLines, table

GUESTS = int(os.environ.get("KVMHA_BENCH_GUESTS", "500"))
WINDOW = float(os.environ.get("KVMHA_BENCH_IDLE_WINDOW", "60"))
FREEZES = int(os.environ.get("KVMHA_BENCH_FREEZES", "100"))
SETTLE = 3.0  # seconds after the last connection before the idle window opens
WAIT = 300.0
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (every thread), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set of ``pid`` in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


def idle_share(pid: int, window: float) -> float:
    """The share of one core ``pid`` used over ``window`` seconds."""
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    return (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)


class Lines(JsonLines):
    """A child's JSON stdout lines, and a wait for a condition on them."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(argv, WAIT)

    def until(self, test: Callable[[list[dict[str, object]]], bool]) -> None:
        end = time.monotonic() + WAIT
        while not test([r for _, r in self.lines]):
            if time.monotonic() > end or self.proc.poll() is not None:
                raise RuntimeError(f"gave up waiting; last lines: {self.lines[-3:]}")
            time.sleep(0.05)


def bare(paths: list[str], frozen: list[tuple[int, Path]]) -> dict[str, float]:
    """The bare holder: idle share and RSS, then the latencies of ``frozen`` (event read)."""
    holder = Lines([PYTHON, "-m", "bench.bare_idle", *paths])
    try:
        holder.until(lambda records: any(r["kind"] == "ready" for r in records))
        time.sleep(SETTLE)
        share = idle_share(holder.proc.pid, WINDOW)
        rss = rss_mb(holder.proc.pid)[0]
        return {"share": share, "rss": rss} | latencies(freeze(holder, frozen, "event"))
    finally:
        holder.stop()


def watched(
    peers: list[tuple[int, Path]], root: Path, poll: str | None, frozen: list[tuple[int, Path]]
) -> dict[str, float]:
    """The watcher over every peer: idle share, RSS, then the latencies of ``frozen``."""
    argv = [PYTHON, "-m", "kvmha_forensics", "watch", "--socket-dir", str(root),
            "--pattern", "qmp.sock", "--no-analyze"]  # fmt: skip
    watcher = Lines(argv + (["--poll", poll] if poll else []))
    try:
        connected = {str(p) for _, p in peers}

        def all_connected(records: list[dict[str, object]]) -> bool:
            seen = {r.get("qmp") for r in records if r.get("detail") == "connected"}
            return connected <= seen

        watcher.until(all_connected)
        time.sleep(SETTLE)
        share = idle_share(watcher.proc.pid, WINDOW)
        rss = rss_mb(watcher.proc.pid)[0]
        got = {"share": share, "rss": rss} | latencies(freeze(watcher, frozen, "signal"))
        got["peak"] = rss_mb(watcher.proc.pid)[1]
        return got
    finally:
        watcher.stop()


def latencies(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    return {"p50": statistics.median(samples), "p99": percentile(samples, 0.99),
            "max": max(samples), "signaled": len(samples)}  # fmt: skip


def freeze(watcher: Lines, peers: list[tuple[int, Path]], kind: str) -> list[float]:
    """Freeze each peer in turn (the rest stay idle); event → ``kind`` line for each."""
    latencies = []
    for pid, path in peers:
        sent = time.time()
        os.kill(pid, signal.SIGUSR1)

        def signaled(records: list[dict[str, object]], where: str = str(path)) -> bool:
            return any(r["kind"] == kind and r.get("qmp") == where for r in records)

        watcher.until(signaled)
        arrived, record = next((t, r) for t, r in watcher.lines
                               if r["kind"] == kind and r.get("qmp") == str(path))  # fmt: skip
        stamp = record["qemu_time"]  # None when a poll saw it first: then from the kill
        latencies.append(arrived - (float(str(stamp)) if stamp is not None else sent))
        time.sleep(0.05)
    return latencies


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (of 100 samples, p99 is the 99th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def pct(share: float) -> str:
    return f"{share * 100:.2f} %"


def main() -> str:
    with tempfile.TemporaryDirectory(prefix="kvmha-bench-scale-") as tmp:
        root = Path(tmp)
        peers = fake_qmp.start(root, GUESTS)
        try:
            load = os.getloadavg()
            base = bare([str(p) for _, p in peers], peers[FREEZES : 2 * FREEZES])
            old = watched(peers, root, "0.5", [])
            ours = watched(peers, root, None, peers[:FREEZES])
            load_after = os.getloadavg()
        finally:
            fake_qmp.stop(peers)

    def ms(got: dict[str, float], key: str) -> str:
        return f"{got[key] * 1000:.1f} ms"

    rows: list[list[object]] = [
        ["idle CPU, share of one core", pct(ours["share"]), pct(base["share"]),
         pct(old["share"]), "≤ 1 %"],
        ["idle RSS", f"{ours['rss']:.0f} MB", f"{base['rss']:.0f} MB", f"{old['rss']:.0f} MB",
         "≤ 100 MB"],
        ["event → signal (bare: → event read) p50", ms(ours, "p50"), ms(base, "p50"), "", ""],
        ["event → signal p99", ms(ours, "p99"), ms(base, "p99"), "", "≤ 10 ms"],
        ["event → signal max", ms(ours, "max"), ms(base, "max"), "", ""],
        ["freezes signaled", f"{ours['signaled']:.0f} of {FREEZES}",
         f"{base['signaled']:.0f} of {FREEZES}", "", "all"],
        ["peak RSS", f"{ours['peak']:.0f} MB", "", "", ""],
    ]  # fmt: skip
    return table(
        f"watch --socket-dir over {GUESTS} idle QMP peers ({WINDOW:g} s idle window; "
        f"{FREEZES} freezes, one at a time; load average {load[0]:.2f} before, "
        f"{load_after[0]:.2f} after)",
        ["measure", "watch (default poll)", "bare asyncio holder", "watch --poll 0.5", "target"],
        rows,
    )


if __name__ == "__main__":
    print(main())
