"""The stock ``ocf:heartbeat:VirtualDomain`` on the real two-node cluster (tests/ha/cluster.py),
each node with its own libvirtd, with kvmha-forensics as its monitor script, its guard and
alert agent.

VirtualDomain alone counts a domain paused on an I/O error as running. With
``monitor_scripts=/usr/local/bin/kvmha-domain-monitor`` the monitor captures the frozen domain
and fails, Pacemaker moves the domain to node-b, and the alert agent (``kvmha-alert``, run by
Pacemaker as hacluster, status and capture through its root helper and sudoers rule) finds
that freeze already captured; hacluster can have root run nothing else. A domain that panicked
is ``crashed``, which VirtualDomain's own status check fails (and its stop destroys) before any
monitor script runs: the guard, ``ocf:kvmha:kvmha-guest`` with ``guard=true`` after vm1 in a
group, stops first, captures the domain and ends it. The freeze → running-on-the-other-node
times are printed (``-s``), not asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.lab import assets, libvirtd
from tests.ha.cluster import Cluster, Node, ids
from tests.ha.test_pacemaker import (
    bundles,
    cleanup,
    log_time,
    need_cluster_tools,
    records,
    started_on,
    until,
)

pytestmark = pytest.mark.lab
RSC = "vm1"
GUARD = "vm1-guard"
MONITOR = "/usr/local/bin/kvmha-domain-monitor"
ALERT_LOG = "/run/kvmha/alert.log"
HELPER = "/usr/local/sbin/kvmha-alert-helper"
VIRTUALDOMAIN = Path("/usr/lib/ocf/resource.d/heartbeat/VirtualDomain")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two nodes, each with its own libvirtd; the monitor script captures to shared/bundles."""
    need_cluster_tools()
    for tool in ("libvirtd", "virtlogd", "virsh", "sudo"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool}: ./run setup installs libvirt and sudo")
    if not VIRTUALDOMAIN.exists():
        pytest.skip("no VirtualDomain: ./run setup installs resource-agents")
    libvirtd.prepare()  # the libvirt-qemu user and a qemu.conf without systemd
    out = tmp_path / "cluster" / "shared" / "bundles"
    made = Cluster(tmp_path / "cluster", libvirt=True, env={"KVMHA_CAPTURE_DIR": str(out)})
    try:
        made.start()
        out.mkdir()
        (made.shared / "guests").mkdir()
        uid, gid = ids()
        for node in made.nodes:  # the alert agent's log, where hacluster may write
            node.run("install", "-o", str(uid), "-g", str(gid), "-m", "640", "/dev/null", ALERT_LOG)
        yield made
    finally:
        made.close()


def domain_config(cluster: Cluster) -> Path:
    """vm1's domain XML (VirtualDomain's config): the lab's Linux guest under TCG, writing to
    a disk on the shared directory with error_policy=stop."""
    linux = assets.linux(assets._quiet)
    image = cluster.shared / f"{RSC}.img"
    with image.open("wb") as f:
        f.truncate(16 << 20)
    root = ET.Element("domain", type="qemu")
    ET.SubElement(root, "name").text = RSC
    ET.SubElement(root, "memory", unit="MiB").text = "256"
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_el, "kernel").text = str(linux.kernel.vmlinuz)
    ET.SubElement(os_el, "initrd").text = str(linux.initramfs)
    cmdline = ("console=ttyS0 oops=panic mitigations=off kvmha.scenario=running kvmha.writes=1 "
               "unknown_nmi_panic")  # fmt: skip
    ET.SubElement(os_el, "cmdline").text = cmdline
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")  # the guest finds the pvpanic device through ACPI
    ET.SubElement(features, "vmcoreinfo", state="on")
    ET.SubElement(root, "on_crash").text = "preserve"
    devices = ET.SubElement(root, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw", error_policy="stop",
                  rerror_policy="stop")  # fmt: skip
    ET.SubElement(disk, "source", file=str(image))
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(cluster.shared / "guests" / f"{RSC}.console"))
    ET.SubElement(serial, "target", port="0")
    ET.SubElement(devices, "panic", model="isa")
    ET.SubElement(devices, "memballoon", model="none")
    ET.indent(root)  # VirtualDomain and the scripts read <name> from a line of its own
    config = cluster.shared / f"{RSC}.xml"
    config.write_text(ET.tostring(root, encoding="unicode") + "\n")
    return config


