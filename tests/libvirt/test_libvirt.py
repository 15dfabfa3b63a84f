"""libvirt domains, first-class, against the real libvirtd: each freeze watched, statused,
captured and analyzed through libvirt (monitor pass-through and libvirt's APIs alone), with the
verdict of the bare-QEMU lab guest of the same scenario."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

import pytest

from kvmha_forensics.analyze import analyze, gather
from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.capture.steps import CaptureOptions, Progress, capture
from kvmha_forensics.lab import domains, libvirtd, scenarios
from kvmha_forensics.transport.libvirt import Domain
from kvmha_forensics.transport.libvirt_files import log_since_start
from tests.conftest import DEBUGINFO, Lab
from tests.ha.test_watch import Watch, kind
from tests.libvirt.conftest import Domains

pytestmark = pytest.mark.lab
CLI = [sys.executable, "-m", "kvmha_forensics"]
CAUSE = {"panic": "guest-panicked", "io-error": "io-error", "emulation-failure": "internal-error"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, check=False)


def verdict(bundle: Path) -> tuple[str, str]:
    inputs, problems = gather(bundle, debuginfo_dirs=(DEBUGINFO,))
    v = analyze(inputs, problems).verdict
    return v.cause, v.signature


def qemu_log(name: str) -> str:
    return Path(f"/var/log/libvirt/qemu/{name}.log").read_text(errors="replace")


def state(lv: Domains, name: str) -> tuple[int, int]:
    st = lv.conn.lookupByName(name).state()
    return int(st[0]), int(st[1])


@pytest.mark.parametrize("name", ["panic", "io-error", "emulation-failure"])
def test_freeze_through_libvirt_as_through_qmp(
    lv: Domains, lab: Lab, tmp_path: Path, name: str
) -> None:
    """libvirt's APIs alone first (the domain stays untainted), then the monitor
    pass-through; both give the bare-QEMU guest's verdict and leave the state as it was."""
    dom = lv.start(name, paused=True)
    out = tmp_path / "bundles"
    w = Watch(tmp_path / "watch.err", "--domain", dom.name, "--libvirt-api-only",
              "--out", str(out))  # fmt: skip
    try:
        signal = lv.frozen_signal(w, dom)
        assert signal["cause"] == CAUSE[name] and signal["failover_safe"] is True
        assert signal["qmp"] == f"{dom.name}@qemu:///system"
        captured = w.wait(kind("capture", dom.name), "capture")
        assert captured["status"] == "complete", captured["reasons"]
        analysis = w.wait(kind("analysis", dom.name), "analysis")
        assert analysis["status"] == "ok", analysis
    finally:
        w.kill()
    frozen = state(lv, dom.name)
    assert frozen == domains.LIBVIRT_STATE[scenarios.get(name).runstate]
    api_bundle = Path(str(captured["bundle"]))
    log = qemu_log(dom.name)
    assert "custom-monitor" not in log and "custom-argv" not in log
    identity = json.loads((api_bundle / "identity.json").read_text())["libvirt"]
    assert identity["mode"] == "api-only" and identity["libvirt_version"].startswith("9.")
    assert identity["state_reason"] in (
        "crashed (panicked)",
        "paused (ioerror)",
        "paused (unknown)",
    )
    assert f"<name>{dom.name}</name>" in identity["xml"]
    if name != "emulation-failure":  # a boot sector prints nothing
        assert "KVMHA-LAB: ready" in (api_bundle / "console.log").read_text()

    for mode in ([], ["--libvirt-api-only"]):
        st = run("status", "--domain", dom.name, "--json", *mode)
        assert st.returncode == 10, st.stderr
        assert json.loads(st.stdout)["cause"] == CAUSE[name]
    done = run("capture", "--domain", dom.name, "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    monitor_bundle = Path(json.loads(done.stdout.splitlines()[-1])["bundle"])
    assert "custom-monitor" in qemu_log(dom.name)  # what the monitor pass-through costs
    assert state(lv, dom.name) == frozen

    expected = verdict(lab.bundle(name))
    api_verdict = cast(dict[str, str], analysis["verdict"])
    assert (api_verdict["cause"], api_verdict["signature"]) == expected
    assert verdict(monitor_bundle) == expected
    # the registers from the dump's QEMU notes are those 'info registers' gives
    api_regs = json.loads((api_bundle / "registers.json").read_text())
    hmp_regs = json.loads((monitor_bundle / "registers.json").read_text())
    for a, h in zip(api_regs, hmp_regs, strict=True):
        assert (a["rip"], a["cr"], a["gprs"], a["mode"]) == (
            h["rip"],
            h["cr"],
            h["gprs"],
            h["mode"],
        )
    if name == "io-error":  # a disk libvirt knows, not a QEMU argument behind its back
        assert "error_policy='stop'" in lv.conn.lookupByName(dom.name).XMLDesc(0)
    if name == "emulation-failure":  # the KVM exit reason from the domain's QEMU log
        for bundle in (api_bundle, monitor_bundle):
            kvm = json.loads((bundle / "kvm-exit.json").read_text())
            assert kvm["internal_errors"][0]["suberror"] == 1
    lv.destroy(dom)


def test_operator_suspend_is_not_a_freeze(lv: Domains, tmp_path: Path) -> None:
    dom = lv.start("running")
    w = Watch(tmp_path / "watch.err", "--domain", dom.name)
    try:
        w.wait(kind("state", dom.name, state="running"), "running")
        assert subprocess.run(["virsh", "suspend", dom.name], capture_output=True).returncode == 0
        w.wait(kind("state", dom.name, state="paused"), "paused")
        st = run("status", "--domain", dom.name)
        assert st.returncode == 12, st.stdout
        lv.conn.lookupByName(dom.name).resume()
        resumed = kind("state", dom.name, state="running")  # by its event, or a poll
        w.wait(lambda r: resumed(r) and r["detail"] != "connected", "resumed")
    finally:
        w.kill()
    assert not [r for r in w.records if r["kind"] == "signal"]
    lv.destroy(dom)


def test_watch_libvirt_takes_later_domains_and_forgets_undefined(
    lv: Domains, tmp_path: Path
) -> None:
    w = Watch(tmp_path / "watch.err", "--libvirt")
    try:
        later = lv.start("panic", paused=True, tag="-later")
        signal = lv.frozen_signal(w, later)
        assert signal["cause"] == "guest-panicked"
        lv.destroy(later)  # transient: destroyed is undefined
        gone = w.wait(kind("signal", later.name, state="gone"), "gone")
        assert gone["failover_safe"] is True
        forgotten = f"{later.name}@qemu:///system: gone from its directory or host"
        deadline = time.monotonic() + 60  # a bound on waiting, not a speed requirement
        while forgotten not in w.stderr and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        code, err = w.stop()
    assert code == 0, err
    assert f"{later.name}@qemu:///system: gone from its directory or host" in err


def test_domain_destroyed_mid_capture_leaves_an_incomplete_bundle(
    lv: Domains, tmp_path: Path
) -> None:
    dom = lv.start("panic", tag="-destroyed")

    destroyed: list[bool] = []

    def destroy_at_memory(p: Progress) -> None:
        if p.step == "memory" and p.status == "start" and not destroyed:
            destroyed.append(True)
            lv.conn.lookupByName(dom.name).destroy()

    opts = CaptureOptions(Domain(dom.name), tmp_path, "elf", None, 60.0)
    result = asyncio.run(capture(opts, destroy_at_memory))
    manifest = Bundle.open(result.bundle).manifest
    assert manifest.status == "incomplete"
    missing = {reason.split(":")[0] for reason in manifest.reasons}
    assert {"memory", "runstate-check"} <= missing, manifest.reasons
    lv.destroy(dom)


def test_libvirtd_down_is_one_line_and_exit_5(tmp_path: Path) -> None:
    uri = f"qemu:///system?socket={tmp_path}/no-libvirtd.sock"
    for args in (["status", "--domain", "vm1", "--connect", uri],
                 ["capture", "--domain", "vm1", "--connect", uri, "--out", str(tmp_path)],
                 ["watch", "--libvirt", "--connect", uri]):  # fmt: skip
        done = run(*args)
        assert done.returncode == 5, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot reach libvirtd" in lines[0], done.stderr


def test_a_uri_of_another_driver_is_one_line_and_exit_5(tmp_path: Path) -> None:
    """libvirt's test driver (in-process, no daemon) has domains but no job stats or QEMU
    events: a configuration error, not a guest lost again and again."""
    uri = "test:///default"
    for args in (["status", "--domain", "test", "--connect", uri],
                 ["capture", "--domain", "test", "--connect", uri, "--out", str(tmp_path)],
                 ["watch", "--domain", "test", "--connect", uri],
                 ["watch", "--libvirt", "--connect", uri],
                 ["watch", "--libvirt", "--libvirt-api-only", "--connect", uri]):  # fmt: skip
        done = run(*args)
        assert done.returncode == 5, (args, done.stderr)
        assert done.stdout == "", (args, done.stdout)  # no record, no 'gone' signal
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "is the TEST driver, not QEMU's" in lines[0], done.stderr


def test_log_since_start_keeps_the_last_start_bounded(tmp_path: Path) -> None:
    log = tmp_path / "vm.log"
    first = b"2026-11-26 14:00:00.000+0000: starting up libvirt version: 9.0.0\nold\n"
    second = b"2026-11-26 15:00:00.000+0000: starting up libvirt version: 9.0.0\nnew\n"
    log.write_bytes(first + second + b"KVM internal error. Suberror: 1\n")
    assert log_since_start(log) == second + b"KVM internal error. Suberror: 1\n"
    log.write_bytes(b"x" * 100 + b"\n" + b"y" * 50 + b"\n")
    cut = log_since_start(log, limit=60)
    assert cut.endswith(b"y" * 50 + b"\n") and b"bytes cut here" in cut and b"x" not in cut


def test_freeze_while_libvirtd_is_down_is_signaled_on_reconnect(
    lv: Domains, tmp_path: Path
) -> None:
    """libvirtd restarted under a watcher: no 'gone' for a guest that is still there, and the
    panic that happened while libvirtd was down is signaled once it is back."""
    with libvirtd.exclusive() as alone:
        daemon = libvirtd.Daemon("libvirtd", libvirtd.daemon_pid("libvirtd") or 0)
        if not alone or daemon not in libvirtd.started_here():
            pytest.skip("libvirtd is in use by another session, or was not started by the suite")
        _restart_under_a_watcher(lv, tmp_path, daemon)


def _restart_under_a_watcher(lv: Domains, tmp_path: Path, daemon: libvirtd.Daemon) -> None:
    dom = lv.start("hung-task", paused=True, tag="-restart")  # panics ~5 s after boot
    w = Watch(tmp_path / "watch.err", "--domain", dom.name)
    try:
        w.wait(kind("state", dom.name, detail="connected"), "connected")
        lv.conn.lookupByName(dom.name).resume()
        w.wait(kind("state", dom.name, state="running"), "running")
        libvirtd.stop([daemon])
        w.wait(kind("state", dom.name, state="unreachable"), "libvirtd unreachable")
        console = dom.files.console
        deadline = time.monotonic() + 120  # a bound on waiting for the panic, not a speed
        while "Kernel panic" not in console.read_text(errors="replace"):
            assert time.monotonic() < deadline, console.read_text()[-2000:]
            time.sleep(0.2)
        libvirtd.restart()
        lv.reconnect()
        signal = w.wait(kind("signal", dom.name, state="frozen"), "frozen after reconnect")
        assert signal["cause"] == "guest-panicked" and signal["detected_by"] == "connect"
    finally:
        w.kill()
    assert not [r for r in w.records if r["kind"] == "signal" and r["state"] == "gone"]
    lv.destroy(dom)


def test_planted_console_link_and_log_fifo_are_not_read(lv: Domains, tmp_path: Path) -> None:
    """The files libvirt names for a domain are inputs like any other: a link planted at the
    serial console's path (to a root-only file) and a FIFO in place of the domain's QEMU log
    are refused with a reason, the capture ends, and neither enters the bundle."""
    dom = lv.start("panic", tag="-planted")
    console, log = dom.files.console, Path(f"/var/log/libvirt/qemu/{dom.name}.log")
    secret = tmp_path / "shadow"
    secret.write_text("root:SECRET-HASH:19000:0:99999:7:::\n")
    secret.chmod(0o600)
    console.rename(console.with_name("console.moved"))  # QEMU keeps writing to it
    console.symlink_to(secret)
    log.rename(log.with_name(f"{dom.name}.moved"))
    os.mkfifo(log)
    try:
        done = run("capture", "--domain", dom.name, "--out", str(tmp_path / "out"), "--json")
    finally:
        log.unlink()
        log.with_name(f"{dom.name}.moved").rename(log)
        console.unlink()
        console.with_name("console.moved").rename(console)
    assert done.returncode == 7, done.stderr  # incomplete: no QEMU log
    bundle = Path(json.loads(done.stdout.splitlines()[-1])["bundle"])
    for artifact in bundle.iterdir():
        assert b"SECRET-HASH" not in artifact.read_bytes(), artifact.name
    steps = {s["name"]: s for s in json.loads((bundle / "manifest.json").read_text())["steps"]}
    assert steps["console"]["status"] == "skipped", steps["console"]
    assert steps["qemu-log"]["status"] == "failed" and "a FIFO" in steps["qemu-log"]["detail"]
    done = run("capture", "--domain", dom.name, "--out", str(tmp_path / "out2"), "--json")
    assert done.returncode == 0, done.stderr  # the files restored are read again
    bundle = Path(json.loads(done.stdout.splitlines()[-1])["bundle"])
    assert (bundle / "console.log").read_bytes() == console.read_bytes()
    assert b"starting up" in (bundle / "qemu-stderr.log").read_bytes()
    lv.destroy(dom)
