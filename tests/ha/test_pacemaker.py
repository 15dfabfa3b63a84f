"""Failover without fencing, on a real two-node Pacemaker cluster (tests/ha/cluster.py).

A lab guest (Linux under TCG, booted with ``unknown_nmi_panic``) runs as the resource ``vm1``
of the agent ``ocf:kvmha:kvmha-guest`` on node-a; its QEMU is started by the agent's
``start_cmd`` in the node's namespaces, its disk and the bundle directory are on the cluster's
shared directory. The test freezes it with an NMI (a kernel panic: ``GUEST_PANICKED``) and
follows what Pacemaker does. Freeze → running-on-node-b times are printed (``-s`` shows them)
from QEMU's event timestamp and Pacemaker's log, beside the monitor interval; none is asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.lab import assets
from kvmha_forensics.transport.qmp import Endpoint, session
from tests.ha.cluster import ROOT, Cluster, Node

pytestmark = pytest.mark.lab
BINARY = str(Path(sys.executable).with_name("kvmha-forensics"))
HOOK = ROOT / "ha" / "hook" / "kvmha-crm-fail"
RSC = "vm1"
WAIT = 120.0  # an upper bound on waiting for the cluster, not a speed requirement
SAFE_REASON = "guest frozen: guest-panicked (failover_safe=true)"
BLOCK_JOB = "block job bk (backup) is still running"
STAMP = re.compile(r"(\w{3} +\d+ \d\d:\d\d:\d\d)(\.\d+)? ")


def need_cluster_tools() -> None:
    for tool in ("corosync", "pacemakerd", "cibadmin", "ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool}: ./run setup installs pacemaker, corosync and iproute2")
    if os.geteuid() != 0:
        pytest.skip("network and mount namespaces need root")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh two-node cluster (stonith off, no resources), torn down even on failure."""
    need_cluster_tools()
    made = Cluster(tmp_path / "cluster")
    try:
        made.start()
        (made.shared / "bundles").mkdir()
        (made.shared / "guests").mkdir()
        yield made
    finally:
        made.close()


# -- the guest ---------------------------------------------------------------------------------


def start_script(cluster: Cluster, memory_mb: int) -> Path:
    """The resource's start_cmd: start vm1's QEMU detached, as an operator's script would.

    Two QMP sockets in the node's /run/kvmha: vm1.qmp for the agent, vm1.sock for the watcher;
    a third, vm1.test, for the test's own commands. The disk is on the shared directory.
    """
    linux = assets.linux(assets._quiet)
    disk = cluster.shared / f"{RSC}.img"
    with disk.open("wb") as f:
        f.truncate(16 << 20)
    guests = cluster.shared / "guests"
    file = {"node-name": "file0", "driver": "file", "filename": str(disk)}
    blockdev = {"node-name": "disk0", "driver": "raw", "file": file}
    argv = [
        "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-machine", "pc", "-accel", "tcg",
        "-m", str(memory_mb), "-display", "none", "-name", RSC,
        "-device", "pvpanic", "-device", "vmcoreinfo",
        "-action", "panic=pause,reboot=shutdown,shutdown=pause",
        "-blockdev", json.dumps(blockdev),
        "-device", "virtio-blk-pci,drive=disk0,id=vd0,werror=stop,rerror=stop",
        "-kernel", str(linux.kernel.vmlinuz), "-initrd", str(linux.initramfs),
        "-append", "console=ttyS0 oops=panic mitigations=off kvmha.scenario=running "
        "unknown_nmi_panic kvmha.writes=1",
    ]  # fmt: skip
    sockets = [
        f"-qmp unix:/run/kvmha/{RSC}.{s},server=on,wait=off" for s in ("qmp", "sock", "test")
    ]
    script = cluster.shared / f"start-{RSC}"
    script.write_text(
        "#!/bin/sh\n"
        f"out={guests}/{RSC}-$(hostname)\n"
        f"exec setsid -f {shlex.join(argv)} {' '.join(sockets)} \\\n"
        '    -serial "file:$out.console" </dev/null >/dev/null 2>>"$out.stderr"\n'
    )
    script.chmod(0o755)
    return script


