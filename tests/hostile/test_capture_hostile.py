"""capture against planted links, special files and a full disk, on real lab guests
(issue 11, items 2, 4, 5, 6 and the serial-file link)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Lab
from tests.hostile.hostile import cli, one_line

pytestmark = pytest.mark.lab
BAD_INPUT, INCOMPLETE = 3, 7
PAGE = 4096
NO_XDG = {"XDG_RUNTIME_DIR": ""}


def capture(qmp: str, out: Path, *args: str, env: dict[str, str] | None = None,
            memory: str = "none") -> subprocess.CompletedProcess[str]:  # fmt: skip
    return cli("capture", "--qmp", qmp, "--out", str(out), "--memory-format", memory,
               "--json", *args, env={**NO_XDG, **(env or {})}, timeout=180)  # fmt: skip


def result(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    last: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return last


def no_partials(out: Path) -> bool:
    return not [p for p in out.iterdir() if ".partial" in p.name]


def test_qemu_log_fifo_and_device_are_refused_not_read(lab: Lab, tmp_path: Path) -> None:
    """Item 2: --qemu-log FIFO hung (and --timeout did not end it); /dev/zero grew without
    bound. Now: an incomplete bundle that says why, no hidden partial left."""
    guest = lab.frozen("triple-fault")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for special, what in ((fifo, "FIFO"), (Path("/dev/zero"), "character device")):
        out = tmp_path / f"out-{what[0]}"
        done = capture(guest.qmp, out, "--qemu-log", str(special), "--timeout", "20")
        assert done.returncode == INCOMPLETE, done.stderr[-2000:]
        reasons = result(done)["reasons"]
        assert any("qemu-log" in r and what in r for r in reasons), reasons  # type: ignore[attr-defined]
        assert no_partials(out)


@contextlib.contextmanager
def tmpfs(where: Path, size: int) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
                   check=True)  # fmt: skip
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def pages_of(bundle: Path) -> int:
    """Pages a bundle's artifacts take on tmpfs, its manifest left out (blocks, not sizes: a
    directly read core has holes where guest pages are zero)."""
    return sum(math.ceil(p.stat().st_blocks * 512 / PAGE) for p in bundle.iterdir()
               if p.name != "manifest.json")  # fmt: skip


def fill_leaving(fs: Path, pages: int) -> None:
    st = os.statvfs(fs)
    with (fs / "filler").open("wb") as f:
        f.write(b"\xff" * ((st.f_bavail - pages) * st.f_frsize))


@pytest.mark.parametrize("memory", ["none", "elf"])
def test_no_space_for_the_manifest(lab: Lab, tmp_path: Path, memory: str) -> None:
    """Item 4: ENOSPC on the manifest gave 'internal error: OSError' and left the hidden
    partial. Now: with a dump, it is dropped and the bundle is incomplete (exit 7); without
    one, exit 3 in one line and nothing left behind."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    guest = lab.frozen("triple-fault")
    with tmpfs(tmp_path / "small", 320 << 20) as fs:
        first = capture(guest.qmp, fs / "probe", memory=memory)
        assert first.returncode == 0, first.stderr[-2000:]
        probe = Path(str(result(first)["bundle"]))
        needed = pages_of(probe)
        subprocess.run(["rm", "-rf", str(fs / "probe")], check=True)
        out = fs / "out"
        out.mkdir(mode=0o700)
        fill_leaving(fs, needed)  # every artifact fits; the manifest does not
        done = capture(guest.qmp, out, memory=memory)
        assert "internal error" not in done.stderr, done.stderr
        assert no_partials(out), list(out.iterdir())
        if memory == "elf":
            assert done.returncode == INCOMPLETE, done.stderr[-2000:]
            bundle = Path(str(result(done)["bundle"]))
            doc = json.loads((bundle / "manifest.json").read_text())
            assert doc["status"] == "incomplete"
            assert any("No space left" in r for r in doc["reasons"]), doc["reasons"]
            assert not (bundle / "memory.elf").exists()
        else:
            assert done.returncode == BAD_INPUT, done.stderr[-2000:]
            assert "No space left" in one_line(done.stderr)
            assert list(out.iterdir()) == []


def test_planted_links_at_the_final_bundle_name(lab: Lab, tmp_path: Path) -> None:
    """Item 5: a dangling link at the predictable final name made capture fail with
    NotADirectoryError and strand the bundle as a hidden partial."""
    guest = lab.frozen("triple-fault")
    out = tmp_path / "out"
    out.mkdir()
    decoy = tmp_path / "decoy"
    now = time.time()
    for second in range(-2, 90):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now + second))
        (out / f"kvmha-lab-triple-fault-{stamp}").symlink_to(decoy / stamp)
    done = capture(guest.qmp, out)
    assert done.returncode == 0, done.stderr[-2000:]
    bundle = Path(str(result(done)["bundle"]))
    assert bundle.parent == out and stat.S_ISDIR(bundle.lstat().st_mode)
    assert not decoy.exists() and no_partials(out)
    assert sum(p.is_symlink() for p in out.iterdir()) == 92  # the links are left alone


