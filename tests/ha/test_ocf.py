"""The Pacemaker resource agent (checked by ocf-tester on a real guest) and the alert agent."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.transport.local import process_alive
from tests.conftest import Lab
from tests.ha.conftest import OwnGuest, qmp

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "ha" / "ocf" / "kvmha-guest"
ALERT = ROOT / "ha" / "alert" / "kvmha-alert"
BINARY = str(Path(sys.executable).with_name("kvmha-forensics"))
OCF_ROOT = Path("/usr/lib/ocf")


def alert_env(rsc: str, out: Path, **extra: str) -> dict[str, str]:
    """The environment Pacemaker gives an alert agent for a failed monitor of ``rsc``."""
    return {**os.environ, "PATH": f"{Path(BINARY).parent}:{os.environ['PATH']}",
            "CRM_alert_kind": "resource", "CRM_alert_rsc": rsc, "CRM_alert_task": "monitor",
            "CRM_alert_rc": "1", "CRM_alert_target_rc": "0", "CRM_alert_status": "0",
            "CRM_alert_recipient": str(out), **extra}  # fmt: skip


def published(out: Path) -> Path:
    """The one bundle the alert's detached capture publishes in ``out`` (waits for it)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(out.glob("kvmha-*")):
        time.sleep(0.2)
    (bundle,) = out.glob("kvmha-*")
    return bundle


def need_resource_agents() -> None:
    if not (OCF_ROOT / "lib" / "heartbeat" / "ocf-shellfuncs").exists():
        pytest.skip("no ocf-shellfuncs: apt-get install resource-agents")
    if shutil.which("ocf-tester") is None:
        pytest.skip("no ocf-tester: apt-get install resource-agents")
    if shutil.which("xmllint") is None:
        pytest.skip("ocf-tester checks meta-data with xmllint: apt-get install libxml2-utils")


