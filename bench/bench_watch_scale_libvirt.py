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
Freeze latency through libvirt is bench_libvirt's (one domain at a time).
"""

from __future__ import annotations

import os
import subprocess
import time

import libvirt

from bench.bench_watch_scale import SETTLE, WINDOW, Lines, cpu_seconds, pct, rss_mb
from bench.common import PYTHON, table
from kvmha_forensics.lab import libvirtd

URI = "qemu:///system"
DOMAINS = int(os.environ.get("KVMHA_BENCH_DOMAINS", "100"))
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


def watched(names: list[str], args: list[str], daemon: int) -> tuple[float, float, float]:
    """The watcher's share, RSS (MB) and libvirtd's share, once every domain is connected."""
    watcher = Lines([PYTHON, "-m", "kvmha_forensics", "watch", "--no-analyze", *args])
    try:

        def all_connected(records: list[dict[str, object]]) -> bool:
            seen = {r.get("guest") for r in records if r.get("detail") == "connected"}
            return set(names) <= seen

        watcher.until(all_connected)
        time.sleep(SETTLE)
        share, daemon_share = shares(watcher.proc.pid, daemon)
        return share, rss_mb(watcher.proc.pid)[0], daemon_share
    finally:
        watcher.stop()


def main() -> str:
    with libvirtd.shared():
        conn = libvirt.open(URI)
        names: list[str] = []
        try:
            for i in range(DOMAINS):
                name = f"kvmha-bench-idle-{os.getpid()}-{i:03d}"
                conn.createXML(domain_xml(name), START_PAUSED)
                names.append(name)
            daemon = libvirtd.daemon_pid("libvirtd")
            assert daemon is not None
            load = os.getloadavg()
            base = bare("monitor", daemon)
            by_name = watched(names, [a for n in names for a in ("--domain", n)], daemon)
            base_api = bare("api-only", daemon)
            every = watched(names, ["--libvirt", "--libvirt-api-only"], daemon)
            load_after = os.getloadavg()
        finally:
            for name in names:
                conn.lookupByName(name).destroy()
            conn.close()
    rows: list[list[object]] = []
    for what, ours, bare_one in (
        (f"watch --domain x {DOMAINS} (monitor mode)", by_name, base),
        ("watch --libvirt --libvirt-api-only (every domain)", every, base_api),
    ):
        rows.append([what, pct(ours[0]), pct(bare_one[0]), f"{ours[1]:.0f} MB",
                     f"{bare_one[1]:.0f} MB", pct(ours[2]), pct(bare_one[2])])  # fmt: skip
    return table(
        f"watch over {DOMAINS} idle domains of the real libvirtd (started paused; "
        f"{WINDOW:g} s idle window; load average {load[0]:.2f} before, {load_after[0]:.2f} after)",
        [
            "watcher",
            "CPU, share of one core",
            "bare consumer",
            "RSS",
            "bare RSS",
            "libvirtd CPU",
            "libvirtd CPU (bare)",
        ],
        rows,
    )


if __name__ == "__main__":
    print(main())
