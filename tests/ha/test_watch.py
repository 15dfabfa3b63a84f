"""watch on real lab guests: signal first, then capture, analysis and the report hook; many
guests at once, socket churn, hooks that fail or hang, and a clean SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.lab import launcher
from tests.conftest import DEBUGINFO, Lab
from tests.ha.conftest import OwnGuest, qmp

pytestmark = pytest.mark.lab
CLI = [sys.executable, "-m", "kvmha_forensics"]
WAIT = 120.0  # an upper bound on waiting for a record, not a speed requirement

HOOK = textwrap.dedent("""\
    import json, os, sys, time
    log, mode = sys.argv[1], sys.argv[2]
    env = {k: v for k, v in os.environ.items() if k.startswith("KVMHA_")}
    with open(log, "a") as f:
        f.write(json.dumps({"env": env, "stdin": json.loads(sys.stdin.read())}) + "\\n")
    if mode == "fail":
        sys.exit(3)
    if mode == "hang":
        time.sleep(60)
""")

Record = dict[str, object]


class Watch:
    """A ``kvmha-forensics watch`` process and the JSON records it prints."""

    def __init__(self, err: Path, *args: str) -> None:
        self._err = err
        fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.proc = subprocess.Popen(
                [*CLI, "-v", "watch", "--poll", "0.2", "--debuginfo-dir", str(DEBUGINFO), *args],
                stdout=subprocess.PIPE, stderr=fd, text=True,
            )  # fmt: skip
        finally:
            os.close(fd)
        self.records: list[Record] = []
        self._lines: queue.Queue[Record | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def wait(self, match: Callable[[Record], bool], what: str) -> Record:
        """The first record (seen or to come) that matches; fail with all records if none."""
        for record in self.records:
            if match(record):
                return record
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            try:
                record = self._lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if record is None:
                break
            self.records.append(record)
            if match(record):
                return record
        got = json.dumps(self.records, indent=1)
        pytest.fail(f"no {what} record; got {got}\nstderr:\n{self.stderr}")

    @property
    def stderr(self) -> str:
        return self._err.read_text()

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=WAIT)
        while (record := self._lines.get(timeout=5)) is not None:
            self.records.append(record)
        return self.proc.returncode, self.stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Callable[..., Watch]]:
    started: list[Watch] = []

    def start(*args: str) -> Watch:
        started.append(Watch(tmp_path / f"watch-{len(started)}.err", *args))
        return started[-1]

    yield start
    for w in started:
        w.kill()


def hook_cmd(tmp_path: Path, mode: str = "ok") -> tuple[str, Path]:
    script, log = tmp_path / "hook.py", tmp_path / f"hook-{mode}.jsonl"
    script.write_text(HOOK)
    return f"{sys.executable} {script} {log} {mode}", log


def hook_calls(log: Path) -> list[dict[str, dict[str, object]]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def kind(k: str, guest: str | None = None, **fields: object) -> Callable[[Record], bool]:
    def match(r: Record) -> bool:
        return (r["kind"] == k and (guest is None or r["guest"] == guest)
                and all(r.get(f) == v for f, v in fields.items()))  # fmt: skip

    return match


def frozen_signals(w: Watch, guest: str) -> list[Record]:
    return [r for r in w.records if kind("signal", guest, state="frozen")(r)]


def test_watch_many_guests_signal_capture_analyze_report(
    own: OwnGuest, watch: Callable[..., Watch], tmp_path: Path
) -> None:
    root, out = tmp_path / "g", tmp_path / "bundles"
    root.mkdir()
    with socket.socket(socket.AF_UNIX) as mute:  # a socket that never greets: its trouble
        mute.bind(str(root / "mute.sock"))  # must not stall the other guests
        mute.listen()
        hook, log = hook_cmd(tmp_path)
        w = watch("--socket-dir", str(root), "--out", str(out), "--hook", hook)
        panic = own("panic", root / "a")
        assert Path(panic.qmp).parent == root / "a"
        name = "kvmha-lab-panic"
        signal_rec = w.wait(kind("signal", name, state="frozen"), "panic signal")
        assert (signal_rec["cause"], signal_rec["failover_safe"]) == ("guest-panicked", True)
        assert signal_rec["qemu_pid"] == panic.pid
        captured = w.wait(kind("capture", name), "panic capture")
        assert captured["status"] == "complete", captured
        bundle = Path(str(captured["bundle"]))
        assert Bundle.open(bundle).verify() == []
        analysis = w.wait(kind("analysis", name), "panic analysis")
        assert analysis["status"] == "ok", analysis
        verdict = analysis["verdict"]
        assert isinstance(verdict, dict) and verdict["cause"] == "guest-panic"
        w.wait(kind("hook", name, phase="report"), "report hook")
        # the watcher keeps watching: a second guest freezes later and is handled too
        fault = own("triple-fault", root / "b")
        name2 = "kvmha-lab-triple-fault"
        signal2 = w.wait(kind("signal", name2, state="frozen"), "triple-fault signal")
        assert signal2["cause"] in ("triple-fault", "shutdown")  # before/after connecting
        assert w.wait(kind("capture", name2), "triple-fault capture")["status"] == "complete"
        w.wait(kind("hook", name2, phase="report"), "report hook 2")
        # QEMU killed with no event: gone, and safe since the process is dead
        os.kill(panic.pid, signal.SIGKILL)
        gone = w.wait(kind("signal", name, state="gone"), "gone signal")
        assert (gone["failover_safe"], gone["qemu_pid"]) == (True, panic.pid)
        os.kill(fault.pid, 0)  # the other QEMU is still up (raises if not)...
        assert not [r for r in w.records if kind("signal", name2, state="gone")(r)]  # and not gone
        mute_path = str(root / "mute.sock")
        unreachable = w.wait(kind("state", None, state="unreachable", qmp=mute_path), "mute")
        assert "no QMP greeting" in str(unreachable["detail"])
        code, err = w.stop()
    assert code == 0, err
    assert "Traceback" not in err
    # each freeze signaled once (the lab's two sockets per QEMU are watched once, by pid)
    assert len(frozen_signals(w, name)) == 1 and len(frozen_signals(w, name2)) == 1
    # in order: signal, capture, analysis, for each guest
    for guest in (name, name2):
        kinds = [r["kind"] for r in w.records if r.get("guest") == guest]
        assert kinds.index("signal") < kinds.index("capture") < kinds.index("analysis")
    # the hook: the signal, then the report, each with env vars and the same JSON on stdin
    calls = [c for c in hook_calls(log) if c["stdin"]["guest"] == name]
    assert [c["env"]["KVMHA_KIND"] for c in calls] == ["signal", "report", "signal"]
    first, report, lost = calls
    assert first["stdin"] == signal_rec
    env = first["env"]
    assert (env["KVMHA_GUEST"], env["KVMHA_STATE"], env["KVMHA_CAUSE"]) == (
        name, "frozen", "guest-panicked",
    )  # fmt: skip
    assert (env["KVMHA_FAILOVER_SAFE"], env["KVMHA_REASONS"]) == ("1", "")
    assert env["KVMHA_QEMU_PID"] == str(panic.pid)
    assert report["env"]["KVMHA_BUNDLE"] == str(bundle)
    assert report["env"]["KVMHA_BUNDLE_STATUS"] == "complete"
    assert report["env"]["KVMHA_VERDICT_CAUSE"] == "guest-panic"
    assert report["stdin"]["verdict_signature"] == verdict["signature"]
    assert (lost["env"]["KVMHA_STATE"], lost["env"]["KVMHA_FAILOVER_SAFE"]) == ("gone", "1")


@pytest.mark.parametrize("mode", ["fail", "hang"])
def test_failing_or_hanging_hook_is_logged_not_fatal(
    lab: Lab, watch: Callable[..., Watch], tmp_path: Path, mode: str
) -> None:
    guest = lab.frozen("panic")
    hook, log = hook_cmd(tmp_path, mode)
    w = watch("--qmp", guest.qmp_spare, "--out", str(tmp_path / "b"), "--memory-format", "none",
              "--no-analyze", "--hook", hook, "--hook-timeout", "1")  # fmt: skip
    signal_rec = w.wait(kind("signal", state="frozen"), "signal")
    assert signal_rec["detected_by"] == "connect"  # it was frozen before the watch began
    ran = w.wait(kind("hook", phase="signal"), "signal hook")
    if mode == "fail":
        assert (ran["returncode"], ran["timed_out"]) == (3, False)
    else:
        assert ran["timed_out"] is True
    assert w.wait(kind("capture"), "capture")["status"] == "complete"
    w.wait(kind("hook", phase="report"), "report hook")
    assert w.proc.poll() is None  # still watching
    code, err = w.stop()
    assert code == 0, err
    assert len(hook_calls(log)) == 2
    assert f"hook {sys.executable} (signal)" in err


def test_sigterm_finishes_capture_in_flight_incomplete(
    own: OwnGuest, watch: Callable[..., Watch], tmp_path: Path
) -> None:
    guest = own("panic", memory_mb=2048)  # a 2 GiB ELF dump takes a second or more
    out = tmp_path / "b"
    argv = ("--no-analyze", "--grace", "0", "--memory-source", "dump")
    w = watch("--qmp", guest.qmp_spare, "--out", str(out), *argv)
    w.wait(kind("signal", state="frozen"), "signal")
    # SIGTERM only once QEMU is writing the dump: the capture is then surely in flight
    end = time.monotonic() + WAIT
    while not any(p.stat().st_size for p in out.glob(".*.partial-*/memory.elf")):
        assert time.monotonic() < end, "the capture never started its dump"
        time.sleep(0.005)
    code, err = w.stop()
    assert code == 0, err
    captured = w.wait(kind("capture"), "capture")
    assert captured["status"] == "incomplete", captured
    (memory,) = [str(r) for r in captured["reasons"] if str(r).startswith("memory:")]  # type: ignore[attr-defined]
    assert "--timeout" not in memory and "--grace 0s after the watcher was stopped" in memory
    manifest = Bundle.open(Path(str(captured["bundle"]))).manifest
    assert manifest.status == "incomplete"
    assert not [p for p in out.iterdir() if ".partial" in p.name]


@pytest.mark.parametrize("poll", ["0.2", "3600"])
def test_survives_qemu_restart_on_the_same_socket(
    own: OwnGuest, watch: Callable[..., Watch], tmp_path: Path, poll: str
) -> None:
    """Also with a poll that never comes (3600 s): the connection's end wakes the watcher,
    and reconnecting backs off on its own clock."""
    directory = tmp_path / "g"
    first = own("triple-fault", directory)
    w = watch("--qmp", first.qmp_spare, "--memory-format", "none", "--poll", poll)
    w.wait(kind("signal", state="frozen", qemu_pid=first.pid), "first signal")
    launcher.down(directory)
    w.wait(kind("signal", state="gone", qemu_pid=first.pid), "gone")
    second = own("triple-fault", directory)
    assert second.qmp_spare == first.qmp_spare and second.pid != first.pid
    w.wait(kind("signal", state="frozen", qemu_pid=second.pid), "signal after restart")
    code, err = w.stop()
    assert code == 0, err


# QEMU's HMP ``mce``: bank 1, status VAL|UC|EN|MISCV|ADDRV|PCC, MCG_STATUS.MCIP. The lab's
# cloud kernel has no machine-check support, so QEMU cannot deliver it: it reports
# MEMORY_FAILURE (recipient guest, action reset) and resets the guest, which the HA actions
# keep frozen in runstate shutdown, as a triple fault would be.
MCE = "mce 0 1 0xbe0000000000009f 0x4 0x1234000 0x86"


def test_host_memory_error_is_told_from_a_triple_fault(
    own: OwnGuest, watch: Callable[..., Watch], tmp_path: Path
) -> None:
    guest = own("running", tmp_path / "g")
    w = watch("--qmp", guest.qmp, "--out", str(tmp_path / "bundles"))
    name = "kvmha-lab-running"
    w.wait(kind("state", name, state="running"), "running state")
    qmp(guest.qmp_spare, "human-monitor-command", {"command-line": MCE})
    frozen = w.wait(kind("signal", name, state="frozen"), "frozen signal")
    assert (frozen["cause"], frozen["failover_safe"]) == ("host-memory-error", True), frozen
    captured = w.wait(kind("capture", name), "capture")
    assert captured["status"] == "complete", captured
    events = Bundle.open(Path(str(captured["bundle"]))).read_json("freeze")["events"]  # type: ignore[index]
    failure = next(e for e in events if e["event"] == "MEMORY_FAILURE")
    assert failure["data"]["recipient"] == "guest" and failure["data"]["action"] == "reset"
    analysis = w.wait(kind("analysis", name), "analysis")
    verdict = analysis["verdict"]
    assert isinstance(verdict, dict) and verdict["cause"] == "host-memory-error", verdict
    assert "host memory error" in str(verdict["summary"]).lower()
    code, err = w.stop()
    assert code == 0 and "Traceback" not in err
