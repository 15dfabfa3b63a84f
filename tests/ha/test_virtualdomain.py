"""The stock ``ocf:heartbeat:VirtualDomain`` on the real two-node cluster (tests/ha/cluster.py),
each node with its own libvirtd, with kvmha-forensics as its monitor script and alert agent.

VirtualDomain alone counts a domain paused on an I/O error as running. With
``monitor_scripts=/usr/local/bin/kvmha-domain-monitor`` the monitor captures the frozen domain
and fails, Pacemaker moves the domain to node-b, and the alert agent (``kvmha-alert``, run by
Pacemaker as hacluster, status and capture through its sudoers rule) finds that freeze already
captured. The freeze → running-on-node-b time is printed (``-s``), not asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.lab import assets, libvirtd
from tests.ha.cluster import Cluster, Node, ids
from tests.ha.test_pacemaker import bundles, log_time, need_cluster_tools, started_on, until

pytestmark = pytest.mark.lab
RSC = "vm1"
MONITOR = "/usr/local/bin/kvmha-domain-monitor"
ALERT_LOG = "/run/kvmha/alert.log"
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
    cmdline = "console=ttyS0 oops=panic mitigations=off kvmha.scenario=running kvmha.writes=1"
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


def virtualdomain(config: Path) -> ET.Element:
    """vm1 as a VirtualDomain primitive with the monitor script, moved away after one failure.
    force_stop stays false (the default): its stop asks for a graceful shutdown first."""
    rsc = ET.Element(
        "primitive", {"id": RSC, "class": "ocf", "provider": "heartbeat", "type": "VirtualDomain"}
    )
    attrs = ET.SubElement(rsc, "instance_attributes", id=f"{RSC}-params")
    for name, value in (("config", str(config)), ("hypervisor", "qemu:///system"),
                        ("monitor_scripts", MONITOR)):  # fmt: skip
        ET.SubElement(attrs, "nvpair", id=f"{RSC}-{name}", name=name, value=value)
    meta = ET.SubElement(rsc, "meta_attributes", id=f"{RSC}-meta")
    ET.SubElement(meta, "nvpair", id=f"{RSC}-mt", name="migration-threshold", value="1")
    ET.SubElement(meta, "nvpair", id=f"{RSC}-role", name="target-role", value="Stopped")
    ops = ET.SubElement(rsc, "operations")
    for name, interval, timeout in (("monitor", "2s", "30s"), ("start", "0s", "60s"),
                                    ("stop", "0s", "20s")):  # fmt: skip
        ET.SubElement(ops, "op", id=f"{RSC}-{name}", name=name, interval=interval, timeout=timeout)
    return rsc


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


def test_virtualdomain_with_the_monitor_script_recovers_a_frozen_domain_captured_first(
    cluster: Cluster,
) -> None:
    cluster.alive().run("cibadmin", "--modify", "-o", "configuration", "--xml-text", alert(cluster))
    cluster.create("resources", virtualdomain(domain_config(cluster)))
    cluster.create(
        "constraints", ET.Element("rsc_location", id="on-a", rsc=RSC, node="node-a", score="100")
    )
    cluster.delete("resources", ET.Element("nvpair", id=f"{RSC}-role"))
    until(lambda: cluster.running_on(RSC) == "node-a", "vm1 running on node-a")
    console = cluster.shared / "guests" / f"{RSC}.console"
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

    (bundle,) = bundles(cluster)  # the monitor script's, before VirtualDomain's stop began
    opened = Bundle.open(bundle)
    assert opened.manifest.status == "complete" and opened.verify() == []
    assert opened.manifest.guest["runstate"] == "io-error"
    stopping = log_time(cluster.a, "Requesting local execution of stop operation for vm1")
    assert stopping is not None and os.stat(bundle).st_mtime < stopping  # controld logs ms

    # the alert agent ran as hacluster for the failed monitor: sudo let it ask status and
    # capture as root, and capture --once took the monitor script's bundle (no second one)
    until(lambda: any(" capture (exit " in line for line in alert_lines(cluster.a)),
          "the alert agent's capture")  # fmt: skip
    lines = alert_lines(cluster.a)
    assert any("vm1 frozen, capturing into" in line for line in lines), lines
    done = [line for line in lines if " capture (exit " in line]
    assert len(done) == 1 and "capture (exit 0)" in done[0] and str(bundle) in done[0], lines
    assert bundles(cluster) == [bundle]
    print(f"\nVirtualDomain: running on node-b {started_on(cluster.b) - frozen:.2f} s after the "  # type: ignore[operator]
          "pause (monitor interval 2 s, stop timeout 20 s)")  # fmt: skip