def primitive(rsc: str, agent: str, params: dict[str, str], ops: dict[str, str]) -> ET.Element:
    """A primitive of ``agent`` (class:provider:type) with ``ops`` (name → timeout; the
    monitor every 2 s)."""
    klass, provider, kind = agent.split(":")
    element = ET.Element("primitive", {"id": rsc, "class": klass, "provider": provider,
                                       "type": kind})  # fmt: skip
    attrs = ET.SubElement(element, "instance_attributes", id=f"{rsc}-params")
    for name, value in params.items():
        ET.SubElement(attrs, "nvpair", id=f"{rsc}-{name}", name=name, value=value)
    operations = ET.SubElement(element, "operations")
    for name, timeout in ops.items():
        interval = "2s" if name == "monitor" else "0s"
        ET.SubElement(operations, "op", id=f"{rsc}-{name}", name=name, interval=interval,
                      timeout=timeout)  # fmt: skip
    return element


def guarded(config: Path, out: Path) -> ET.Element:
    """The group vm1-group: vm1 of VirtualDomain with the monitor script (force_stop false,
    the default: its stop asks a running domain for a graceful shutdown first), then its
    guard, which a recovery of vm1 stops first. vm1 moves away after one failure, and stays
    where it runs when a failure elsewhere is cleaned up."""
    group = ET.Element("group", id=f"{RSC}-group")
    meta = ET.SubElement(group, "meta_attributes", id=f"{RSC}-group-meta")
    ET.SubElement(meta, "nvpair", id=f"{RSC}-role", name="target-role", value="Stopped")
    ET.SubElement(meta, "nvpair", id=f"{RSC}-st", name="resource-stickiness", value="1000")
    vm = primitive(RSC, "ocf:heartbeat:VirtualDomain",
                   {"config": str(config), "hypervisor": "qemu:///system",
                    "monitor_scripts": MONITOR},
                   {"monitor": "30s", "start": "60s", "stop": "20s"})  # fmt: skip
    vm_meta = ET.SubElement(vm, "meta_attributes", id=f"{RSC}-meta")
    ET.SubElement(vm_meta, "nvpair", id=f"{RSC}-mt", name="migration-threshold", value="1")
    group.append(vm)
    group.append(primitive(GUARD, "ocf:kvmha:kvmha-guest",
                           {"domain": RSC, "hypervisor": "qemu:///system", "guard": "true",
                            "capture_dir": str(out)},
                           {"monitor": "30s", "start": "20s", "stop": "120s"}))  # fmt: skip
    return group


def alert(cluster: Cluster) -> str:
    """The alert agent as docs/ha/pacemaker.md installs it, bundles to the shared directory."""
    element = ET.Element("alerts")
    agent = ET.SubElement(element, "alert", id="kvmha", path="/usr/local/bin/kvmha-alert")
    attrs = ET.SubElement(agent, "instance_attributes", id="kvmha-attrs")
    ET.SubElement(attrs, "nvpair", id="kvmha-log", name="kvmha_log", value=ALERT_LOG)
    ET.SubElement(agent, "recipient", id="kvmha-out", value=str(cluster.shared / "bundles"))
    return f"<configuration>{ET.tostring(element, 'unicode')}</configuration>"


def virsh(node: Node, *args: str) -> str:
    return node.run("virsh", "-c", "qemu:///system", *args).stdout


def fail_disk(node: Node) -> None:
    """Put vm1's disk file behind a blkdebug node that fails every write (through libvirt's
    monitor pass-through): the guest's next write pauses it on an I/O error."""

    def monitor(command: str, arguments: object = None) -> object:
        line = json.dumps({"execute": command, **({"arguments": arguments} if arguments else {})})
        return json.loads(virsh(node, "qemu-monitor-command", RSC, line))["return"]

    named = monitor("query-named-block-nodes")
    assert isinstance(named, list)
    fmt = next(n["node-name"] for n in named if n["drv"] == "raw")
    storage = next(n["node-name"] for n in named if n["drv"] == "file")
    failing = {"node-name": "failing", "driver": "blkdebug", "image": storage,
               "inject-error": [{"event": "write_aio", "errno": 5}]}  # fmt: skip
    monitor("blockdev-add", failing)
    reopen = {"options": [{"node-name": fmt, "driver": "raw", "file": "failing"}]}
    monitor("blockdev-reopen", reopen)


def alert_lines(node: Node) -> list[str]:
    return node.path(ALERT_LOG).read_text().splitlines()


def as_hacluster(node: Node, *argv: str) -> subprocess.CompletedProcess[str]:
    """``sudo -n ARGV`` run by hacluster in ``node``, as Pacemaker runs the alert agent."""
    return node.run("runuser", "-u", "hacluster", "--", "sudo", "-n", *argv, check=False)


