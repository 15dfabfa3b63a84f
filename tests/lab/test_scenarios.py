"""Every lab scenario comes up in its frozen state, with its event, and stays there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kvmha_forensics.errors import ExitCode
from kvmha_forensics.lab import scenarios
from tests.conftest import Lab, runstate

CLI = [sys.executable, "-m", "kvmha_forensics"]


@pytest.mark.lab
@pytest.mark.parametrize("name", [s.name for s in scenarios.SCENARIOS])
def test_scenario_reaches_its_state(lab: Lab, name: str) -> None:
    scenario = scenarios.get(name)
    guest = lab.frozen(name)
    assert runstate(guest.qmp_spare) == scenario.runstate
    seen = [e["event"] for e in guest.events]
    if scenario.event:
        assert scenario.event in seen
    if scenario.needs_kvm:
        assert guest.accel == "kvm"
    state = json.loads((Path(guest.dir) / "lab.json").read_text())
    assert state["pid"] == guest.pid and state["runstate"] == scenario.runstate
    if scenario.guest == "linux":
        assert f"KVMHA-LAB: ready scenario={name}" in Path(guest.serial).read_text()


@pytest.mark.lab
def test_io_error_scenarios_say_nospace_only_for_enospc(lab: Lab) -> None:
    def nospace(name: str) -> list[object]:
        events = lab.frozen(name).events
        return [e["data"].get("nospace") for e in events if e["event"] == "BLOCK_IO_ERROR"]  # type: ignore[union-attr]

    assert set(nospace("enospc")) == {True}
    assert set(nospace("io-error")) == {False}


@pytest.mark.lab
def test_smp_panic_has_two_vcpus(lab: Lab) -> None:
    guest = lab.frozen("smp-panic")
    assert guest.vcpus == 2
    assert "CPU: 1 PID" in Path(guest.serial).read_text()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, check=False)


def test_unknown_scenario_lists_the_valid_ones() -> None:
    done = run_cli("lab", "up", "no-such-thing")
    assert done.returncode == ExitCode.BAD_INPUT
    assert "panic" in done.stderr and "triple-fault" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_missing_qemu_names_the_package(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}
    done = run_cli("lab", "up", "panic", "--dir", str(tmp_path / "g"), env=env)
    assert done.returncode == ExitCode.ENVIRONMENT
    assert "apt-get install qemu-system-x86" in done.stderr


def test_unwritable_dir_is_refused(tmp_path: Path) -> None:
    done = run_cli("lab", "up", "panic", "--dir", "/proc/kvmha-nope")
    assert done.returncode == ExitCode.BAD_INPUT
    assert "/proc/kvmha-nope" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.lab
def test_second_guest_in_the_same_dir_is_refused(lab: Lab) -> None:
    guest = lab.frozen("panic")
    done = run_cli("lab", "up", "panic", "--dir", guest.dir)
    assert done.returncode == ExitCode.BUSY
    assert "already up" in done.stderr
    assert runstate(guest.qmp_spare) == "guest-panicked"


@pytest.mark.lab
def test_lab_down_ends_only_that_guest(lab: Lab) -> None:
    first, second = lab.up("triple-fault"), lab.up("triple-fault")
    done = run_cli("lab", "down", first.dir)
    assert done.returncode == 0, done.stderr
    assert (
        not Path(f"/proc/{first.pid}").exists()
        or "Z" in Path(f"/proc/{first.pid}/stat").read_text().split()[2]
    )
    assert runstate(second.qmp_spare) == "shutdown"


def test_long_dir_keeps_sockets_under_the_limit(tmp_path: Path) -> None:
    from kvmha_forensics.lab.launcher import SUN_PATH_MAX, _socket_dir

    deep = tmp_path / ("d" * 90) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(str(_socket_dir(deep) / "qmp-spare.sock")) <= SUN_PATH_MAX


def test_launch_survives_a_client_that_takes_the_qmp_socket_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watcher scanning the guest's directory may connect to ``qmp.sock`` before the
    launcher does; QEMU then greets only that client, and the launcher uses the spare."""
    import asyncio
    import socket

    from kvmha_forensics.lab import launcher
    from tests.conftest import require_kvm

    scenario = scenarios.get("triple-fault")
    require_kvm(scenario)
    held: list[socket.socket] = []
    listening = launcher._wait_socket

    async def listening_then_taken(
        path: Path, proc: subprocess.Popen[bytes], deadline: float
    ) -> None:  # the other client connects in between, and QEMU greets it: it holds the monitor
        await listening(path, proc, deadline)
        sock = socket.socket(socket.AF_UNIX)
        held.append(sock)
        sock.connect(str(path))
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b'{"QMP"')

    monkeypatch.setattr(launcher, "_wait_socket", listening_then_taken)
    try:
        guest = asyncio.run(launcher.up(scenario, tmp_path))
        try:
            assert held and runstate(guest.qmp_spare) == scenario.runstate
        finally:
            launcher.down(tmp_path)
    finally:
        for sock in held:
            sock.close()
