"""The console script's quick ``status`` path says exactly what the typer command says."""

from __future__ import annotations

import json
import subprocess
import sys
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
    "args", [(), ("--qmp", "x", "--timeout", "abc"), ("--qmp", "x", "--bogus")]
)
def test_bad_usage_goes_to_the_typer_command(args: tuple[str, ...]) -> None:
    quick, full = both(*args)
    assert quick.returncode == full.returncode == 2
    assert quick.stderr == full.stderr