def stop_order(node: Node, after: float) -> tuple[float, float]:
    """When the guard's stop ended, and when vm1's (VirtualDomain's) stop was requested, on
    ``node`` after ``after``: the group's order, guard first."""
    guard_done = log_time(node, f"Result of stop operation for {GUARD} on {node.name}: ok", after)
    vm_stop = log_time(node, f"Requesting local execution of stop operation for {RSC} on", after)
    assert guard_done is not None and vm_stop is not None
    return guard_done, vm_stop


def test_virtualdomain_recovers_a_frozen_and_a_crashed_domain_and_the_guard_captures_first(
    cluster: Cluster,
) -> None:
    """An I/O error on node-a (the monitor script fails vm1), then, vm1 on node-b, a panic
    there (VirtualDomain fails the crashed domain by itself): one cluster, two rounds."""
    cluster.alive().run("cibadmin", "--modify", "-o", "configuration", "--xml-text", alert(cluster))
    cluster.create("resources", guarded(domain_config(cluster), cluster.shared / "bundles"))
    cluster.create(
        "constraints", ET.Element("rsc_location", id="on-a", rsc=f"{RSC}-group", node="node-a",
                                  score="100"),
    )  # fmt: skip
    cluster.delete("resources", ET.Element("nvpair", id=f"{RSC}-role"))
    until(lambda: cluster.running_on(GUARD) == "node-a", "vm1 and its guard running on node-a")
    console = cluster.shared / "guests" / f"{RSC}.console"  # truncated by each start
    until(lambda: console.exists() and "KVMHA-LAB: idle" in console.read_text(), "vm1 booted")

    fail_disk(cluster.a)
    until(lambda: "i/o error" in virsh(cluster.a, "domstate", RSC, "--reason").lower(),
          "vm1 paused on the I/O error")  # fmt: skip
    frozen = time.time()  # no QEMU event timestamp here: the time the test saw the pause
    until(lambda: started_on(cluster.b), "vm1 started on node-b")
    assert cluster.running_on(RSC) == "node-b"

    failed = [r for r in cluster.operations(RSC) if r["node"] == "node-a" and r["rc-code"] == "1"]
    assert [r["operation"] for r in failed] == ["monitor"], cluster.operations(RSC)
    script = f'Monitor command "{MONITOR}" for domain {RSC}'
    reason = f"{script} returned 1 with output: frozen (io-error)"
    assert failed[0]["exit-reason"].startswith(reason), failed[0]  # Pacemaker cuts it at 128

    (bundle,) = bundles(cluster)  # the monitor script's, before any stop began
    opened = Bundle.open(bundle)
    assert opened.manifest.status == "complete" and opened.verify() == []
    assert opened.manifest.guest["runstate"] == "io-error"
    guard_done, vm_stop = stop_order(cluster.a, frozen)
    assert os.stat(bundle).st_mtime < guard_done < vm_stop  # controld logs ms
    # the guard ended the frozen domain: VirtualDomain's stop found it stopped, no shutdown wait
    assert log_time(cluster.a, f"Domain {RSC} already stopped", frozen) is not None
    assert log_time(cluster.a, "Issuing graceful shutdown request", frozen) is None

    # the alert agent ran as hacluster for the failed monitor: sudo let it ask status and
    # capture as root; its capture --once either took the monitor script's bundle (no second
    # one) or, started after the guard ended the domain, found no domain (it races the stop)
    until(lambda: any(" capture (exit " in line for line in alert_lines(cluster.a)),
          "the alert agent's capture")  # fmt: skip
    lines = alert_lines(cluster.a)
    assert any("vm1 frozen, capturing into" in line for line in lines), lines
    (done,) = [line for line in lines if " capture (exit " in line]
    took = "capture (exit 0)" in done and str(bundle) in done
    assert took or f"capture (exit 5): kvmha-forensics: error: no domain {RSC}" in done, lines
    assert bundles(cluster) == [bundle]
    print(f"\nVirtualDomain, I/O error: running on node-b {started_on(cluster.b) - frozen:.2f} s "  # type: ignore[operator]
          "after the pause (monitor interval 2 s)")  # fmt: skip

    # hacluster may have root run the helper only, and the helper takes a guest only
    assert as_hacluster(cluster.b, HELPER, "status", "--domain", RSC).returncode == 0
    refused = [
        ["capture", "--domain", RSC, "--out", "/etc"],
        ["capture", "--qmp", "/run/kvmha/../../etc/shadow"],
        ["status", "--qmp", "/run/libvirt/libvirt-sock"],
        ["status", "--domain", RSC, "--connect", "qemu+ssh://root@elsewhere/system"],
        ["status", "--domain", "--help"],
        ["analyze", "/etc/shadow"],
    ]
    for argv in refused:
        done = as_hacluster(cluster.b, HELPER, *argv)
        assert done.returncode == 2 and ": refused (usage: " in done.stderr, (argv, done)
    direct = as_hacluster(cluster.b, "/usr/local/bin/kvmha-forensics", "status", "--domain", RSC)
    assert direct.returncode == 1 and "password is required" in direct.stderr, direct

    # round 2: a panic on node-b, which VirtualDomain's own status check fails (no monitor
    # script runs on a crashed domain; a monitor in the moment libvirt still says paused, before
    # it handled the panic, runs the script, which fails it); the guard's stop, before
    # VirtualDomain's, keeps the evidence and ends the domain
    cleanup(cluster, cluster.a)
    second, panicked = panic(cluster, cluster.b, cluster.a, console)
    failed = [r for r in cluster.operations(RSC) if r["node"] == "node-b" and r["rc-code"] == "1"]
    assert [r["operation"] for r in failed] == ["monitor"], cluster.operations(RSC)
    crashed = log_time(cluster.b, f'{RSC} has unknown status "crashed"', panicked)
    by_script = failed[0].get("exit-reason", "").startswith(f"{script} returned 1")
    assert crashed is not None or by_script, failed[0]
    assert second != bundle

    # round 3: a panic on node-a with the watcher (--libvirt) and its hook there: the watcher
    # captures at once and the hook fails vm1 before the next monitor; the guard's stop takes
    # the watcher's bundle (or waits for it)
    cleanup(cluster, cluster.b)
    out = cluster.a.root / "watch.out"
    cluster.a.spawn("watch", ["/usr/local/bin/kvmha-forensics", "watch", "--libvirt",
                              "--connect", "qemu:///system", "--hook",
                              "/usr/local/bin/kvmha-crm-fail", "--out",
                              str(cluster.shared / "bundles")])  # fmt: skip
    watcher = cluster.a.daemons["watch"]
    until(lambda: records(out, "state") or watcher.poll() is not None, "the watcher watching vm1")
    assert watcher.poll() is None, out.read_text()
    third, _ = panic(cluster, cluster.a, cluster.b, console, "the watcher's hook")
    (signal,) = [r for r in records(out, "signal") if r["state"] == "frozen"]
    assert (signal["guest"], signal["cause"]) == (RSC, "guest-panicked"), signal
    until(lambda: records(out, "hook"), "the watcher's hook record")
    assert records(out, "hook")[0]["returncode"] == 0, records(out, "hook")
    (capture,) = records(out, "capture")  # written before the guard's stop ended
    assert capture["status"] == "complete" and Path(str(capture["bundle"])) == third, capture


