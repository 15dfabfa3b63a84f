"""Hostile bundles and special files given to bundle verify, analyze and triage: bounded
memory and time, one line and exit 3 for what cannot be used, nothing guest-written reaching
the terminal raw (issue 11, items 1, 3, 7, 8, 10)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.hostile.hostile import PANIC_CONSOLE, bundle, cli, manifest, nested, one_line, unnest

BAD_INPUT, INCOMPLETE = 3, 7
GIB = 1 << 30


def test_bundle_console_linked_to_dev_zero_is_not_read(tmp_path: Path) -> None:
    """Item 1: a console artifact that is a link to /dev/zero: analyze and triage name it and
    go on, without reading it (before: memory grew until the cap)."""
    b = bundle(
        tmp_path / "b", {"qemu-stderr.log": b"qemu-system-x86_64: x\n"}, {"console.log": "console"}
    )
    (b / "console.log").symlink_to("/dev/zero")
    done = cli("analyze", str(b), "--format", "json")
    assert done.returncode == INCOMPLETE, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert any("console.log" in p and "link" in p for p in report["problems"]), report["problems"]
    assert not any(a["status"] == "failed" for a in report["analyzers"]), report["analyzers"]
    done = cli("triage", "--no-cache", str(tmp_path))
    assert done.returncode in (0, 20), done.stderr[-2000:]


def test_huge_bundle_console_is_read_to_a_bound(tmp_path: Path) -> None:
    """Item 1: a 3 GiB (sparse) console ending in a panic: analyzed by its tail, in bounded
    memory, and the report says what was left out."""
    b = bundle(tmp_path / "b", {}, {"console.log": "console"})
    with (b / "console.log").open("wb") as f:
        f.truncate(3 * GIB)
        f.seek(3 * GIB)
        f.write(b"\n" + PANIC_CONSOLE)
    size = (b / "console.log").stat().st_size
    doc = manifest([{"path": "console.log", "kind": "console", "size": size, "sha256": "0" * 64,
                     "description": "planted"}])  # fmt: skip
    (b / "manifest.json").write_text(json.dumps(doc))
    done = cli("analyze", str(b), "--format", "json")
    assert done.returncode in (0, INCOMPLETE), done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["verdict"]["cause"] == "guest-panic"
    assert any("console.log" in p and "last" in p for p in report["problems"]), report["problems"]


def test_fifo_in_a_bundle_does_not_hang_analysis(tmp_path: Path) -> None:
    """Item 3: a FIFO artifact: verify rejects it, analyze and a triage of the directory name
    it and finish (before: both hung)."""
    b = bundle(tmp_path / "b", {"console.log": PANIC_CONSOLE}, {"qemu-stderr.log": "qemu-log"})
    os.mkfifo(b / "qemu-stderr.log")
    done = cli("bundle", "verify", str(b))
    assert done.returncode == BAD_INPUT and "qemu-stderr.log" in done.stderr
    done = cli("analyze", str(b), "--format", "json", timeout=30)
    assert done.returncode == INCOMPLETE, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["verdict"]["cause"] == "guest-panic"
    assert any("qemu-stderr.log" in p and "FIFO" in p for p in report["problems"])
    done = cli("triage", "--no-cache", str(tmp_path), timeout=30)
    assert done.returncode in (0, 20), done.stderr[-2000:]


@pytest.mark.parametrize("where", ["../../../etc/passwd", "/etc/passwd", "a/../../x", ""])
def test_artifact_path_escaping_the_bundle_is_bad_input(tmp_path: Path, where: str) -> None:
    """Item 7: artifact paths outside the bundle: exit 3, one line, for verify and analyze."""
    b = bundle(tmp_path / "b", {"console.log": PANIC_CONSOLE})
    doc = json.loads((b / "manifest.json").read_text())
    doc["artifacts"].append({"path": where, "kind": "qemu-log", "size": 1, "sha256": "0" * 64,
                             "description": "x"})  # fmt: skip
    (b / "manifest.json").write_text(json.dumps(doc))
    for command in (("bundle", "verify"), ("analyze",)):
        done = cli(*command, str(b))
        assert done.returncode == BAD_INPUT, done.stderr[-2000:]
        assert "manifest" in one_line(done.stderr)


def test_deeply_nested_manifest_is_bad_input(tmp_path: Path) -> None:
    """Item 7: 200,000 nested brackets (RecursionError in the JSON parser before)."""
    b = tmp_path / "b"
    b.mkdir()
    (b / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    for command in (("bundle", "verify"), ("analyze",)):
        done = cli(*command, str(b))
        assert done.returncode == BAD_INPUT, done.stderr[-2000:]
        assert "manifest.json" in one_line(done.stderr)
    done = cli("triage", "--no-cache", str(b))
    assert "manifest.json" in done.stderr and "Traceback" not in done.stderr


def _absurd_elf() -> bytes:
    """An ELF64 core header whose program headers sit at 2^60 (and a second at 2^64-1)."""
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    header = (4).to_bytes(2, "little") + (62).to_bytes(2, "little") + (1).to_bytes(4, "little")
    header += bytes(8) + (1 << 60).to_bytes(8, "little") + bytes(8) + bytes(4)
    header += (64).to_bytes(2, "little") + (56).to_bytes(2, "little") + (4).to_bytes(2, "little")
    header += bytes(6)
    return ident + header


def test_absurd_elf_header_keeps_the_console_verdict(tmp_path: Path) -> None:
    """Item 7: e_phoff = 2^60 gave OSError (EINVAL) and lost the console's verdict."""
    elf = _absurd_elf()
    b = bundle(tmp_path / "b", {"console.log": PANIC_CONSOLE, "memory.elf": elf})
    done = cli("analyze", str(b), "--format", "json")
    assert done.returncode == INCOMPLETE, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["verdict"]["cause"] == "guest-panic"
    assert any("memory.elf" in p for p in report["problems"]), report["problems"]
    bare = tmp_path / "vmcore"
    bare.write_bytes(elf)
    done = cli("analyze", str(bare), "--console", str(b / "console.log"), "--format", "json")
    assert done.returncode in (BAD_INPUT, INCOMPLETE), done.stderr[-2000:]
    assert "Traceback" not in done.stderr


