"""libvirt domains beside bare QEMU guests of the same scenario, in the same run.

- event → signal: from QEMU's timestamp on the panic event to the moment the watcher's signal
  line is read from its stdout; ``watch --qmp`` on a bare lab guest (the baseline), then
  ``watch --domain`` on a libvirt domain of the same scenario, with the monitor pass-through and
  with libvirt's APIs only. For domains, QEMU's timestamp comes from this process's own
  subscription to the domain's QMP events (libvirt's pass-through), so both modes are timed
  from the same instant;
- status: the ``kvmha-forensics status`` process, ``--domain`` (both modes) beside ``--qmp``,
  each on a frozen guest of the scenario.
"""

from __future__ import annotations

import itertools
import queue
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import libvirt
import libvirt_qemu

from bench.bench_ha import CLI_SAMPLES, ms, ratio
from bench.common import PYTHON, ROUNDS, JsonLines, guest, table
from kvmha_forensics.lab import domains, libvirtd, scenarios

URI = "qemu:///system"
WAIT = 120.0


class Watcher(JsonLines):
    """A signal-only watcher process; the wall time each line arrives. Its --poll 0.05 (as
    bench_ha's) also makes its first retries of a socket not there yet come 50 ms apart
    (doubling), so it is connected before the lab guest, booting meanwhile, panics."""

    def __init__(self, *args: str) -> None:
        argv = [PYTHON, "-m", "kvmha_forensics", "watch", "--poll", "0.05", "--no-analyze", *args]
        super().__init__(argv, WAIT)

    def wait(self, kind: str, state: str | None = None) -> tuple[float, dict[str, object]]:
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            for when, record in self.lines:
                if record["kind"] == kind and state in (None, record.get("state")):
                    return when, record
            time.sleep(0.002)
        raise RuntimeError(f"the watcher printed no {kind} line: {self.lines}")


class QemuClock:
    """QEMU's own timestamps of a domain's events, through libvirt's QMP event pass-through;
    and the floor of a libvirt watcher: the moment libvirt answers the domain's state
    (``virDomainGetState``, asked by a thread of its own on a connection of its own as soon
    as the first of those events arrives; libvirtd answers it once it has handled the panic)."""

    def __init__(self, conn: libvirt.virConnect) -> None:
        self.stamps: dict[str, float] = {}
        self.received: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self.conn = conn
        self.asker = libvirt.open(URI)
        self.asked: queue.Queue[str] = queue.Queue()
        self.id = libvirt_qemu.qemuMonitorEventRegister(conn, None, None, self._event, None, 0)
        threading.Thread(target=self._ask, daemon=True).start()

    def _event(self, _c: object, dom: libvirt.virDomain, event: str, sec: int, usec: int,
               _details: object, _o: object) -> None:  # fmt: skip
        if event in ("GUEST_PANICKED", "STOP") and dom.name() not in self.stamps:
            self.received[dom.name()] = time.time()
            self.stamps[dom.name()] = sec + usec / 1e6
            self.asked.put(dom.name())

    def _ask(self) -> None:
        while True:
            name = self.asked.get()
            self.asker.lookupByName(name).state()
            self.answered[name] = time.time()

    def close(self) -> None:
        libvirt_qemu.qemuMonitorEventDeregister(self.conn, self.id)
        self.asker.close()


def _event_loop() -> None:
    libvirt.virEventRegisterDefaultImpl()

    def run() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=run, daemon=True).start()


def _cli_status(*args: str) -> float:
    times = []
    for _ in range(CLI_SAMPLES):
        start = time.perf_counter()
        done = subprocess.run([PYTHON, "-m", "kvmha_forensics", "status", *args],
                              capture_output=True, check=False)  # fmt: skip
        times.append(time.perf_counter() - start)
        assert done.returncode == 10, done.stderr
    return statistics.median(times)


