"""The watcher over many domains of the real libvirtd, idle, beside a bare libvirt event
consumer (one connection, libvirt's event loop, the same callbacks, nothing else).

What is measured, plainly: as many real transient domains as this host holds with 6 GiB
left to others (``MemAvailable`` at the start, 34 MB a domain), at most
``KVMHA_BENCH_DOMAINS`` (default 300), started paused (``VIR_DOMAIN_START_PAUSED``: QEMU up,
its vCPUs stopped, so the 2-core host can hold them; a running idle KVM guest here cost ~20 %
of a core each in QEMU). To the watcher a paused domain is watched like a running one: one
event subscription, one ``virDomainGetState`` per poll. Two watchers, each over an idle window:

- ``watch --domain`` x N (monitor mode, QEMU's events through libvirt's pass-through);
- ``watch --libvirt --libvirt-api-only``: every domain of the host (other sessions' too, so
  this one never sends a monitor command to a domain it did not start).

Each row: the watcher's CPU (all threads) as a share of one core and its RSS, beside the bare
consumer's, and libvirtd's CPU over the same window (libvirtd serves other clients too).
Then, with every idle domain still watched, ``KVMHA_BENCH_FREEZES`` (default 20) more
domains (started paused with the others, watched from the start) run one at a time into a
panic: a boot sector that writes to the ISA pvpanic port, so QEMU sends ``GUEST_PANICKED``
and pauses the guest (``<on_crash>preserve``) about a second after it is resumed, as a panicking
Linux guest's pvpanic driver does, without booting Linux. Event → signal line, from QEMU's
stamp on ``GUEST_PANICKED``, beside the bare figures of the same freezes (bench_libvirt's
clock: the event reaching a bare libvirt subscriber, and libvirt answering the domain's state).
Every domain is destroyed at the end, also on failure; a domain libvirt cannot destroy (its
libvirtd gone) has its QEMU killed by the pid recorded when it started, and only that one.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import libvirt

from bench.bench_libvirt import QemuClock, _event_loop
from bench.bench_watch_scale import SETTLE, WINDOW, Lines, cpu_seconds, pct, percentile, rss_mb
from bench.common import PYTHON, table
from kvmha_forensics.lab import domains, libvirtd

URI = "qemu:///system"
DOMAINS = int(os.environ.get("KVMHA_BENCH_DOMAINS", "300"))
FREEZES = int(os.environ.get("KVMHA_BENCH_FREEZES", "20"))
START_PAUSED = 1
PER_DOMAIN = 34 << 20  # host memory a paused 16 MiB TCG domain takes here (31-34 MB)
KEEP_FREE = 6 << 30  # left to the other sessions
# mov dx, 0x505; mov al, 1; out dx, al (pvpanic: panicked); hlt; jmp to the hlt
PANIC_SECTOR = bytes.fromhex("ba0505b001eef4ebfd").ljust(510, b"\0") + b"\x55\xaa"


def domain_xml(name: str, disk: Path | None = None) -> str:
    """An idle 16 MiB TCG domain; with ``disk``, one that boots it (the panic sector)."""
    boot = (
        f"""<disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{disk}'/><target dev='hda' bus='ide'/></disk>
    <panic model='isa'/>"""
        if disk
        else ""
    )
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>16</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_crash>preserve</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    {boot}
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def how_many() -> tuple[int, str]:
    """Domains to start: ``DOMAINS``, or fewer to leave ``KEEP_FREE`` of the host's memory."""
    avail = next(int(line.split()[1]) << 10 for line in Path("/proc/meminfo").read_text()
                 .splitlines() if line.startswith("MemAvailable:"))  # fmt: skip
    fit = max(0, (avail - KEEP_FREE) // PER_DOMAIN - 2 * FREEZES)
    why = (f"MemAvailable {avail / 2**30:.1f} GiB at the start, {PER_DOMAIN >> 20} MB a "
           f"domain, {KEEP_FREE >> 30} GiB left to others")  # fmt: skip
    return min(DOMAINS, fit), why


class Started:
    """Domains this bench created, each with its QEMU (pid, start time), all destroyed by
    :meth:`close` whatever happened."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.qemus: dict[str, tuple[int, float] | None] = {}

    def create(self, xml: str, name: str) -> None:
        self.conn.createXML(xml, START_PAUSED)
        self.qemus[name] = domains.qemu_of(URI, name)

    def destroy(self, name: str) -> None:
        try:
            self.conn.lookupByName(name).destroy()
        except libvirt.libvirtError:
            domains.end_qemu(self.qemus.get(name))  # libvirtd gone: this QEMU, no other
        self.qemus.pop(name, None)

    def close(self) -> None:
        for name in list(self.qemus):
            self.destroy(name)


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
    """Paused domains that panic once resumed, run one at a time under a watcher."""

    def __init__(self, started: Started, clock: QemuClock, root: Path, tag: str) -> None:
        self.started = started
        self.clock = clock
        self.names = [f"kvmha-bench-{tag}-{i:02d}" for i in range(FREEZES)]
        for name in self.names:
            image = root / f"{name}.img"
            image.write_bytes(PANIC_SECTOR)
            started.create(domain_xml(name, image), name)
        self.signal: list[float] = []
        self.received: list[float] = []
        self.floor: list[float] = []

    def run(self, watcher: Lines) -> None:
        for name in self.names:
            self.started.conn.lookupByName(name).resume()

            def signaled(records: list[dict[str, object]], name: str = name) -> bool:
                return any(r["kind"] == "signal" and r.get("guest") == name for r in records)

            watcher.until(signaled)
            arrived = next(t for t, r in watcher.lines
                           if r["kind"] == "signal" and r.get("guest") == name)  # fmt: skip
            end = time.monotonic() + 10
            while name not in self.clock.answered and time.monotonic() < end:
                time.sleep(0.01)
            stamp = self.clock.stamps[name]
            self.signal.append(arrived - stamp)
            self.received.append(self.clock.received[name] - stamp)
            self.floor.append(self.clock.answered[name] - stamp)
            self.started.destroy(name)

    def figures(self) -> list[str]:
        """Signal p50, p99 and max; then the bare event received and state answered (p50)."""
        got = [percentile(self.signal, 0.5), percentile(self.signal, 0.99), max(self.signal)]
        got += [statistics.median(self.received), statistics.median(self.floor)]
        return [f"{v * 1e3:.1f} ms" for v in got] + [f"{len(self.signal)} of {FREEZES}"]


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
    count, why = how_many()
    with libvirtd.shared(), tempfile.TemporaryDirectory(prefix="kvmha-bench-lvs-") as tmp:
        conn = libvirt.open(URI)
        started = Started(conn)
        clock: QemuClock | None = None
        try:
            names = [f"kvmha-bench-idle-{os.getpid()}-{i:03d}" for i in range(count)]
            for name in names:
                started.create(domain_xml(name), name)
            clock = QemuClock(conn)
            runs = [Freezes(started, clock, Path(tmp), f"mon-{os.getpid()}"),
                    Freezes(started, clock, Path(tmp), f"api-{os.getpid()}")]  # fmt: skip
            daemon = libvirtd.daemon_pid("libvirtd")
            assert daemon is not None
            load = os.getloadavg()
            base = bare("monitor", daemon)
            named = names + runs[0].names
            by_name = watched(named, [a for n in named for a in ("--domain", n)], daemon,
                              runs[0])  # fmt: skip
            base_api = bare("api-only", daemon)
            every = watched(names, ["--libvirt", "--libvirt-api-only"], daemon, runs[1])
            load_after = os.getloadavg()
        finally:
            started.close()  # every one, whatever happened to the others
            if clock is not None:
                clock.close()
            conn.close()
    rows: list[list[object]] = []
    for what, ours, bare_one, run in (
        (f"watch --domain x {count + FREEZES} (monitor mode)", by_name, base, runs[0]),
        ("watch --libvirt --libvirt-api-only (every domain)", every, base_api, runs[1]),
    ):
        rows.append([what, pct(ours[0]), pct(bare_one[0]), f"{ours[1]:.0f} MB",
                     f"{bare_one[1]:.0f} MB", pct(ours[2]), pct(bare_one[2]),
                     *run.figures()])  # fmt: skip
    return table(
        f"watch over {count} idle domains of the real libvirtd ({why}; started paused; "
        f"{WINDOW:g} s idle window; then {FREEZES} panics each, one at a time; load average "
        f"{load[0]:.2f} before, {load_after[0]:.2f} after)",
        [
            "watcher",
            "CPU, share of one core",
            "bare consumer",
            "RSS",
            "bare RSS",
            "libvirtd CPU",
            "libvirtd CPU (bare)",
            "event → signal p50",
            "p99",
            "max",
            "bare: event received (p50)",
            "bare: libvirt's state answered (p50)",
            "freezes signaled",
        ],
        rows,
    )


if __name__ == "__main__":
    print(main())
