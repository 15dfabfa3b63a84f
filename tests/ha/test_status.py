"""status on real lab guests: the state, the cause and a failover-safe verdict that is decided."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kvmha_forensics.errors import ExitCode
from kvmha_forensics.ha.status import Status, StatusExit, status
from kvmha_forensics.lab import scenarios
from kvmha_forensics.transport.qmp import Endpoint
from tests.conftest import KVM_OK, KVM_WHY, Lab
from tests.ha.conftest import OwnGuest, qmp

pytestmark = pytest.mark.lab
CLI = [sys.executable, "-m", "kvmha_forensics"]


def ask(path: str, timeout: float = 2.0) -> Status:
    return asyncio.run(status(Endpoint(path=path), timeout))


def cli_status(path: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [*CLI, "status", "--qmp", path, *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


FROZEN = [
    ("panic", "guest-panicked", "guest-panicked"),
    ("io-error", "io-error", "io-error"),
    ("enospc", "io-error", "io-error-nospace"),
    ("triple-fault", "shutdown", "shutdown"),
    ("emulation-failure", "internal-error", "internal-error"),
]


@pytest.mark.parametrize(("name", "runstate", "cause"), FROZEN)
def test_frozen_guest_is_frozen_and_failover_safe(
    lab: Lab, name: str, runstate: str, cause: str
) -> None:
    if scenarios.get(name).needs_kvm and not KVM_OK:
        pytest.skip(f"{name} needs KVM: {KVM_WHY}")
    guest = lab.frozen(name)
    got = ask(guest.qmp)
    assert (got.state, got.runstate, got.failover_safe) == ("frozen", runstate, True)
    # a passive status has no events to refine with (triple fault is told apart by the
    # SHUTDOWN event only: the watcher sees it, a later status cannot)
    assert got.cause in (cause, runstate)
    assert got.reasons == ()
    assert got.qemu_pid == guest.pid
    assert got.exit_code == StatusExit.FROZEN_SAFE


def test_cli_frozen_exit_code_and_json(lab: Lab) -> None:
    guest = lab.frozen("panic")
    done = cli_status(guest.qmp, "--json")
    assert done.returncode == StatusExit.FROZEN_SAFE == 10, done.stderr
    doc = json.loads(done.stdout)
    assert {"state", "cause", "failover_safe", "reasons"} <= doc.keys()
    assert (doc["state"], doc["cause"], doc["failover_safe"]) == ("frozen", "guest-panicked", True)
    text = cli_status(guest.qmp)
    assert text.returncode == 10
    assert text.stdout.splitlines()[0] == "frozen (guest-panicked), failover-safe"


def test_running_then_operator_pause(own: OwnGuest) -> None:
    guest = own("running")
    got = ask(guest.qmp)
    assert (got.state, got.runstate, got.failover_safe) == ("running", "running", False)
    assert cli_status(guest.qmp).returncode == StatusExit.RUNNING == 0
    qmp(guest.qmp, "stop")  # the operator pauses the guest: not an error, not a failover
    got = ask(guest.qmp)
    assert (got.state, got.runstate, got.cause, got.failover_safe) == (
        "paused", "paused", None, False,
    )  # fmt: skip
    assert "runstate paused is not an error stop" in got.reasons
    assert cli_status(guest.qmp).returncode == StatusExit.PAUSED == 12


def test_frozen_with_running_block_job_is_not_safe(own: OwnGuest, tmp_path: Path) -> None:
    guest = own("io-error")
    target = tmp_path / "mirror.raw"
    # 64 KiB/s over a 16 MiB disk: the job runs for minutes, writing while the guest is frozen
    qmp(guest.qmp, "drive-mirror", {
        "job-id": "ha-mirror", "device": "disk0", "target": str(target), "format": "raw",
        "sync": "full", "mode": "absolute-paths", "speed": 65536,
    })  # fmt: skip
    got = ask(guest.qmp)
    assert (got.state, got.runstate, got.failover_safe) == ("frozen", "io-error", False)
    assert any("block job ha-mirror (mirror) is still running" in r for r in got.reasons)
    assert cli_status(guest.qmp).returncode == StatusExit.FROZEN_UNSAFE == 11
    qmp(guest.qmp, "block-job-cancel", {"device": "ha-mirror", "force": True})
    for _ in range(100):  # the cancel completes asynchronously
        got = ask(guest.qmp)
        if got.failover_safe:
            break
    assert (got.state, got.failover_safe, got.reasons) == ("frozen", True, ())


def test_killed_qemu_is_gone_and_safe(own: OwnGuest) -> None:
    guest = own("triple-fault")
    os.kill(guest.pid, signal.SIGKILL)
    os.waitpid(guest.pid, 0)  # our child (the launcher's Popen)
    got = ask(guest.qmp)
    assert (got.state, got.cause, got.failover_safe) == ("gone", "qemu-exited", True)
    assert "refused" in got.reasons[0]
    done = cli_status(guest.qmp, "--json")
    assert done.returncode == StatusExit.GONE == 13
    assert json.loads(done.stdout)["state"] == "gone"


def test_missing_socket_is_missing_not_gone(tmp_path: Path) -> None:
    """A mistyped path is a configuration error, never evidence that QEMU is gone."""
    got = ask(str(tmp_path / "nothing.sock"))
    assert (got.state, got.failover_safe, got.exit_code) == ("missing", False, 14)
    assert got.reasons == (
        f"no QMP socket at {tmp_path / 'nothing.sock'}: a configuration error (check --qmp),"
        " not evidence that QEMU is gone",
    )


def test_held_socket_says_busy_not_hang(lab: Lab) -> None:
    guest = lab.frozen("panic")
    with socket.socket(socket.AF_UNIX) as held:  # another client: QEMU never greets us
        held.connect(guest.qmp)
        held.recv(4096)
        got = ask(guest.qmp, timeout=0.5)
        assert (got.state, got.failover_safe) == ("busy", False)
        assert got.qemu_pid == guest.pid  # found from /proc, so an agent can still end it
        done = cli_status(guest.qmp, "--timeout", "0.5")
        assert done.returncode == StatusExit.BUSY == ExitCode.BUSY
        assert "Traceback" not in done.stderr and "ERROR" not in done.stderr


def test_not_a_socket_is_one_line_qmp_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain-file"
    plain.write_text("x")
    done = cli_status(str(plain))
    assert done.returncode == ExitCode.QMP
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("kvmha-forensics: error:")


def test_missing_qmp_option_is_usage_error() -> None:
    done = subprocess.run([*CLI, "status"], capture_output=True, text=True, check=False)
    assert done.returncode == ExitCode.USAGE