def resource(
    cluster: Cluster, monitor: str | None, stop_timeout: str = "60s", memory_mb: int = 256
) -> ET.Element:
    """vm1 as a primitive of ocf:kvmha:kvmha-guest, moved away after one failure; with
    ``monitor=None`` its recurring monitor (10 s) is disabled."""
    rsc = ET.Element(
        "primitive", {"id": RSC, "class": "ocf", "provider": "kvmha", "type": "kvmha-guest"}
    )
    params = {
        "qmp": f"/run/kvmha/{RSC}.qmp",
        "start_cmd": str(start_script(cluster, memory_mb)),
        "capture_dir": str(cluster.shared / "bundles"),
        "binary": BINARY,
    }
    attrs = ET.SubElement(rsc, "instance_attributes", id=f"{RSC}-params")
    for name, value in params.items():
        ET.SubElement(attrs, "nvpair", id=f"{RSC}-{name}", name=name, value=value)
    meta = ET.SubElement(rsc, "meta_attributes", id=f"{RSC}-meta")
    ET.SubElement(meta, "nvpair", id=f"{RSC}-mt", name="migration-threshold", value="1")
    # stays where it runs when a failure elsewhere is cleaned up (node-a is preferred by 100)
    ET.SubElement(meta, "nvpair", id=f"{RSC}-st", name="resource-stickiness", value="1000")
    ops = ET.SubElement(rsc, "operations")
    for name, interval, timeout in (("monitor", monitor or "10s", "30s"), ("start", "0s", "60s"),
                                    ("stop", "0s", stop_timeout)):  # fmt: skip
        ET.SubElement(ops, "op", id=f"{RSC}-{name}", name=name, interval=interval, timeout=timeout)
    if monitor is None:
        ops[0].set("enabled", "false")
    return rsc


def fencing(cluster: Cluster) -> None:
    """The test fence device for both nodes, then stonith-enabled=true."""
    dev = ET.Element("primitive", {"id": "fencer", "class": "stonith", "type": "fence_kvmha_test"})
    attrs = ET.SubElement(dev, "instance_attributes", id="fencer-params")
    for name, value in (("pcmk_host_list", "node-a node-b"),
                        ("record", str(cluster.shared / "fenced")),
                        ("holders", str(cluster.shared / "holders"))):  # fmt: skip
        ET.SubElement(attrs, "nvpair", id=f"fencer-{name}", name=name, value=value)
    cluster.create("resources", dev)
    cluster.set_property("stonith-enabled", "true")


def fenced(cluster: Cluster) -> list[str]:
    """The fence agent's records: 'TIME ACTION NODE' lines."""
    record = cluster.shared / "fenced"
    return record.read_text().splitlines() if record.exists() else []


def place(cluster: Cluster, rsc: ET.Element) -> None:
    """Create the resource, preferring node-a, and wait until its guest has booted there."""
    meta = rsc.find("meta_attributes")
    assert meta is not None
    stopped = ET.SubElement(meta, "nvpair", id=f"{RSC}-role", name="target-role", value="Stopped")
    cluster.create("resources", rsc)
    cluster.create(
        "constraints", ET.Element("rsc_location", id="on-a", rsc=RSC, node="node-a", score="100")
    )
    cluster.delete("resources", stopped)
    until(lambda: cluster.running_on(RSC) == "node-a", "vm1 running on node-a")
    console = cluster.shared / "guests" / f"{RSC}-node-a.console"
    until(lambda: console.exists() and "KVMHA-LAB: idle" in console.read_text(), "vm1 booted")


def until(ready: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout:g}s")


def qmp(node: Node, command: str, arguments: dict[str, object] | None = None) -> object:
    """One QMP command on the test's own socket of vm1 on ``node``."""

    async def run() -> object:
        async with session(Endpoint(path=str(node.path(f"/run/kvmha/{RSC}.test")))) as s:
            return await s.execute(command, arguments)

    return asyncio.run(run())


