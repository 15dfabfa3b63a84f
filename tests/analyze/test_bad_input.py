"""analyze on bad input: one clear line or a partial report, a documented exit code,
no traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from kvmha_forensics.analysis import Context, Inputs, Outcome, Requirement, run_all
from kvmha_forensics.errors import ExitCode
from kvmha_forensics.lab import assets
from tests import schemas
from tests.conftest import Lab

CLI = [sys.executable, "-m", "kvmha_forensics", "analyze"]


def analyze(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, check=False)


def one_clean_line(stderr: str) -> bool:
    return "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


def test_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    done = analyze(str(tmp_path))
    assert done.returncode == ExitCode.BAD_INPUT
    assert "not a bundle" in done.stderr and one_clean_line(done.stderr)


def test_a_text_file_is_not_a_vmcore(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    done = analyze(str(text))
    assert done.returncode == ExitCode.BAD_INPUT
    assert "--qemu-log" in done.stderr and one_clean_line(done.stderr)


def test_nothing_to_analyze() -> None:
    done = analyze()
    assert done.returncode == ExitCode.BAD_INPUT and one_clean_line(done.stderr)


def copy_bundle(lab: Lab, name: str, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(lab.bundle(name), target)
    return target


@pytest.mark.lab
def test_corrupted_manifest(lab: Lab, tmp_path: Path) -> None:
    bundle = copy_bundle(lab, "triple-fault", tmp_path)
    (bundle / "manifest.json").write_text('{"format": "kvmha-forensics-bundle", "schema')
    done = analyze(str(bundle))
    assert done.returncode == ExitCode.BAD_INPUT
    assert "manifest.json" in done.stderr and one_clean_line(done.stderr)


@pytest.mark.lab
def test_newer_schema_is_refused_with_what_to_do(lab: Lab, tmp_path: Path) -> None:
    bundle = copy_bundle(lab, "triple-fault", tmp_path)
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["schema_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(doc))
    done = analyze(str(bundle))
    assert done.returncode == ExitCode.BAD_INPUT and "upgrade" in done.stderr


@pytest.mark.lab
def test_truncated_dump_gives_a_partial_report(lab: Lab, tmp_path: Path) -> None:
    bundle = copy_bundle(lab, "panic", tmp_path)
    dump = bundle / "memory.elf"
    with dump.open("r+b") as f:
        f.truncate(dump.stat().st_size // 3)
    done = analyze(str(bundle), "--format", "json")
    assert done.returncode == ExitCode.INCOMPLETE, done.stderr
    report = json.loads(done.stdout)
    schemas.check_report(report)
    assert report["partial"] is True
    assert any("truncated" in p for p in report["problems"])
    assert report["verdict"]["cause"] == "guest-panic"  # the console still tells
    assert "Traceback" not in done.stderr


@pytest.mark.lab
def test_wrong_vmlinux_is_refused(lab: Lab) -> None:
    done = analyze(str(lab.bundle("panic")), "--vmlinux", "/bin/ls")
    assert done.returncode == ExitCode.BAD_INPUT
    assert "build ID" in done.stderr and one_clean_line(done.stderr)


@pytest.mark.lab
@pytest.mark.parametrize(
    ("vmlinux", "said"),
    [
        ("/dev/zero", "is a character device, not a regular file"),
        ("/nonexistent", "does not exist"),
    ],
)
def test_a_vmlinux_that_is_not_a_file_is_named_for_what_it_is(
    lab: Lab, vmlinux: str, said: str
) -> None:
    """Before: a device given as --vmlinux was said not to exist."""
    done = analyze(str(lab.bundle("panic")), "--vmlinux", vmlinux)
    assert done.returncode == ExitCode.BAD_INPUT
    assert f"--vmlinux {vmlinux} {said}" in done.stderr and one_clean_line(done.stderr)


def test_a_link_to_nowhere_is_named_for_what_it_is(tmp_path: Path) -> None:
    """A dangling link and a link loop given as the target, to analyze and to triage."""
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    said = {"dangling": f"is a symbolic link to nothing ({tmp_path / 'gone'})",
            "loop": "is a symbolic link loop", "absent": "does not exist"}  # fmt: skip
    for name, what in said.items():
        for command in (CLI, [sys.executable, "-m", "kvmha_forensics", "triage", "--no-cache"]):
            done = subprocess.run([*command, str(tmp_path / name)], capture_output=True,
                                  text=True, check=False)  # fmt: skip
            assert done.returncode == ExitCode.BAD_INPUT, done.stderr
            assert f"{tmp_path / name} {what}" in done.stderr and one_clean_line(done.stderr)


@pytest.mark.lab
def test_no_debug_info_says_what_to_install(lab: Lab, tmp_path: Path) -> None:
    env = {**os.environ, "KVMHA_CACHE_DIR": str(tmp_path)}
    done = analyze(str(lab.bundle("oops")), "--format", "json", env=env)
    report = json.loads(done.stdout)
    kernel = next(a for a in report["analyzers"] if a["name"] == "guest-kernel")
    assert kernel["status"] == "ok"
    assert kernel["facts"]["debuginfo"] is None and kernel["facts"]["release"]
    assert any("-dbg" in note for note in kernel["notes"])
    assert report["verdict"]["cause"] == "guest-oops"  # from the console
    assert done.returncode == 0, done.stderr


@pytest.mark.lab
def test_debuginfo_dir_is_searched_by_build_id(lab: Lab, tmp_path: Path) -> None:
    env = {**os.environ, "KVMHA_CACHE_DIR": str(tmp_path / "empty-cache")}
    found = tmp_path / "debug" / "b" / "vmlinux-renamed"
    found.parent.mkdir(parents=True)
    found.symlink_to(assets.kernel().vmlinux)
    decoy = tmp_path / "debug" / "a" / "vmlinux-other-build"  # searched first, wrong build ID
    decoy.parent.mkdir()
    shutil.copy("/bin/ls", decoy)
    args = ("--format", "json", "--debuginfo-dir", str(tmp_path / "debug"))
    done = analyze(str(lab.bundle("oops")), *args, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    kernel = next(a for a in report["analyzers"] if a["name"] == "guest-kernel")
    assert kernel["facts"]["debuginfo"] == str(found)
    assert report["verdict"]["culprit"].startswith("kvmha_lab_oops")


class Raising:
    name: ClassVar[str] = "raising"
    description: ClassVar[str] = "always fails"
    requires: ClassVar[frozenset[Requirement]] = frozenset()

    def run(self, ctx: Context) -> Outcome:
        raise RuntimeError("boom")


class Quiet:
    name: ClassVar[str] = "quiet"
    description: ClassVar[str] = "finds nothing"
    requires: ClassVar[frozenset[Requirement]] = frozenset()

    def run(self, ctx: Context) -> Outcome:
        return Outcome(facts={"ran": True})


def test_an_analyzer_that_raises_does_not_stop_the_others(tmp_path: Path) -> None:
    results = run_all(Context(Inputs("x", "text", {})), [Raising, Quiet])
    assert [(r.name, r.status) for r in results] == [("raising", "failed"), ("quiet", "ok")]
    assert results[0].reason == "RuntimeError: boom"
    assert results[1].outcome.facts == {"ran": True}


def test_an_elf_that_is_not_a_core_dump() -> None:
    done = analyze(sys.executable)  # an ELF executable
    assert done.returncode == ExitCode.BAD_INPUT
    assert "not a core dump" in done.stderr and one_clean_line(done.stderr)