def _qmp_round(root: Path, i: int, cli: dict[str, float]) -> float | None:
    """One bare freeze's event → signal; None when the signal carries no QEMU time (a poll
    read the panicked runstate between QEMU's GUEST_PANICKED, taken while it still said
    running, and its STOP)."""
    directory = root / f"q{i}"
    watcher = Watcher("--qmp", str(directory / "qmp-spare.sock"))
    try:
        with guest("panic", directory, 256) as g:
            arrived, signal = watcher.wait("signal", "frozen")
            if "qmp" not in cli:
                cli["qmp"] = _cli_status("--qmp", g.qmp)
    finally:
        watcher.stop()
    stamp = signal["qemu_time"]
    return None if stamp is None else arrived - float(str(stamp))


def _domain_round(
    conn: libvirt.virConnect, clock: QemuClock, root: Path, i: int, api_only: bool,
    cli: dict[str, float],
) -> tuple[float, float]:  # fmt: skip
    """Event → signal, and event → libvirt's state answered (the floor), of one freeze."""
    mode = ["--libvirt-api-only"] if api_only else []
    name = f"kvmha-bench-{'api' if api_only else 'mon'}-{i}"
    lab = domains.start(conn, scenarios.get("panic"), name, root / name, paused=True)
    watcher = Watcher("--domain", name, *mode)
    try:
        watcher.wait("state")  # connected (its runstate: paused before the first instruction)
        conn.lookupByName(name).resume()
        arrived, _signal = watcher.wait("signal", "frozen")
        if i == 0:
            cli["api" if api_only else "monitor"] = _cli_status("--domain", name, *mode)
    finally:
        watcher.stop()
        domains.destroy(conn, lab)
    return arrived - clock.stamps[name], clock.answered[name] - clock.stamps[name]


def main() -> str:
    _event_loop()
    with libvirtd.shared(), tempfile.TemporaryDirectory(prefix="kvmha-bench-lv-") as tmp:
        root = Path(tmp)
        conn = libvirt.open(URI)
        clock = QemuClock(conn)
        cli: dict[str, float] = {}
        try:
            rounds = (_qmp_round(root, i, cli) for i in range(3 * ROUNDS))
            qmp = list(itertools.islice((r for r in rounds if r is not None), ROUNDS))
            monitor = [_domain_round(conn, clock, root, i, False, cli) for i in range(ROUNDS)]
            api = [_domain_round(conn, clock, root, i, True, cli) for i in range(ROUNDS)]
        finally:
            clock.close()
            conn.close()
    base = statistics.median(qmp)
    rows: list[list[object]] = [["watch --qmp (baseline)", ms(base), "", ""]]
    for what, pairs in (("watch --domain (monitor pass-through)", monitor),
                        ("watch --domain --libvirt-api-only", api)):  # fmt: skip
        median = statistics.median(p[0] for p in pairs)
        floor = statistics.median(p[1] for p in pairs)
        rows.append([what, ms(median), ms(base), ratio(median, base)])
        rows.append([f"  libvirt's state answered after the event (bare, same freezes: the "
                     f"floor of a watcher that asks libvirtd); watch vs it {ratio(median, floor)}",
                     ms(floor), ms(base), ratio(floor, base)])  # fmt: skip
    rows.append(["status --qmp (process, baseline)", ms(cli["qmp"]), "", ""])
    for what, key in (("status --domain (process)", "monitor"),
                      ("status --domain --libvirt-api-only (process)", "api")):  # fmt: skip
        rows.append([what, ms(cli[key]), ms(cli["qmp"]), ratio(cli[key], cli["qmp"])])
    return table(
        f"libvirt beside bare QEMU: panic event → signal line ({ROUNDS} freezes each), "
        "status (medians; target ≤ 1.5x and ≤ 20 ms)",
        ["measure", "kvmha-forensics", "baseline", "ratio"],
        rows,
    )


if __name__ == "__main__":
    print(main())