ESCAPES = b"\x1b]0;pwned\x07\x1b[2J\x1b[8m\x9b31m\r"


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_guest_escape_codes_never_reach_the_terminal(tmp_path: Path, fmt: str) -> None:
    """Item 8: OSC, CSI and C1 codes in the console are shown neutralized in text output."""
    console = PANIC_CONSOLE.replace(
        b"Kernel panic - not syncing: sysrq triggered crash",
        b"Kernel panic - not syncing: sysrq " + ESCAPES + b"triggered crash",
    )
    b = bundle(tmp_path / "b", {"console.log": console})
    done = cli("analyze", str(b), "--format", fmt)
    assert done.returncode in (0, INCOMPLETE), done.stderr[-2000:]
    assert "pwned" in done.stdout  # the line is quoted...
    for raw in ("\x1b", "\x07", "\x9b", "\r"):
        assert raw not in done.stdout  # ...but no control character reaches the terminal
    done = cli("triage", "--no-cache", str(b))
    assert "\x1b" not in done.stdout + done.stderr and "\x9b" not in done.stdout


def test_escape_codes_in_file_names_are_neutralized(tmp_path: Path) -> None:
    """Item 8: a file name is guest- or user-controlled text too (errors, skip lines)."""
    evil = tmp_path / "x\x1b]0;pwned\x07.log"
    evil.write_bytes(b"\0\1\2 binary")
    done = cli("triage", "--no-cache", str(evil))
    assert "\x1b" not in done.stderr and "pwned" in done.stderr
    done = cli("analyze", str(evil))
    assert "\x1b" not in one_line(done.stderr)