def agent(action: str, **params: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OCF_ROOT": str(OCF_ROOT), "OCF_RESOURCE_INSTANCE": "guest",
           "OCF_RESKEY_binary": BINARY, "OCF_RESKEY_CRM_meta_timeout": "120000"}  # fmt: skip
    env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
    return subprocess.run(
        [str(AGENT), action], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_ocf_tester_passes_on_a_real_guest(tmp_path: Path) -> None:
    need_resource_agents()
    if os.geteuid() != 0:
        pytest.skip("ocf-tester checks the agent's permissions as root")
    directory = tmp_path / "g"
    up = f"{BINARY} lab up running --dir {directory}"
    down = f"{BINARY} lab down {directory}"
    try:
        done = subprocess.run(
            ["ocf-tester", "-n", "guest", "-o", f"qmp={directory / 'qmp.sock'}",
             "-o", f"start_cmd={up}", "-o", f"stop_cmd={down}", "-o", f"binary={BINARY}",
             "-o", f"capture_dir={tmp_path / 'b'}", str(AGENT)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    finally:
        if (directory / "lab.json").exists():
            subprocess.run([BINARY, "lab", "down", str(directory)], check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{AGENT} passed all tests" in done.stdout


def test_monitor_fails_a_frozen_guest_and_stop_captures_it(own: OwnGuest, tmp_path: Path) -> None:
    need_resource_agents()
    guest = own("panic")
    out = tmp_path / "bundles"
    params = {"qmp": guest.qmp, "start_cmd": "true", "capture_dir": str(out)}
    monitor = agent("monitor", **params)
    assert monitor.returncode == 1, monitor.stderr  # OCF_ERR_GENERIC
    assert "guest frozen: guest-panicked (failover_safe=true)" in monitor.stderr
    stop = agent("stop", **params)
    assert stop.returncode == 0, stop.stderr
    (bundle,) = out.iterdir()
    opened = Bundle.open(bundle)
    assert opened.manifest.status == "complete" and opened.verify() == []
    assert opened.manifest.guest["runstate"] == "guest-panicked"
    assert agent("monitor", **params).returncode == 7  # OCF_NOT_RUNNING: QEMU ended


def test_monitor_running_and_operator_paused(own: OwnGuest) -> None:
    need_resource_agents()
    guest = own("running")
    params = {"qmp": guest.qmp, "start_cmd": "true"}
    assert agent("monitor", **params).returncode == 0
    qmp(guest.qmp, "stop")  # an operator's pause is not a failure, unless configured so
    paused = agent("monitor", **params)
    assert paused.returncode == 0 and "guest paused (runstate paused)" in paused.stderr
    assert agent("monitor", **params, paused_is_failure="true").returncode == 1


def test_alert_agent_captures_a_frozen_guest(lab: Lab, tmp_path: Path) -> None:
    guest = lab.frozen("triple-fault")
    sockets, out = tmp_path / "run", tmp_path / "bundles"
    sockets.mkdir()
    (sockets / "vm1.sock").symlink_to(guest.qmp)  # the alert finds DIR/RSC.sock
    env = alert_env("vm1", out, kvmha_socket_dir=str(sockets))
    done = subprocess.run([str(ALERT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    bundle = published(out)
    assert Bundle.open(bundle).manifest.guest["runstate"] == "shutdown"
    # an expected result is no failure: nothing is captured
    calm = {**env, "CRM_alert_rc": "0", "CRM_alert_recipient": str(tmp_path / "none")}
    subprocess.run([str(ALERT)], env=calm, check=True, timeout=60)
    assert not (tmp_path / "none").exists()


def test_monitor_tells_a_missing_socket_from_a_gone_guest(own: OwnGuest) -> None:
    """No socket at the qmp path is not 'gone' by itself (issue 11): while the QEMU this node
    started is alive it is a configuration error (OCF_ERR_CONFIGURED, no failover); once that
    QEMU has exited (it removes its socket then) OCF_NOT_RUNNING; never started here, too."""
    need_resource_agents()
    recurring = {"CRM_meta_interval": "10000", "start_cmd": "true"}
    never = agent("monitor", qmp="/nonexistent/qmp.sock", **recurring)
    assert never.returncode == 7, never.stderr  # not started on this node
    guest = own("running")
    assert agent("start", qmp=guest.qmp, **recurring).returncode == 0  # QEMU's pid recorded
    held = Path(guest.qmp).with_name("moved.sock")
    os.rename(guest.qmp, held)  # the path no longer names a socket, QEMU still runs
    moved = agent("monitor", qmp=guest.qmp, **recurring)
    assert moved.returncode == 6, moved.stderr  # OCF_ERR_CONFIGURED
    assert f"yet QEMU {guest.pid} started behind it is alive" in moved.stderr
    os.rename(held, guest.qmp)
    os.kill(guest.pid, signal.SIGTERM)  # a clean exit: QEMU removes its socket
    os.waitpid(guest.pid, 0)
    assert not os.path.exists(guest.qmp)
    gone = agent("monitor", qmp=guest.qmp, **recurring)
    assert gone.returncode == 7, gone.stderr  # OCF_NOT_RUNNING, on evidence
    assert agent("stop", qmp=guest.qmp, **recurring).returncode == 0


def test_a_guard_leaves_a_running_guest_alone_and_captures_and_ends_a_frozen_one(
    own: OwnGuest, tmp_path: Path
) -> None:
    """guard=true (after another agent's resource in a group): start and monitor keep a state
    file only; stop leaves a running guest to its own agent, and captures and ends a frozen one."""
    need_resource_agents()
    running = own("running")
    out = tmp_path / "bundles"
    params = {"qmp": running.qmp, "guard": "true", "capture_dir": str(out)}
    assert agent("monitor", **params).returncode == 7  # never started: OCF_NOT_RUNNING
    assert agent("start", **params).returncode == 0
    assert agent("monitor", **params).returncode == 0
    assert agent("stop", **params).returncode == 0
    assert agent("monitor", **params).returncode == 7
    assert qmp(running.qmp, "query-status") == {"status": "running", "singlestep": False,
                                                 "running": True}  # fmt: skip
    assert not out.exists()
    frozen = own("panic")
    params["qmp"] = frozen.qmp
    assert agent("start", **params).returncode == 0
    stop = agent("stop", **params)
    assert stop.returncode == 0, stop.stderr
    (bundle,) = out.iterdir()
    assert Bundle.open(bundle).manifest.guest["runstate"] == "guest-panicked"
    assert not process_alive(frozen.pid)  # ended (a zombie until the test reaps it)
