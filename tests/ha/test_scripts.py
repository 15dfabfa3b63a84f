"""The HA scripts' own decisions, without a guest: what the alert agent ignores, and a monitor
script that cannot run kvmha-forensics (both run by the cluster tests on real guests)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.ha.test_ocf import ALERT, OCF_ROOT, ROOT, alert_env

MONITOR = ROOT / "ha" / "virtualdomain" / "kvmha-domain-monitor"


def alert(tmp_path: Path, status: str, rc: str) -> list[str]:
    """Run the alert agent for a monitor of vm1 (a resource no cluster knows); its log."""
    log = tmp_path / f"alert-{status}-{rc}.log"
    log.touch()
    env = alert_env("vm1", tmp_path / "bundles", CRM_alert_status=status, CRM_alert_rc=rc,
                    kvmha_socket_dir=str(tmp_path), kvmha_libvirt_uri="test:///default",
                    kvmha_log=str(log))  # fmt: skip
    done = subprocess.run([str(ALERT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def test_the_alert_agent_acts_on_failures_only(tmp_path: Path) -> None:
    (failed,) = alert(tmp_path, status="0", rc="1")  # a failed monitor: it looks for the guest
    assert "vm1 monitor failed (rc 1) but no domain or QMP socket is known for it" in failed
    assert alert(tmp_path, status="4", rc="1")  # an execution error is a failure too
    assert alert(tmp_path, status="1", rc="1") == []  # cancelled (a failover cancels monitors)
    assert alert(tmp_path, status="-1", rc="1") == []  # pending
    assert alert(tmp_path, status="0", rc="0") == []  # the expected result
    assert alert(tmp_path, status="0", rc="7") == []  # not running: Pacemaker's own business


def test_a_monitor_script_that_cannot_run_kvmha_forensics_passes_and_says_so(
    tmp_path: Path,
) -> None:
    if not (OCF_ROOT / "lib" / "heartbeat" / "ocf-shellfuncs").exists():
        pytest.skip("no ocf-shellfuncs: ./run setup installs resource-agents")
    config = tmp_path / "vm1.xml"
    config.write_text("<domain type='qemu'>\n  <name>vm1</name>\n</domain>\n")
    log = tmp_path / "pacemaker.log"  # where Pacemaker has its agents log (HA_LOGFILE)
    env = {**os.environ, "OCF_ROOT": str(OCF_ROOT), "OCF_RESOURCE_INSTANCE": "vm1",
           "OCF_RESKEY_config": str(config), "KVMHA_BINARY": str(tmp_path / "missing"),
           "HA_LOGFILE": str(log), "HA_LOGFACILITY": "none"}  # fmt: skip
    done = subprocess.run([str(MONITOR)], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0  # a broken install fails over no healthy domain...
    assert "status' failed (exit 127): frozen domains go unnoticed" in log.read_text()  # loudly
    log.unlink()
    env["KVMHA_BINARY"] = "false"  # runs, and fails (exit 1)
    usage = subprocess.run([str(MONITOR)], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert usage.returncode == 0 and "status' failed (exit 1)" in log.read_text()


HELPER = ROOT / "ha" / "alert" / "kvmha-alert-helper"


def helper(tmp_path: Path, *argv: str, mode: int = 0o644) -> subprocess.CompletedProcess[str]:
    """Run the alert agent's root helper with its configuration in ``tmp_path``: bundles to
    ``tmp_path/out``, and a ``binary`` that records its arguments in ``tmp_path/ran``."""
    recorder = tmp_path / "kvmha-forensics"
    recorder.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "ran"}\n')
    recorder.chmod(0o755)
    conf = tmp_path / "alert.conf"
    conf.write_text(f"# root's\nout={tmp_path / 'out'}\nbinary={recorder}\n")
    conf.chmod(mode)
    installed = tmp_path / "kvmha-alert-helper"
    installed.write_text(
        HELPER.read_text().replace("CONF=/etc/kvmha-forensics/alert.conf", f"CONF={conf}")
    )
    installed.chmod(0o755)
    return subprocess.run([str(installed), *argv], capture_output=True, text=True, timeout=30)


def test_the_alert_helper_takes_a_guest_and_nothing_else(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the helper checks that its configuration is root's")
    assert helper(tmp_path, "status", "--domain", "vm1").returncode == 0
    assert (
        helper(tmp_path, "capture", "--domain", "vm1", "--connect", "qemu:///system").returncode
        == 0
    )
    ran = (tmp_path / "ran").read_text().splitlines()
    guest = "--domain vm1 --connect qemu:///system"
    assert ran == [f"status --json {guest}", f"capture --json --once {guest} --out {tmp_path}/out"]
    refused = [
        ["capture", "--domain", "vm1", "--out", "/etc"],
        ["capture", "--domain", "vm1", "--once"],
        ["status", "--domain", "--help"],
        ["status", "--domain", "../vm1"],
        ["status", "--domain", "vm1", "--connect", "qemu+ssh://root@elsewhere/system"],
        ["status", "--domain", "vm1", "--qmp", "/run/kvmha/vm1.qmp"],
        ["status", "--qmp", "/run/kvmha/../../etc/shadow"],
        ["status", "--qmp", "/run/kvmha/a/b/c.sock"],
        ["status", "--qmp", "/run/libvirt/libvirt-sock"],
        ["status", "--qmp", "/run/kvmha/nothing-there.qmp"],
        ["status"],
        ["analyze", "/etc/shadow"],
    ]
    for argv in refused:
        done = helper(tmp_path, *argv)
        assert done.returncode == 2 and ": refused (usage: " in done.stderr, (argv, done.stderr)
    writable = helper(tmp_path, "status", "--domain", "vm1", mode=0o666)
    assert writable.returncode == 2 and "writable by root only" in writable.stderr
    assert len((tmp_path / "ran").read_text().splitlines()) == 2  # nothing refused ran