def freeze(node: Node, how: str = "panic") -> float:
    """Freeze vm1 on ``node``; QEMU's time of the event that says so.

    ``panic``: an NMI (the guest runs with unknown_nmi_panic), GUEST_PANICKED. ``io-error``:
    the disk's file is put behind a blkdebug node that fails every write (blockdev-reopen), so
    the guest's next write stops it (werror=stop), BLOCK_IO_ERROR.
    """
    commands: list[tuple[str, dict[str, object] | None]] = [("inject-nmi", None)]
    event = "GUEST_PANICKED"
    if how == "io-error":
        failing = {"node-name": "failing", "driver": "blkdebug", "image": "file0",
                   "inject-error": [{"event": "write_aio", "errno": 5}]}  # fmt: skip
        reopen = {"options": [{"node-name": "disk0", "driver": "raw", "file": "failing"}]}
        commands, event = [("blockdev-add", failing), ("blockdev-reopen", reopen)], "BLOCK_IO_ERROR"

    async def run() -> float:
        async with session(Endpoint(path=str(node.path(f"/run/kvmha/{RSC}.test")))) as s:
            for command, arguments in commands:
                await s.execute(command, arguments)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                first = await s.next_event(1.0)
                for e in ([first] if first else []) + s.events():
                    if e.name == event:
                        return e.timestamp
        raise AssertionError(f"vm1 did not freeze: no {event}")

    return asyncio.run(run())


# -- what Pacemaker did ------------------------------------------------------------------------


def log_time(node: Node, text: str, after: float = 0.0) -> float | None:
    """The time of the first line of the node's Pacemaker log that contains ``text``, logged
    after ``after`` (agents, through ocf_log, log whole seconds: a second's slack)."""
    log = node.root / "log-pacemaker" / "pacemaker.log"
    for line in log.read_text(errors="replace").splitlines():
        stamp = STAMP.match(line)
        if text in line and stamp:  # the daemons log milliseconds, agents (ocf_log) seconds
            when = datetime.strptime(f"{datetime.now().year} {stamp[1]}", "%Y %b %d %H:%M:%S")
            logged = when.timestamp() + float(stamp[2] or 0)
            if logged > after - (0 if stamp[2] else 1):
                return logged
    return None


def started_on(node: Node, after: float = 0.0) -> float | None:
    return log_time(node, f"Result of start operation for {RSC} on {node.name}: ok", after)


def op(cluster: Cluster, node: str, operation: str, rc: str) -> dict[str, str] | None:
    for record in cluster.operations(RSC):
        if (record["node"], record["operation"], record["rc-code"]) == (node, operation, rc):
            return record
    return None


def bundles(cluster: Cluster) -> list[Path]:
    return sorted((cluster.shared / "bundles").glob("kvmha-*"))


def measured(what: str, seconds: float, monitor: str) -> None:
    print(f"\n{what}: {seconds:.2f} s after the freeze (monitor interval {monitor})")


# -- the proofs --------------------------------------------------------------------------------


def test_monitor_fails_a_frozen_guest_stop_captures_it_and_it_runs_on_the_other_node(
    cluster: Cluster,
) -> None:
    place(cluster, resource(cluster, monitor="2s"))
    frozen = freeze(cluster.a)
    until(lambda: started_on(cluster.b), "vm1 started on node-b")
    assert cluster.running_on(RSC) == "node-b"
    failed = op(cluster, "node-a", "monitor", "1")  # OCF_ERR_GENERIC, with the cause
    assert failed is not None and failed["exit-reason"] == SAFE_REASON, cluster.operations(RSC)
    assert op(cluster, "node-a", "stop", "0") is not None
    (bundle,) = bundles(cluster)  # captured by stop, before QEMU ended: its memory is whole
    opened = Bundle.open(bundle)
    assert opened.manifest.status == "complete" and opened.verify() == []
    assert opened.manifest.guest["runstate"] == "guest-panicked"
    measured("running on node-b", started_on(cluster.b) - frozen, "2 s")  # type: ignore[operator]


def watch(node: Node, cluster: Cluster, *hook: str) -> Path:
    """Start the watcher on ``node`` (its output file returned): the guests' .sock sockets,
    bundles to the shared directory, and the given hook."""
    node.spawn(
        "watch",
        [BINARY, "watch", "--socket-dir", "/run/kvmha", "--pattern", "*.sock", "--poll", "0.2",
         "--out", str(cluster.shared / "bundles"), *(("--hook", *hook) if hook else ())],
    )  # fmt: skip
    return node.root / "watch.out"