def panic(cluster: Cluster, source: Node, target: Node, console: Path,
          how: str = "monitor interval 2 s") -> tuple[Path, float]:  # fmt: skip
    """Panic vm1 on ``source`` once booted; check that it runs on ``target``, that its new
    bundle was complete before the guard's stop ended and that VirtualDomain's stop found the
    domain stopped. The bundle and the time of the NMI."""
    until(lambda: "KVMHA-LAB: idle" in console.read_text(), f"vm1 booted on {source.name}")
    before = set(bundles(cluster))
    virsh(source, "inject-nmi", RSC)  # unknown_nmi_panic: a panic, pvpanic, on_crash preserve
    panicked = time.time()
    until(lambda: started_on(target, after=panicked), f"vm1 started on {target.name}")
    assert cluster.running_on(RSC) == target.name
    (bundle,) = set(bundles(cluster)) - before
    opened = Bundle.open(bundle)
    assert opened.manifest.status == "complete" and opened.verify() == []
    assert opened.manifest.guest["runstate"] == "guest-panicked"
    guard_done, vm_stop = stop_order(source, panicked)
    assert os.stat(bundle).st_mtime < guard_done < vm_stop
    assert log_time(source, f"Domain {RSC} already stopped", panicked) is not None
    seconds = started_on(target, after=panicked) - panicked  # type: ignore[operator]
    print(f"\nVirtualDomain, panic: running on {target.name} {seconds:.2f} s after the NMI ({how})")
    return bundle, panicked