def test_lock_is_not_a_predictable_file_in_tmp(lab: Lab, tmp_path: Path) -> None:
    """Item 6: the lock was /tmp/kvmha-forensics-capture-PID.lock, opened with O_CREAT and
    following links: a planted link made root create a file; a held lock blocked captures; a
    directory of that name broke them."""
    guest = lab.frozen("triple-fault")
    old = Path(f"/tmp/kvmha-forensics-capture-{guest.pid}.lock")
    victim = tmp_path / "created-by-root"
    try:
        old.unlink(missing_ok=True)
        old.symlink_to(victim)
        done = capture(guest.qmp, tmp_path / "a")
        assert done.returncode == 0, done.stderr[-2000:]
        assert not victim.exists()
        old.unlink()
        old.mkdir()
        done = capture(guest.qmp, tmp_path / "b")
        assert done.returncode == 0, done.stderr[-2000:]
        old.rmdir()
        fd = os.open(old, os.O_RDWR | os.O_CREAT, 0o666)  # another user holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            done = capture(guest.qmp, tmp_path / "c")
            assert done.returncode == 0, done.stderr[-2000:]
        finally:
            os.close(fd)
    finally:
        if old.is_dir() and not old.is_symlink():
            old.rmdir()
        else:
            old.unlink(missing_ok=True)


def test_lock_directory_is_private_and_never_followed(lab: Lab, tmp_path: Path) -> None:
    """Item 6: locks live in a 0700 directory of the user's own (KVMHA_RUNTIME_DIR here, for
    the test); a directory others can write, a link in its place, or a link planted as the
    lock file are refused in one line, and nothing is created through them."""
    guest = lab.frozen("triple-fault")
    run = tmp_path / "run"
    env = {"KVMHA_RUNTIME_DIR": str(run)}
    done = capture(guest.qmp, tmp_path / "a", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    st = run.lstat()
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.geteuid()
    (lock,) = run.iterdir()
    assert str(guest.pid) in lock.name
    victim = tmp_path / "victim"
    lock.unlink()
    lock.symlink_to(victim)
    done = capture(guest.qmp, tmp_path / "b", env=env)
    assert done.returncode == BAD_INPUT and str(lock) in one_line(done.stderr)
    assert not victim.exists()
    lock.unlink()
    run.chmod(0o777)
    done = capture(guest.qmp, tmp_path / "c", env=env)
    assert done.returncode == BAD_INPUT and "0777" in one_line(done.stderr)
    run.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    run.symlink_to(elsewhere)
    done = capture(guest.qmp, tmp_path / "d", env=env)
    assert done.returncode == BAD_INPUT and str(run) in one_line(done.stderr)
    assert list(elsewhere.iterdir()) == []


def test_a_swapped_serial_file_link_is_not_followed(lab: Lab, tmp_path: Path) -> None:
    """The serial console is read through QEMU's own descriptor: a link planted at its path
    (here to a root-only file) is refused, and its target never enters the bundle."""
    guest = lab.up("triple-fault", "-serial")
    try:
        serial = Path(guest.serial)
        secret = tmp_path / "shadow"
        secret.write_text("root:SECRET-HASH:19000:0:99999:7:::\n")
        secret.chmod(0o600)
        serial.rename(serial.with_name("console.moved"))  # QEMU keeps writing to it
        serial.symlink_to(secret)
        done = capture(guest.qmp, tmp_path / "out")
        assert done.returncode in (0, INCOMPLETE), done.stderr[-2000:]
        bundle = Path(str(result(done)["bundle"]))
        for artifact in bundle.iterdir():
            assert b"SECRET-HASH" not in artifact.read_bytes(), artifact.name
        steps = json.loads((bundle / "manifest.json").read_text())["steps"]
        console = next(s for s in steps if s["name"] == "console")
        assert console["status"] == "skipped" and "not the file QEMU" in console["detail"]
        serial.unlink()
        serial.with_name("console.moved").rename(serial)
        done = capture(guest.qmp, tmp_path / "out2")  # the file QEMU has open is read
        bundle = Path(str(result(done)["bundle"]))
        assert (bundle / "console.log").read_bytes() == serial.read_bytes()
    finally:
        lab.down(guest)