def records(out: Path, kind: str) -> list[dict[str, object]]:
    found = []
    for line in out.read_text().splitlines() if out.exists() else []:
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("kind") == kind:
                found.append(record)
    return found


def cleanup(cluster: Cluster, node: Node) -> None:
    """Clear vm1's failure on ``node`` (as an operator does once the cause is understood), so
    vm1 may run there again; it stays where it runs (its stickiness)."""
    cluster.alive().run("crm_resource", "--cleanup", "--resource", RSC, "--node", node.name)
    until(lambda: op(cluster, node.name, "stop", "0") is None, f"vm1's history on {node.name} gone")


def booted(cluster: Cluster, node: Node) -> None:
    console = cluster.shared / "guests" / f"{RSC}-{node.name}.console"
    until(lambda: console.exists() and "KVMHA-LAB: idle" in console.read_text(), "vm1 booted")


def test_the_watchers_hook_fails_the_resource_at_once_and_nothing_is_fenced(
    cluster: Cluster,
) -> None:
    """A panic on node-a, then, vm1 running on node-b, an I/O error there: one cluster."""
    fencing(cluster)
    for node in cluster.nodes:
        watch(node, cluster, str(HOOK))
    # no recurring monitor: only the hook can tell Pacemaker (with one, a monitor that ran in
    # the ~0.1 s between the freeze and the push failed the resource first, in 1-2 % of runs)
    place(cluster, resource(cluster, monitor=None))
    rounds = [("panic", "guest-panicked", cluster.a, cluster.b),
              ("io-error", "io-error", cluster.b, cluster.a)]  # fmt: skip
    for how, cause, source, target in rounds:
        if source is cluster.b:
            cleanup(cluster, cluster.a)
            booted(cluster, source)
        frozen = freeze(source, how)
        until(lambda: started_on(target, after=frozen), f"vm1 started on {target.name}")  # noqa: B023
        out = source.root / "watch.out"
        until(lambda: records(out, "capture"), "the watcher's capture record")  # noqa: B023
        signal = records(out, "signal")[0]  # then "gone", once the stop ended QEMU
        assert (signal["guest"], signal["cause"], signal["failover_safe"]) == (RSC, cause, True)
        until(lambda: records(out, "hook"), "the watcher's hook record")  # noqa: B023
        hook = records(out, "hook")[0]
        assert (hook["phase"], hook["returncode"]) == ("signal", 0), hook
        # the failure Pacemaker acted on is the hook's (crm_resource --fail), not a monitor's
        history = cluster.operations(RSC)
        pushed = [r for r in history if r["node"] == source.name and r["rc-code"] == "1"]
        assert [r["operation"] for r in pushed] == ["asyncmon"], history
        assert op(cluster, source.name, "stop", "0") is not None
        (capture,) = records(out, "capture")
        assert capture["status"] == "complete"  # the stop waited for the watcher's capture
        bundle = Path(str(capture["bundle"]))
        opened = Bundle.open(bundle)
        assert bundle in bundles(cluster) and opened.verify() == []
        assert opened.manifest.guest["runstate"] == cause
        seconds = started_on(target, after=frozen) - frozen  # type: ignore[operator]
        measured(f"{how}: running on {target.name} (the hook's push)", seconds, "none")
    assert len(bundles(cluster)) == 2
    assert fenced(cluster) == []  # stonith is enabled, and a failover-safe freeze needs none
    history = cluster.a.run("stonith_admin", "--history", "*", check=False)
    assert "node-a" not in history.stdout and "node-b" not in history.stdout, history.stdout


def unsafe_freeze(cluster: Cluster, node: Node) -> float:
    """vm1 on ``node``, a backup job writing (slowly) while it panics: frozen, not
    failover-safe; returns once the stop says it waits."""
    target = str(cluster.shared / f"backup-{node.name}.img")
    qmp(node, "drive-backup", {"device": "disk0", "job-id": "bk", "target": target,
                               "sync": "full", "format": "raw", "speed": 1})  # fmt: skip
    frozen = freeze(node)
    until(lambda: log_time(node, "guest frozen but not failover-safe", frozen), "stop waiting")
    return frozen


