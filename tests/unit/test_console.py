"""Golden and agreement tests for kvmha_forensics.sources.console."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmha_forensics.sources.console import (
    FORMATS,
    CrashReport,
    clean_line,
    parse_console,
)
from tests.goldens import Case, check_case, read_case, render_headers

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "console"
GOLDENS = sorted(GOLDEN_DIR.glob("[0-9][0-9][0-9]-*.txt"))
HEADER_KEYS = ("TITLE", "CAUSE", "CULPRIT", "CORRUPTED", "SIGNATURE", "START", "END")


def read_golden(path: Path) -> Case:
    return read_case(path, HEADER_KEYS)


def expected_of(report: CrashReport | None) -> dict[str, str]:
    """The headers of a console case: the primary report, and its first and last lines
    (1-based) in the raw log."""
    if report is None:
        return {"TITLE": "", "CAUSE": "", "CULPRIT": ""}
    out = {"TITLE": report.title, "CAUSE": report.cause, "CULPRIT": report.culprit or ""}
    if report.corrupted:
        out["CORRUPTED"] = "Y"
    out["SIGNATURE"] = report.signature
    out["START"], out["END"] = str(report.first_line + 1), str(report.last_line + 1)
    return out


def primary_title(text: str) -> str:
    primary = parse_console(text).primary
    return primary.title if primary else ""


def test_goldens_exist() -> None:
    assert len(GOLDENS) >= 10
    names = {p.name for p in GOLDENS}
    assert len({n[:3] for n in names}) == len(names), "golden numbers must be unique"


@pytest.mark.parametrize("path", GOLDENS, ids=lambda p: p.stem)
def test_golden(path: Path, update_goldens: bool) -> None:
    golden = read_golden(path)
    actual = expected_of(parse_console(golden.raw).primary)
    check_case(golden, actual, HEADER_KEYS, update_goldens, {"CORRUPTED": "N"})


def test_golden_roundtrip_format(tmp_path: Path) -> None:
    """The golden reader and writer agree, so --update-goldens only touches headers."""
    headers = {"TITLE": "kernel BUG in f", "CAUSE": "guest-bug", "CULPRIT": "f", "CORRUPTED": "Y"}
    path = tmp_path / "001-x.txt"
    path.write_text(render_headers(headers, HEADER_KEYS) + "\nlog line\n", encoding="utf-8")
    golden = read_golden(path)
    assert golden.headers == headers
    assert golden.raw == "log line\n"


# Facts the goldens' three headers do not pin down, checked on the recorded lab consoles.


def lab_report(name: str) -> CrashReport:
    report = parse_console(read_golden(GOLDEN_DIR / name).raw).primary
    assert report is not None
    return report


def test_oops_details() -> None:
    analysis = parse_console(read_golden(GOLDEN_DIR / "002-lab-oops.txt").raw)
    assert analysis.kernel_release == "6.1.0-56-cloud-amd64"
    assert len(analysis.reports) == 1, "the Fatal exception panic is folded into the oops"
    r = analysis.reports[0]
    assert (r.crashed_cpu, r.task, r.pid, r.tainted) == (0, "init", 1, "G OE")
    assert r.rip == "kvmha_lab_oops+0x15/0x30 [kvmha_lab]"
    assert r.frames[:3] == (
        "kvmha_lab_oops [kvmha_lab]",
        "kvmha_lab_write [kvmha_lab]",
        "proc_reg_write",
    )
    assert "filp_close" not in r.frames, "'? ' frames are unreliable and left out"
    assert r.panic_message == "Fatal exception"
    assert r.title == "BUG: unable to handle kernel NULL pointer dereference in kvmha_lab_oops"
    assert r.signature == "8e05b8474027ce4b"  # a stable id: first 16 hex of sha256(title)
    assert r.alt_titles == ("bad-access in kvmha_lab_oops",)


def test_smp_panic_cpu_and_notes() -> None:
    analysis = parse_console(read_golden(GOLDEN_DIR / "006-lab-smp-panic.txt").raw)
    r = analysis.reports[0]
    assert (r.crashed_cpu, r.task, r.tainted, r.panic_message) == (1, "sh", None, None)
    assert any("sysrq" in note for note in analysis.notes)


def test_hung_task_details() -> None:
    r = lab_report("005-lab-hung-task.txt")
    assert (r.task, r.pid, r.crashed_cpu, r.tainted) == ("init", 93, None, "G OE")
    assert r.panic_message == "hung_task: blocked tasks"


def test_softlockup_cpu_from_header() -> None:
    r = lab_report("004-lab-softlockup.txt")
    assert (r.crashed_cpu, r.task, r.pid) == (0, "init", 1)
    assert r.panic_message == "softlockup: hung tasks"


def test_line_span() -> None:
    golden = read_golden(GOLDEN_DIR / "003-lab-bug.txt")
    lines = golden.raw.split("\n")
    r = parse_console(golden.raw).reports[0]
    assert "kernel BUG at" in lines[r.first_line]
    assert "Kernel panic - not syncing: Fatal exception" in lines[r.last_line]


def test_titles_are_stable_text() -> None:
    """No addresses, offsets, pids, CPU numbers or build paths in any golden title."""
    bad = re.compile(r"0x[0-9a-f]|\+0x|/root/|\.c:\d|CPU#?\d|\[\d+\]|:\d+\]")
    for path in GOLDENS:
        title = read_golden(path).headers["TITLE"]
        assert not bad.search(title), (path.name, title)


def test_formats_table_is_consistent() -> None:
    names = [f.name for f in FORMATS]
    assert len(names) == len(set(names))
    for fmt in FORMATS:
        assert fmt.keyword, fmt.name
        assert "{func}" not in fmt.bare_title, fmt.name
        assert all(a in names for a in fmt.absorbs), fmt.name


def test_clean_line_strips_transport() -> None:
    assert clean_line("(qemu) \x1b[1;31m[    1.5] BUG: x\r") == "BUG: x"
    assert clean_line("<4>[  12.000001][  T100] WARNING: y") == "WARNING: y"
    assert clean_line("Jul 27 14:08:04 host kernel: [  3.1] BUG: z") == "BUG: z"


def test_repeated_reports_are_separate() -> None:
    one = read_golden(GOLDEN_DIR / "008-warning.txt").raw
    analysis = parse_console(one + "\n" + one)
    assert [r.title for r in analysis.reports] == ["WARNING in module_put"] * 2


# Hypothesis: robustness and agreement (syzkaller pkg/report/fuzz.go style).

CRASH_GOLDENS = [p for p in GOLDENS if read_golden(p).headers["TITLE"]]
TIMESTAMP = re.compile(r"^\[ *\d+\.\d+\] ?", re.MULTILINE)
NOISE = st.sampled_from(
    [
        "random: crng init done",
        "[   9.000000] virtio_net virtio0 enp0s3: renamed from eth0",
        "systemd[1]: Started Journal Service.",
        "",
        "   ",
        "KVMHA-LAB: idle",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises(text: str) -> None:
    analysis = parse_console(text)
    for r in analysis.reports:
        assert 0 <= r.first_line <= r.last_line


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([f.keyword for f in FORMATS] + ["RIP: 0010:", " f+0x1/0x2"])))
def test_never_raises_on_header_soup(parts: list[str]) -> None:
    parse_console("\n".join(parts) + "\n" + "".join(parts))


def test_bounded_on_huge_input() -> None:
    line = "[    1.000000] BUG: soft lockup - CPU#0 stuck for 3s! [a:1]\n"
    analysis = parse_console(line * 20_000 + "x" * 1_000_000)
    assert len(analysis.reports) == 64
    assert analysis.notes


@pytest.mark.parametrize("path", CRASH_GOLDENS, ids=lambda p: p.stem)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_agreement(path: Path, data: st.DataObject) -> None:
    log = read_golden(path).raw
    want = primary_title(log)
    transform = data.draw(st.sampled_from(["strip-ts", "add-ts", "crlf", "qemu", "interleave"]))
    lines = log.split("\n")
    if transform == "strip-ts":
        mutated = TIMESTAMP.sub("", log)
    elif transform == "add-ts":
        mutated = "\n".join(
            line if TIMESTAMP.match(line) else f"[  {i}.{i:06d}] {line}"
            for i, line in enumerate(lines)
        )
    elif transform == "crlf":
        mutated = log.replace("\n", "\r\n")
    elif transform == "qemu":
        mutated = "\n".join("(qemu) " + line for line in lines)
    else:
        out: list[str] = []
        for line in lines:
            out.append(line)
            if data.draw(st.integers(0, 9)) == 0:
                out.append(data.draw(NOISE))
        mutated = "\n".join(out)
    assert primary_title(mutated) == want, transform


@pytest.mark.parametrize("path", CRASH_GOLDENS, ids=lambda p: p.stem)
def test_reparsing_from_the_report_start_finds_the_same_report(path: Path) -> None:
    """syzkaller's checkReport: the report stands on its own from its first line."""
    log = read_golden(path).raw
    first = parse_console(log).primary
    assert first is not None
    rest = "\n".join(log.split("\n")[first.first_line :])
    again = parse_console(rest).primary
    assert again is not None
    assert (again.title, again.cause, again.culprit, again.signature) == (
        first.title, first.cause, first.culprit, first.signature,
    )  # fmt: skip
    assert (again.first_line, again.last_line) == (0, first.last_line - first.first_line)


def test_old_kernel_panic_spelling_only_at_a_line_start() -> None:
    """2.4 printed "Kernel panic: MSG" (no "- not syncing"): a report at a line's start, not
    inside other text (a golden's "TITLE: kernel panic: …" line)."""
    old = parse_console("<0>Kernel panic: Aiee, killing interrupt handler!\n")
    assert len(old.reports) == 1
    assert old.reports[0].title.lower() == "kernel panic: aiee, killing interrupt handler!"
    assert old.reports[0].cause == "guest-panic"
    assert parse_console("TITLE: kernel panic: Fatal exception\n").reports == ()
