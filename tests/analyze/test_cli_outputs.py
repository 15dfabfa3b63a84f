"""The README's demo, and analyze's report files."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEBUGINFO, Lab

CLI = [sys.executable, "-m", "kvmha_forensics"]


@pytest.mark.lab
def test_demo_boots_captures_analyzes_and_ends_the_guest(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "demo", "--scenario", "triple-fault", "--dir", str(tmp_path), "--format", "json"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"]["cause"] == "triple-fault"
    assert "4/4 shutting the guest down" in done.stderr
    assert not (tmp_path / "guest" / "lab.json").exists()  # lab down ran
    (bundle,) = (tmp_path / "bundles").iterdir()
    assert report["target"]["path"] == str(bundle)


@pytest.mark.lab
def test_output_file_is_private_and_holds_the_report(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    done = subprocess.run(
        [*CLI, "analyze", str(lab.bundle("panic")), "--debuginfo-dir", str(DEBUGINFO),
         "--format", "markdown", "--output", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text().startswith("## kvmha-forensics: guest-panic")


@pytest.mark.lab
def test_drgn_loads_only_the_plugins_the_user_names(lab: Lab, tmp_path: Path) -> None:
    marker = tmp_path / "plugin-ran"
    plugin = tmp_path / "plugin.py"
    plugin.write_text(f"def drgn_prog_set(prog):\n    open({str(marker)!r}, 'w').close()\n")
    argv = [sys.executable, "-X", "importtime", *CLI[1:], "analyze", str(lab.bundle("panic")),
            "--debuginfo-dir", str(DEBUGINFO)]  # fmt: skip
    plain = subprocess.run([*argv, "--format", "json"], capture_output=True, text=True, check=False)
    assert plain.returncode == 0, plain.stderr
    for installed in ("drgn.commands._builtin", "drgn.commands._crash"):  # drgn's CLI commands
        assert importlib.util.find_spec(installed) is not None  # so their absence below means it
        assert installed not in plain.stderr
    env = {**os.environ, "DRGN_PLUGINS": f"marker={plugin}"}
    named = subprocess.run([*CLI, "analyze", str(lab.bundle("panic")), "--debuginfo-dir",
                            str(DEBUGINFO), "--format", "json"],
                           capture_output=True, text=True, check=False, env=env)  # fmt: skip
    assert named.returncode == 0, named.stderr
    assert marker.exists()
    assert json.loads(named.stdout)["verdict"] == json.loads(plain.stdout)["verdict"]


LOG = Path(__file__).resolve().parents[2] / "fixtures" / "logs" / "emulation-failure-kvm.stderr.log"


def test_analyzer_option_runs_only_the_named_ones() -> None:
    args = [*CLI, "analyze", "--qemu-log", str(LOG), "--format", "json"]
    done = subprocess.run([*args, "--analyzer", "kvm-exit", "--analyzer", "instruction"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [a["name"] for a in report["analyzers"]] == ["kvm-exit", "instruction"]
    assert report["verdict"]["cause"] == "kvm-emulation-failure"
    unknown = subprocess.run([*args, "--analyzer", "nope"], capture_output=True, text=True)
    assert unknown.returncode == 3
    assert "unknown analyzer nope" in unknown.stderr and "kvm-exit" in unknown.stderr