def test_an_unsafe_freeze_fails_over_once_the_job_ends_and_fences_the_node_if_it_never_does(
    cluster: Cluster,
) -> None:
    """Node-a: the job ends within the stop timeout, vm1 fails over; then node-b: it never
    does, the stop fails and node-b is fenced before vm1 starts on node-a. One cluster."""
    fencing(cluster)
    place(cluster, resource(cluster, monitor="2s", stop_timeout="20s"))
    frozen = unsafe_freeze(cluster, cluster.a)
    assert started_on(cluster.b) is None  # the stop waits; nothing starts a second copy
    qmp(cluster.a, "block-job-cancel", {"device": "bk"})
    until(lambda: started_on(cluster.b, after=frozen), "vm1 started on node-b")
    assert op(cluster, "node-a", "stop", "0") is not None
    assert cluster.running_on(RSC) == "node-b"
    assert fenced(cluster) == []
    (bundle,) = bundles(cluster)
    assert Bundle.open(bundle).manifest.status == "complete"

    cleanup(cluster, cluster.a)
    booted(cluster, cluster.b)
    frozen = unsafe_freeze(cluster, cluster.b)
    until(lambda: started_on(cluster.a, after=frozen), "vm1 started on node-a again")
    # the stop failed with the reason, so Pacemaker fenced node-b before starting vm1 again
    failed = log_time(cluster.b, f"Result of stop operation for {RSC} on node-b: error "
                                 f"(guest frozen but not failover-safe: {BLOCK_JOB})")  # fmt: skip
    assert failed is not None
    (fence,) = fenced(cluster)
    when, action, target = fence.split()
    assert (action, target) == ("reboot", "node-b")
    assert failed < float(when) < started_on(cluster.a, after=frozen)  # type: ignore[operator]
    assert cluster.b.processes() == []  # fenced: powered off, its QEMU too
    assert cluster.running_on(RSC) == "node-a"


def test_node_loss_while_the_watcher_captures_the_survivor_takes_over_and_no_bundle_is_half_written(
    cluster: Cluster,
) -> None:
    fencing(cluster)
    out = watch(cluster.a, cluster)  # no hook: Pacemaker learns nothing until node-a is lost
    place(cluster, resource(cluster, monitor="60s", memory_mb=1024))
    freeze(cluster.a)
    partial = cluster.shared / "bundles"
    until(lambda: any(partial.glob(".kvmha-vm1-*.partial-*")), "the watcher's capture under way")
    lost = time.time()
    cluster.a.power_off()  # mid-capture: corosync, Pacemaker, the watcher and QEMU die at once
    until(lambda: started_on(cluster.b), "vm1 started on node-b")
    assert records(out, "signal") and not records(out, "capture")  # it died mid-capture
    (fence,) = fenced(cluster)  # a lost node is fenced before its resource starts elsewhere
    assert fence.split()[1:] == ["reboot", "node-a"]
    assert float(fence.split()[0]) < started_on(cluster.b)  # type: ignore[operator]
    assert cluster.running_on(RSC) == "node-b"
    # the bundle being written stays under its hidden temporary name: no bundle is half-written
    entries = list((cluster.shared / "bundles").iterdir())
    assert [e.name.startswith(".kvmha-vm1-") and ".partial-" in e.name for e in entries] == [True]
    # the survivor removes it: its writer died with node-a, so no lock holds it (on real
    # shared storage a lock of another host is not seen: the age, or knowing node-a fenced)
    pruned = cluster.b.run(BINARY, "bundle", "prune", "--older-than", "0", str(partial))
    assert pruned.stdout.splitlines() == [f"{entries[0]}: removed"]
    assert list(partial.iterdir()) == []
    print(f"\nnode loss → running on node-b: {started_on(cluster.b) - lost:.2f} s (token 1000 ms)")  # type: ignore[operator]
