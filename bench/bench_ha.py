"""The HA signal path on real guests of 256 MB and 2 GB, against bare qemu.qmp baselines.

- event → signal: from QEMU's timestamp on the event that showed the freeze to the moment
  the watcher's signal line is read from its stdout (the watcher also captures, with an ELF
  dump, into a bundle: the dump comes after the signal, so it must not show here);
- status: ``status()`` in-process and the ``kvmha-forensics status`` process, on the frozen
  guest;
- baselines, same run, same guest: a bare qemu.qmp ``query-status`` round trip on an open
  connection, and a bare connect + negotiate + ``query-status`` + disconnect.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from qemu.qmp import QMPClient

from bench.common import PYTHON, ROUNDS, guest, table
from kvmha_forensics.ha.status import status
from kvmha_forensics.transport.qmp import Endpoint

SIZES = (256, 2048)
STATUS_SAMPLES = 20
CLI_SAMPLES = 5


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def ratio(ours: float, base: float) -> str:
    return f"{ours / base:.1f}x"


async def _timed(make: Callable[[], Awaitable[object]], samples: int) -> float:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        await make()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def _bare_connect_query(path: str) -> None:
    client = QMPClient("bench")
    await client.connect(path)
    await client.execute("query-status")
    await client.disconnect()


async def _baselines(path: str) -> tuple[float, float]:
    """(query-status round trip on an open connection, connect+query+disconnect)."""
    client = QMPClient("bench")
    await client.connect(path)
    try:
        round_trip = await _timed(lambda: client.execute("query-status"), 50)
    finally:
        await client.disconnect()
    return round_trip, await _timed(lambda: _bare_connect_query(path), STATUS_SAMPLES)


def _cli_status(path: str) -> float:
    times = []
    for _ in range(CLI_SAMPLES):
        start = time.perf_counter()
        done = subprocess.run([PYTHON, "-m", "kvmha_forensics", "status", "--qmp", path],
                              capture_output=True, check=False)  # fmt: skip
        times.append(time.perf_counter() - start)
        assert done.returncode == 10, done.stderr
    return statistics.median(times)


class Watcher:
    """A watcher process on one socket; the arrival time of each line it prints."""

    def __init__(self, socket: str, out: Path) -> None:
        argv = [PYTHON, "-m", "kvmha_forensics", "watch", "--qmp", socket, "--poll", "0.05",
                "--out", str(out), "--no-analyze"]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, dict[str, object]]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.time(), json.loads(line)))

    def wait(self, kind: str, limit: float = 120.0) -> tuple[float, dict[str, object]]:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            for when, record in self.lines:
                if record["kind"] == kind:
                    return when, record
            time.sleep(0.01)
        raise RuntimeError(f"the watcher printed no {kind} line: {self.lines}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=120)


def main() -> str:
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="kvmha-bench-ha-") as tmp:
        root = Path(tmp)
        for size in SIZES:
            signal_latency: list[float] = []
            freeze_latency: list[float] = []
            detected: set[str] = set()
            figures: dict[str, float] = {}
            for i in range(ROUNDS):
                directory, out = root / f"g{size}-{i}", root / f"b{size}-{i}"
                watcher = Watcher(str(directory / "qmp-spare.sock"), out)
                try:
                    # the watcher is connected during the boot; the guest panics seconds later
                    with guest("panic", directory, size) as g:
                        arrived, sig = watcher.wait("signal")
                        detected.add(str(sig["detected_by"]))
                        _, captured = watcher.wait("capture")  # no status during a dump
                        if sig["qemu_time"] is not None:
                            event = float(str(sig["qemu_time"]))
                            signal_latency.append(arrived - event)
                            record = Path(str(captured["bundle"])) / "freeze.json"
                            freeze_latency.append(record.stat().st_mtime - event)
                        if i == 0:
                            endpoint = Endpoint(path=g.qmp)
                            round_trip, connect = asyncio.run(_baselines(g.qmp))
                            ours = asyncio.run(
                                _timed(lambda: status(endpoint), STATUS_SAMPLES)  # noqa: B023
                            )
                            figures = {"rt": round_trip, "connect": connect, "status": ours,
                                       "cli": _cli_status(g.qmp)}  # fmt: skip
                finally:
                    watcher.stop()
                    shutil.rmtree(out, ignore_errors=True)
            base = figures["rt"]
            label = f"{size} MB"
            if signal_latency:
                median = statistics.median(signal_latency)
                how = ", ".join(sorted(detected))
                rows.append([label, f"event → signal line ({len(signal_latency)} freezes, {how})",
                             ms(median), ms(base), ratio(median, base)])  # fmt: skip
                written = statistics.median(freeze_latency)
                rows.append([label, "event → freeze.json written (target ≤ 50 ms)", ms(written),
                             ms(base), ratio(written, base)])  # fmt: skip
            else:
                rows.append([label, "event → signal line", "no event-driven freeze seen", "", ""])
            connect = figures["connect"]
            for what, key in (("status() in-process", "status"),
                              ("kvmha-forensics status (process)", "cli")):  # fmt: skip
                rows.append([label, what, ms(figures[key]), ms(connect),
                             ratio(figures[key], connect)])  # fmt: skip
            rows.append([label, "baseline: bare query-status round trip", ms(base), "", ""])
            rows.append([label, "baseline: bare connect + query-status", ms(figures["connect"]),
                         "", ""])  # fmt: skip
    return table(
        "HA signal and status (medians)",
        ["guest", "measure", "kvmha-forensics", "baseline", "ratio"],
        rows,
    )


if __name__ == "__main__":
    print(main())
