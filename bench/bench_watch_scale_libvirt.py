"""The watcher over many domains of the real libvirtd, idle, beside a bare libvirt event
consumer (one connection, libvirt's event loop, the same callbacks, nothing else).

What is measured, plainly: ``KVMHA_BENCH_DOMAINS`` (default 100) real transient domains,
started paused (``VIR_DOMAIN_START_PAUSED``: QEMU up, its vCPUs stopped, so the 2-core host
can hold them; a running idle KVM guest here cost ~20 % of a core each in QEMU). To the
watcher a paused domain is watched like a running one: one event subscription, one
``virDomainGetState`` per poll. Two watchers, each over an idle window:

- ``watch --domain`` x N (monitor mode, QEMU's events through libvirt's pass-through);
- ``watch --libvirt --libvirt-api-only``: every domain of the host (other sessions' too, so
  this one never sends a monitor command to a domain it did not start).

Each row: the watcher's CPU (all threads) as a share of one core and its RSS, beside the bare
consumer's, and libvirtd's CPU over the same window (libvirtd serves other clients too).
Then, with every idle domain still watched, ``KVMHA_BENCH_FREEZES`` (default 3) ``panic`` lab
domains (started paused with the others, watched from the start) run one at a time into
their panic: event → signal line, from QEMU's stamp on ``GUEST_PANICKED``, beside the bare
figures of the same freezes (bench_libvirt's clock: the event reaching a bare libvirt
subscriber, and libvirt answering the domain's state, the floor of any libvirt watcher).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import libvirt

from bench.bench_libvirt import QemuClock, _event_loop
from bench.bench_watch_scale import SETTLE, WINDOW, Lines, cpu_seconds, pct, rss_mb
from bench.common import PYTHON, table
from kvmha_forensics.lab import domains, libvirtd, scenarios

URI = "qemu:///system"
DOMAINS = int(os.environ.get("KVMHA_BENCH_DOMAINS", "100"))
FREEZES = int(os.environ.get("KVMHA_BENCH_FREEZES", "3"))
START_PAUSED = 1


def domain_xml(name: str) -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>16</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def shares(pid: int, daemon: int) -> tuple[float, float]:
    """CPU shares of one core over the window: ``pid``'s and libvirtd's."""
    ours, theirs, wall = cpu_seconds(pid), cpu_seconds(daemon), time.monotonic()
    time.sleep(WINDOW)
    spent = time.monotonic() - wall
    return (cpu_seconds(pid) - ours) / spent, (cpu_seconds(daemon) - theirs) / spent


def bare(mode: str, daemon: int) -> tuple[float, float, float]:
    """The bare consumer's share, RSS (MB) and libvirtd's share."""
    proc = subprocess.Popen([PYTHON, "-m", "bench.bare_libvirt_idle", URI, mode],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the bare libvirt consumer did not start")
        time.sleep(SETTLE)
        share, daemon_share = shares(proc.pid, daemon)
        return share, rss_mb(proc.pid)[0], daemon_share
    finally:
        proc.terminate()
        proc.wait()


class Freezes:
    """Paused ``panic`` lab domains, run into their panic one at a time under a watcher."""

    def __init__(self, conn: Any, clock: QemuClock, root: Path, tag: str) -> None:
        self.conn = conn
        self.clock = clock
        self.labs = [domains.start(conn, scenarios.get("panic"), f"kvmha-bench-{tag}-{i}",
                                   root / f"{tag}-{i}", paused=True)
                     for i in range(FREEZES)]  # fmt: skip
        self.signal: list[float] = []
        self.received: list[float] = []
        self.floor: list[float] = []

    def run(self, watcher: Lines) -> None:
        for lab in self.labs:
            self.conn.lookupByName(lab.name).resume()

            def signaled(records: list[dict[str, object]], name: str = lab.name) -> bool:
                return any(r["kind"] == "signal" and r.get("guest") == name for r in records)

            watcher.until(signaled)
            arrived = next(t for t, r in watcher.lines
                           if r["kind"] == "signal" and r.get("guest") == lab.name)  # fmt: skip
            end = time.monotonic() + 10
            while lab.name not in self.clock.answered and time.monotonic() < end:
                time.sleep(0.01)
            stamp = self.clock.stamps[lab.name]
            self.signal.append(arrived - stamp)
            self.received.append(self.clock.received[lab.name] - stamp)
            self.floor.append(self.clock.answered[lab.name] - stamp)
            domains.destroy(self.conn, lab)

    def close(self) -> None:
        for lab in self.labs:
            domains.destroy(self.conn, lab)

    def medians(self) -> tuple[float, float, float]:
        median = statistics.median
        return median(self.signal), median(self.received), median(self.floor)


def watched(
    names: list[str], args: list[str], daemon: int, freezes: Freezes
) -> tuple[float, float, float]:
    """The watcher's share, RSS (MB) and libvirtd's share, once every domain is connected;
    then the freezes."""
    watcher = Lines([PYTHON, "-m", "kvmha_forensics", "watch", "--no-analyze", *args])
    try:

        def all_connected(records: list[dict[str, object]]) -> bool:
            seen = {r.get("guest") for r in records if r.get("detail") == "connected"}
            return set(names) <= seen

        watcher.until(all_connected)
        time.sleep(SETTLE)
        share, daemon_share = shares(watcher.proc.pid, daemon)
        rss = rss_mb(watcher.proc.pid)[0]
        freezes.run(watcher)
        return share, rss, daemon_share
    finally:
        watcher.stop()


def main() -> str:
    _event_loop()
    with libvirtd.shared(), tempfile.TemporaryDirectory(prefix="kvmha-bench-lvs-") as tmp:
        conn = libvirt.open(URI)
        names: list[str] = []
        runs: list[Freezes] = []
        try:
            for i in range(DOMAINS):
                name = f"kvmha-bench-idle-{os.getpid()}-{i:03d}"
                conn.createXML(domain_xml(name), START_PAUSED)
                names.append(name)
            clock = QemuClock(conn)
            runs = [Freezes(conn, clock, Path(tmp), f"mon-{os.getpid()}"),
                    Freezes(conn, clock, Path(tmp), f"api-{os.getpid()}")]  # fmt: skip
            daemon = libvirtd.daemon_pid("libvirtd")
            assert daemon is not None
            load = os.getloadavg()
            base = bare("monitor", daemon)
            named = names + [lab.name for lab in runs[0].labs]
            by_name = watched(named, [a for n in named for a in ("--domain", n)], daemon,
                              runs[0])  # fmt: skip
            base_api = bare("api-only", daemon)
            every = watched(names, ["--libvirt", "--libvirt-api-only"], daemon, runs[1])
            load_after = os.getloadavg()
        finally:
            for run in runs:
                run.close()
            if runs:
                runs[0].clock.close()
            for name in names:  # every one, whatever happened to the others
                with contextlib.suppress(libvirt.libvirtError):
                    conn.lookupByName(name).destroy()
            conn.close()
    rows: list[list[object]] = []
    for what, ours, bare_one, run in (
        (f"watch --domain x {DOMAINS + FREEZES} (monitor mode)", by_name, base, runs[0]),
        ("watch --libvirt --libvirt-api-only (every domain)", every, base_api, runs[1]),
    ):
        signal, received, floor = run.medians()
        rows.append([what, pct(ours[0]), pct(bare_one[0]), f"{ours[1]:.0f} MB",
                     f"{bare_one[1]:.0f} MB", pct(ours[2]), pct(bare_one[2]),
                     f"{signal * 1e3:.1f} ms", f"{received * 1e3:.1f} ms",
                     f"{floor * 1e3:.1f} ms"])  # fmt: skip
    return table(
        f"watch over {DOMAINS} idle domains of the real libvirtd (started paused; "
        f"{WINDOW:g} s idle window; then {FREEZES} panics each; load average {load[0]:.2f} "
        f"before, {load_after[0]:.2f} after)",
        [
            "watcher",
            "CPU, share of one core",
            "bare consumer",
            "RSS",
            "bare RSS",
            "libvirtd CPU",
            "libvirtd CPU (bare)",
            "event → signal (median)",
            "bare: event received",
            "bare: libvirt's state answered",
        ],
        rows,
    )


if __name__ == "__main__":
    print(main())