def test_triage_names_special_files_it_was_given(tmp_path: Path) -> None:
    """Item 10: triage FIFO /dev/zero said 0 inputs and exit 0: now each is named with why,
    and nothing analyzable is exit 3."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "zero"
    link.symlink_to("/dev/zero")
    done = cli("triage", "--no-cache", str(fifo), "/dev/zero", timeout=30)
    assert done.returncode == BAD_INPUT, (done.returncode, done.stderr)
    assert f"skipped {fifo}: " in done.stderr and "FIFO" in done.stderr
    assert "skipped /dev/zero: " in done.stderr and "character device" in done.stderr
    assert "nothing analyzable" in done.stderr
    # inside a directory too: each special file is named
    panic = tmp_path / "panic.log"
    panic.write_bytes(PANIC_CONSOLE)
    done = cli("triage", "--no-cache", str(tmp_path), timeout=30)
    assert done.returncode == 20, done.stderr
    assert f"skipped {fifo}: " in done.stderr and f"skipped {link}: " in done.stderr


def test_triage_walks_a_deep_tree_to_a_bound(tmp_path: Path) -> None:
    """3000 nested directories gave an internal error (os.walk recursed into each), and so
    did a tree whose paths outgrow PATH_MAX: each is now named where the walk stops, and the
    levels above are all analyzed."""
    deep, wide = tmp_path / "deep", tmp_path / "wide"
    deep.mkdir(), wide.mkdir()
    nested(deep, ["d"] * 3000, PANIC_CONSOLE)
    record = tmp_path / "triage.json"
    try:
        done = cli("triage", "--no-cache", "--json", str(record), str(deep))
    finally:
        unnest(deep, "d")
    assert done.returncode == 20, done.stderr[-2000:]
    report = json.loads(record.read_text())
    assert sum(len(g["members"]) for g in report["groups"]) == 32  # levels 1-32 below deep
    assert "a directory more than 32 levels down (not walked)" in one_line(
        "\n".join(line for line in done.stderr.splitlines() if line.startswith("skipped"))
    )
    nested(
        wide, ["w" * 255] * 20, PANIC_CONSOLE
    )  # 20 * 256 characters: past PATH_MAX (4096) at level 16
    done = cli("triage", "--no-cache", str(wide))
    assert done.returncode == 20, done.stderr[-2000:]
    assert "a directory whose path is too long to open (not walked)" in done.stderr, done.stderr
    assert "internal error" not in done.stderr


def test_triage_of_nothing_is_fine(tmp_path: Path) -> None:
    """An empty directory (no crash kept) is not an error: CI stays green."""
    done = cli("triage", "--no-cache", str(tmp_path))
    assert done.returncode == 0, done.stderr


def test_analyze_refuses_special_files_in_one_line(tmp_path: Path) -> None:
    """--qemu-log and --console of a FIFO or a device: exit 3, one line, no hang."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for option in ("--qemu-log", "--console"):
        for special in (str(fifo), "/dev/zero"):
            done = cli("analyze", option, special, timeout=30)
            assert done.returncode == BAD_INPUT
            one_line(done.stderr)
    done = cli("analyze", str(fifo), timeout=30)
    assert done.returncode == BAD_INPUT and "FIFO" in one_line(done.stderr)


def _frozen_shutdown(directory: Path, code: object, block: object) -> Path:
    """A triple-faulted guest's bundle (real registers from the lab, fixtures/logs) with the
    given ``code.json`` and identity ``block``."""
    logs = Path(__file__).resolve().parents[2] / "fixtures" / "logs"
    freeze = {"state": "frozen", "runstate": "shutdown", "cause": "shutdown",
              "failover_safe": True, "reasons": [], "events": []}  # fmt: skip
    files = {
        "freeze.json": json.dumps(freeze).encode(),
        "registers.txt": (logs / "triple-fault-kvm.info-registers.txt").read_bytes(),
        "code.json": json.dumps(code).encode(),
        "identity.json": json.dumps({"block": block}).encode(),
    }
    b = bundle(directory, files)
    doc = json.loads((b / "manifest.json").read_text())
    for a in doc["artifacts"]:
        a["kind"] = {"code.json": "code", "identity.json": "identity"}.get(a["path"], a["kind"])
    (b / "manifest.json").write_text(json.dumps(doc))
    return b


def _statuses(done: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    """Each analyzer's status and reason in an ``analyze --format json`` report."""
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    report = json.loads(done.stdout)
    return {a["name"]: (a["status"], a.get("reason") or "") for a in report["analyzers"]}


def test_malformed_typed_records_fail_their_analyzer_in_one_line(tmp_path: Path) -> None:
    """A ``code.json`` entry or a ``query-block`` answer of the wrong shape: the analyzer that
    reads it fails with one line naming the file, the others still run, exit 7."""
    good = _frozen_shutdown(tmp_path / "good", [], [])
    done = cli("analyze", str(good), "--format", "json")
    statuses = _statuses(done)
    assert statuses["shutdown"][0] == "ok" and statuses["storage"][0] == "ok", statuses
    bad = _frozen_shutdown(tmp_path / "bad", [{"cpu": 0, "rip": "zz"}], [5])
    done = cli("analyze", str(bad), "--format", "json")
    assert done.returncode == INCOMPLETE, done.stderr[-2000:]
    statuses = _statuses(done)
    shutdown, storage = statuses["shutdown"], statuses["storage"]
    assert shutdown[0] == "failed" and "code.json holds a bad entry" in shutdown[1], shutdown
    assert storage[0] == "failed" and "identity.json" in storage[1], storage
    assert "\n" not in shutdown[1] + storage[1]
    assert [n for n, (s, _) in statuses.items() if s == "failed"] == ["shutdown", "storage"]
