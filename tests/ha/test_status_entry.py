"""The console script's quick ``status`` path says exactly what the typer command says."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import Lab

SCRIPT = str(Path(sys.executable).with_name("kvmha-forensics"))  # kvmha_forensics.entry:main
TYPER = [sys.executable, "-c", "from kvmha_forensics.cli import main; main()"]  # the typer app


def both(*args: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    run = [subprocess.run(argv, capture_output=True, text=True, check=False)
           for argv in ([SCRIPT, "status", *args], [*TYPER, "status", *args])]  # fmt: skip
    return run[0], run[1]


def without_timing(text: str) -> object:
    doc = json.loads(text)
    assert isinstance(doc, dict)
    doc.pop("seconds")
    return doc


@pytest.mark.lab
def test_quick_path_matches_the_typer_command(lab: Lab) -> None:
    guest = lab.frozen("panic")
    quick, full = both("--qmp", guest.qmp_spare)
    assert (quick.returncode, quick.stdout) == (full.returncode, full.stdout)
    assert (quick.returncode, quick.stdout) == (10, "frozen (guest-panicked), failover-safe\n")
    quick, full = both("--qmp", guest.qmp_spare, "--json")
    assert quick.returncode == full.returncode == 10
    assert without_timing(quick.stdout) == without_timing(full.stdout)


def test_quick_path_matches_on_a_missing_socket(tmp_path: Path) -> None:
    quick, full = both("--qmp", str(tmp_path / "none.sock"))
    assert (quick.returncode, quick.stdout) == (full.returncode, full.stdout)
    assert quick.returncode == 14 and quick.stdout.startswith("missing")


@pytest.mark.parametrize(
    "args", [(), ("--qmp",), ("--qmp", "x", "--timeout", "abc"), ("--qmp", "x", "--bogus")]
)
def test_bad_usage_goes_to_the_typer_command(args: tuple[str, ...]) -> None:
    quick, full = both(*args)
    assert quick.returncode == full.returncode == 2
    assert quick.stderr == full.stderr


def test_a_peer_quoted_in_the_error_is_one_safe_line(tmp_path: Path) -> None:
    """A socket that greets with escape codes and a line break: the error quotes its bytes,
    on one line, without the raw escapes, the same on both paths."""
    path = str(tmp_path / "evil.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(2)

    def greet() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            conn.sendall(b"\x1b]0;owned\x07\x1b[31mEVIL\r\nmore\n")
            conn.close()

    thread = threading.Thread(target=greet, daemon=True)
    thread.start()
    try:
        quick, full = both("--qmp", path)
    finally:
        server.close()
    assert (quick.returncode, quick.stderr) == (full.returncode, full.stderr)
    assert quick.returncode == 5 and quick.stderr.count("\n") == 1, quick.stderr
    assert "\x1b" not in quick.stderr and "EVIL" in quick.stderr
