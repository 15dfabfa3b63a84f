"""Guest assets when the Debian archive cannot be reached, and the initramfs writer."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from kvmha_forensics.errors import ExitCode
from kvmha_forensics.lab import newc

FAKE_APT = """#!/bin/sh
case "$1" in
  depends) echo "linux-image-cloud-amd64"; echo "  Depends: linux-image-9.9.9-1-cloud-amd64" ;;
  download) echo "E: Failed to fetch http://deb.debian.org/... Temporary failure resolving" >&2
            exit 100 ;;
esac
"""


def test_unreachable_archive_says_what_to_fetch_by_hand(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("apt-get", "apt-cache"):
        tool = bin_dir / name
        tool.write_text(FAKE_APT)
        tool.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "KVMHA_CACHE_DIR": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "kvmha_forensics", "lab", "fetch"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == ExitCode.ENVIRONMENT, done.stderr
    assert "linux-image-9.9.9-1-cloud-amd64" in done.stderr
    assert str(tmp_path / "cache" / "debs") in done.stderr
    assert "Temporary failure resolving" in done.stderr and "Traceback" not in done.stderr


def test_newc_archive_unpacks_with_cpio(tmp_path: Path) -> None:
    source = tmp_path / "hello"
    source.write_bytes(b"#!/bin/sh\necho hi\n")
    archive = tmp_path / "a.cpio"
    with archive.open("wb") as out:
        newc.write(out, [newc.directory("bin"), newc.file("bin/hello", source, 0o755)])
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], stdin=archive.open("rb"), cwd=dest, check=True)
    unpacked = dest / "bin" / "hello"
    assert unpacked.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(unpacked.stat().st_mode) == 0o755
