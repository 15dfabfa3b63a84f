"""The console script's quick ``capture`` and ``analyze`` paths (argparse, no typer) say exactly
what the typer commands say, and leave what they do not take to them."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import typer.main

from kvmha_forensics.cli import app
from kvmha_forensics.cli_quick import analyze_parser, capture_parser
from tests.conftest import DEBUGINFO, Lab

SCRIPT = str(Path(sys.executable).with_name("kvmha-forensics"))  # kvmha_forensics.entry:main
TYPER = [sys.executable, "-c", "from kvmha_forensics.cli import main; main()"]  # the typer app


def both(*args: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    run = [subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
           for argv in ([SCRIPT, *args], [*TYPER, *args])]  # fmt: skip
    return run[0], run[1]


def steps(out: str) -> list[object]:
    """The JSON lines of ``capture --json`` without the bundle's (new) name."""
    lines = [json.loads(line) for line in out.splitlines()]
    lines[-1].pop("bundle")
    return lines


def untimed(value: object) -> object:
    """A report without its timings (``seconds``), which differ from run to run."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


@pytest.mark.lab
def test_quick_capture_matches_the_typer_command(lab: Lab, tmp_path: Path) -> None:
    guest = lab.frozen("panic")
    out = ("--out", str(tmp_path), "--memory-format", "none")
    quick, full = both("capture", "--qmp", guest.qmp_spare, *out, "--json")
    assert quick.returncode == full.returncode == 0
    assert steps(quick.stdout) == steps(full.stdout)
    quick, full = both("capture", "--qmp", guest.qmp_spare, *out)
    assert (quick.returncode, quick.stderr) == (full.returncode, full.stderr)
    assert Path(quick.stdout.strip()).parent == Path(full.stdout.strip()).parent == tmp_path


@pytest.mark.lab
def test_quick_analyze_matches_the_typer_command(lab: Lab, tmp_path: Path) -> None:
    bundle = str(lab.bundle("panic"))
    extra = ("--debuginfo-dir", str(DEBUGINFO))
    quick, full = both("analyze", bundle, *extra, "--format", "json")
    assert quick.returncode == full.returncode == 0
    assert untimed(json.loads(quick.stdout)) == untimed(json.loads(full.stdout))
    assert json.loads(quick.stdout)["verdict"]["cause"] == "guest-panic"
    quick, full = both("analyze", "--format", "markdown", *extra, bundle,
                       "--output", str(tmp_path / "q.md"))  # fmt: skip
    assert quick.returncode == full.returncode == 0
    assert (tmp_path / "q.md").read_text().startswith("#")


@pytest.mark.parametrize(
    "args",
    [
        ("capture",),
        ("capture", "--qmp", "x", "--timeout", "abc"),
        ("capture", "--qmp", "x", "--timeout", "nan"),
        ("capture", "--qmp", "x", "--timeout", "0.5"),
        ("capture", "--qmp", "x", "--memory-format", "raw"),
        ("capture", "--qmp", "x", "--bogus"),
        ("capture", "--qmp", "x", "--domain", "y"),
        ("capture", "--qmp", "x", "--connect", "qemu:///system"),
        ("capture", "--qmp"),
        ("capture", "--qm", "x"),
        ("analyze", "a", "b"),
        ("analyze", "x", "--format", "html"),
        ("analyze", "x", "--cpu-vendor", "via"),
        ("analyze", "--analyzer"),
    ],
)
def test_bad_usage_goes_to_the_typer_command(args: tuple[str, ...]) -> None:
    quick, full = both(*args)
    assert quick.returncode == full.returncode == 2
    assert quick.stderr == full.stderr


@pytest.mark.parametrize("args", [("capture", "--qmp", "{missing}"), ("analyze", "{missing}")])
def test_errors_end_in_one_line_and_the_same_code(args: tuple[str, ...], tmp_path: Path) -> None:
    argv = [a.format(missing=tmp_path / "none") for a in args]
    quick, full = both(*argv)
    assert (quick.returncode, quick.stdout, quick.stderr) == (full.returncode, full.stdout,
                                                              full.stderr)  # fmt: skip
    assert quick.returncode not in (0, 1, 2) and quick.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("name", "parser"), [("capture", capture_parser), ("analyze", analyze_parser)]
)
def test_quick_parsers_take_exactly_the_typer_commands_parameters(
    name: str, parser: Callable[[], argparse.ArgumentParser]
) -> None:
    """Same names and same defaults: an option added to or changed in the typer command
    and not here is a failure here, not a quick path that quietly behaves otherwise."""
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    typer_side = {max(p.opts, key=len): p.default for p in command.params}
    quick_side = {
        max(a.option_strings, key=len) if a.option_strings else a.dest: a.default
        for a in parser()._actions
    }
    assert quick_side == typer_side
