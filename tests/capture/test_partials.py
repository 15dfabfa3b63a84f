"""Partial bundles that dead captures left behind: kept while a capture holds them or while
recent, removed when stale, by ``bundle prune`` and by the next capture into the directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from kvmha_forensics.capture import partials
from kvmha_forensics.capture.bundle import BundleWriter
from tests.capture.test_capture import cli
from tests.conftest import Lab

HOUR = 3600.0


def dead(parent: Path, name: str, idle: float) -> Path:
    """A partial a capture left when it died: its writer gone, its last write ``idle`` s ago."""
    writer = BundleWriter(parent, name)
    writer.write_bytes("console.log", b"half", "console", "a console")
    writer._close()  # the process ended: its descriptors, and so its lock, are gone
    when = time.time() - idle
    for path in (writer.tmp / "console.log", writer.tmp):
        os.utime(path, (when, when))
    return writer.tmp


def test_prune_removes_only_stale_unlocked_partials(tmp_path: Path) -> None:
    stale = dead(tmp_path, "kvmha-vm1-1", idle=2 * HOUR)
    recent = dead(tmp_path, "kvmha-vm1-2", idle=60)
    live = BundleWriter(tmp_path, "kvmha-vm1-3")  # a capture writing now, untouched for hours
    os.utime(live.tmp, (time.time() - 2 * HOUR,) * 2)
    (tmp_path / "kvmha-vm1-0").mkdir()  # a published bundle
    (tmp_path / ".other").mkdir()

    judged = {p.path: p.state for p in partials.prune(tmp_path, HOUR, dry_run=True)}
    assert judged == {stale: "stale", recent: "recent", live.tmp: "in-use"}
    assert stale.exists()  # a dry run removes nothing

    partials.prune(tmp_path, HOUR)
    assert not stale.exists() and recent.exists() and live.tmp.exists()
    partials.prune(tmp_path, 0)  # a lost node's partial, with its node known dead
    assert not recent.exists() and live.tmp.exists()  # a held lock still keeps it
    assert {p.name for p in tmp_path.iterdir()} == {"kvmha-vm1-0", ".other", live.tmp.name}
    live.abandon()


def test_bundle_prune_says_what_it_did(tmp_path: Path) -> None:
    stale = dead(tmp_path, "kvmha-vm1-1", idle=2 * HOUR)
    recent = dead(tmp_path, "kvmha-vm1-2", idle=60)
    done = cli("bundle", "prune", str(tmp_path))
    assert done.returncode == 0, done.stderr
    removed, kept = done.stdout.splitlines()
    assert removed == f"{stale}: removed"
    said = re.fullmatch(rf"{re.escape(str(recent))}: kept \(written (\d+)s ago\)", kept)
    assert said is not None and 60 <= int(said[1]) < HOUR, kept  # 60 s, and the test's own time
    missing = cli("bundle", "prune", str(tmp_path / "missing"))
    assert missing.returncode == 3 and "No such file or directory" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_partial_holding_a_directory_is_kept_and_named(tmp_path: Path) -> None:
    """Bundles are flat: a partial with a directory in it is not a capture's, so it is kept
    (before: prune stopped at it with a wrong "cannot read DIR: Is a directory")."""
    foreign = dead(tmp_path, "kvmha-vm1-1", idle=2 * HOUR)
    (foreign / "sub").mkdir()
    os.utime(foreign / "sub", (time.time() - 2 * HOUR,) * 2)
    os.utime(foreign, (time.time() - 2 * HOUR,) * 2)
    stale = dead(tmp_path, "kvmha-vm1-2", idle=2 * HOUR)
    done = cli("bundle", "prune", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{foreign}: kept (it holds a directory: no capture wrote it)",
        f"{stale}: removed",
    ]
    assert (foreign / "sub").is_dir() and not stale.exists()


def test_a_partial_that_cannot_be_removed_is_named_and_the_rest_pruned(tmp_path: Path) -> None:
    """An immutable file (``chattr +i``: even root cannot unlink it) in a stale partial: that
    partial is named with the reason, the next one still removed, exit 3."""
    stuck = dead(tmp_path, "kvmha-vm1-1", idle=2 * HOUR)
    pinned = stuck / "console.log"
    made = subprocess.run(["chattr", "+i", str(pinned)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"this filesystem has no immutable flag: {made.stderr.strip()}")
    try:
        os.utime(stuck, (time.time() - 2 * HOUR,) * 2)
        stale = dead(tmp_path, "kvmha-vm1-2", idle=2 * HOUR)
        done = cli("bundle", "prune", str(tmp_path))
        assert done.returncode == 3, done.stderr
        assert done.stdout.splitlines() == [
            f"{stuck}: stale, not removed: Operation not permitted",
            f"{stale}: removed",
        ]
        assert "1 stale partial(s)" in done.stderr and "Traceback" not in done.stderr
        assert pinned.exists() and not stale.exists()
    finally:
        subprocess.run(["chattr", "-i", str(pinned)], check=True)


@pytest.mark.lab
def test_the_next_capture_removes_a_stale_partial(lab: Lab, tmp_path: Path) -> None:
    stale = dead(tmp_path, "kvmha-vm1-1", idle=2 * HOUR)
    recent = dead(tmp_path, "kvmha-vm1-2", idle=60)
    guest = lab.frozen("triple-fault")
    done = cli("capture", "--json", "--qmp", guest.qmp, "--out", str(tmp_path),
               "--memory-format", "none")  # fmt: skip
    assert done.returncode == 0, done.stderr
    bundle = Path(json.loads(done.stdout.splitlines()[-1])["bundle"])
    assert sorted(tmp_path.iterdir()) == sorted([bundle, recent])
    assert not stale.exists()
