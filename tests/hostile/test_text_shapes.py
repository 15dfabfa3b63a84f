"""Console texts shaped to be costly: each is analyzed to its verdict under the memory cap and
the time limit of :mod:`tests.hostile.hostile` (a hang or a blow-up fails the test), and the
evidence shown is the report's own line whatever breaks the lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvmha_forensics.errors import ExitCode
from kvmha_forensics.limits import MAX_CONSOLE_BYTES
from kvmha_forensics.sources.console import MAX_LINES
from kvmha_forensics.sources.qemu_log import DEFAULT_MAX_LINES
from tests.hostile.hostile import PANIC_CONSOLE, cli

OOPS = b"BUG: kernel NULL pointer dereference, address: 0000000000000000\n"


def _quotes(n: int) -> bytes:
    """One line of mail quotes as long as a console may be (each level a nested group)."""
    return b"> " * (n // 2) + b"\n"


def _soft_breaks(n: int) -> bytes:
    """Quoted-printable text whose every line ends in a soft break: one joined line."""
    return b"=3D =3D\n" + b"abcdefghijklmnopqrstuvwxyz=\n" * (n // 28) + b"\n"


def _empty_lines(n: int) -> bytes:
    """As many lines as a console's bytes allow."""
    return b"\n" * n


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        (_quotes, MAX_CONSOLE_BYTES - 4096),
        (_soft_breaks, 8 << 20),
        (_empty_lines, MAX_CONSOLE_BYTES - 4096),
    ],
    ids=["quotes-one-line", "soft-break-chain", "empty-lines"],
)
def test_costly_shapes_end_in_the_verdict(tmp_path: Path, shape: object, size: int) -> None:
    console = tmp_path / "console.txt"
    assert callable(shape)
    console.write_bytes(shape(size) + PANIC_CONSOLE)
    done = cli("analyze", "--console", str(console), "--format", "json")
    assert done.returncode in (0, ExitCode.INCOMPLETE), done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["verdict"]["cause"] == "guest-panic", report["verdict"]


def test_a_text_of_more_lines_than_the_bound_says_so(tmp_path: Path) -> None:
    console = tmp_path / "console.txt"
    console.write_bytes(b"a\n" * (MAX_LINES + 1000) + OOPS)  # + the empty line after the last \n
    done = cli("analyze", "--console", str(console), "--format", "json")
    report = json.loads(done.stdout)
    assert report["verdict"]["cause"] == "guest-oops", report["verdict"]
    notes = [n for a in report["analyzers"] if a["name"] == "console" for n in a["notes"]]
    assert notes and f"only the last {MAX_LINES} lines were read (1002 before" in notes[0], notes
    assert OOPS.decode().strip() in report["verdict"]["evidence"][0]["excerpt"]


@pytest.mark.parametrize("brk", [b"\r", b"\x0c", b"\x1c", "\u2028".encode()])
def test_evidence_is_the_reports_line_whatever_breaks_lines(tmp_path: Path, brk: bytes) -> None:
    """Only ``\\n`` ends a console line; a CR or form feed inside one must not shift the
    excerpt to another line."""
    console = tmp_path / "console.txt"
    console.write_bytes(b"boot" + brk + b"more" + brk + b"text\n" + OOPS)
    done = cli("analyze", "--console", str(console), "--format", "json")
    evidence = json.loads(done.stdout)["verdict"]["evidence"][0]
    assert evidence["locator"] == "lines 2-2", evidence
    assert evidence["excerpt"] == OOPS.decode().strip(), evidence


def test_a_qemu_log_of_empty_lines_is_read_to_a_line_bound(tmp_path: Path) -> None:
    """64M empty lines before a KVM internal error: read to the line bound (the error past
    it is not reached, and the note says where reading stopped), in bounded time."""
    log = tmp_path / "qemu.log"
    log.write_bytes(b"\n" * (64 << 20) + b"KVM internal error. Suberror: 1\n")
    done = cli("analyze", "--qemu-log", str(log), "--format", "json")
    assert done.returncode == ExitCode.INCOMPLETE, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["verdict"]["cause"] != "kvm-internal-error", report["verdict"]
    assert f"and {DEFAULT_MAX_LINES} lines (max_bytes=" in done.stdout
