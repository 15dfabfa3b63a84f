"""The real-world corpus (fixtures/real): each case against its reviewed golden, syzkaller's
reparse invariant, the scores issue 14 asks for, damage added to real text, and triage groups.

``pytest tests/analyze/test_real_corpus.py --update-goldens`` regenerates the sidecars'
``expect`` (keeping reviewed answers of ``known_wrong`` fields): review with
``git diff fixtures/real``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmha_forensics.sources.console import MAX_REPORTS, parse_console
from kvmha_forensics.sources.qemu_log import parse_qemu_log
from kvmha_forensics.triage.grouping import triage
from tests.real_corpus import (
    CONSOLES,
    QEMU_LOGS,
    ROOT,
    all_cases,
    compare,
    load,
    observe,
    score,
    update,
)

MIN_CONSOLES = 100
MIN_QEMU_LOGS = 30
CAUSE_TARGET = 0.95
CULPRIT_TARGET = 0.90


def test_corpus_size_and_sources() -> None:
    assert len(CONSOLES) >= MIN_CONSOLES and len(QEMU_LOGS) >= MIN_QEMU_LOGS
    for case in all_cases():
        assert str(case.meta["source"]).startswith("https://"), case.path.name
        assert case.expect is not None, f"{case.path.name}: run --update-goldens, then review"


@pytest.mark.parametrize("path", [*CONSOLES, *QEMU_LOGS], ids=lambda p: p.name)
def test_case_matches_its_golden(path: Path, update_goldens: bool) -> None:
    """What the tool says equals the reviewed answer, except the fields recorded as
    ``known_wrong`` (which must still be wrong, with the recorded value: a fix shows up)."""
    case = load(path)
    got = observe(case)
    if update_goldens:
        update(case, got)
        case = load(path)
    assert compare(case, got) == case.known_wrong


@pytest.mark.parametrize("path", CONSOLES, ids=lambda p: p.name)
def test_reparse_from_start_and_end(path: Path) -> None:
    """syzkaller's invariant: parsing from the report's first line finds the same report;
    parsing from the line after its end finds only the reports that followed it."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    analysis = parse_console(text)
    first = analysis.primary
    if first is None:
        return
    again = parse_console("\n".join(lines[first.first_line :])).primary
    assert again is not None and (again.title, again.cause) == (first.title, first.cause)
    after = parse_console("\n".join(lines[first.last_line + 1 :]))
    assert len(after.reports) == len(analysis.reports) - 1


def test_scores_meet_the_targets() -> None:
    results = [(case, observe(case)) for case in all_cases()]
    s = score(results)
    assert s.cause_right >= CAUSE_TARGET * s.cases, s.line()
    assert s.culprit_right >= CULPRIT_TARGET * s.culprit_cases, s.line()
    assert s.decode_right == s.decode_cases, s.line()


def _crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def _mail_quote(text: str) -> str:
    return "".join(f"> {line}\n" for line in text.split("\n"))


@pytest.mark.parametrize("damage", [_crlf, _mail_quote], ids=["crlf", "mail-quote"])
def test_damage_does_not_change_the_answer(damage: object) -> None:
    """Real consoles with CRLF line ends or one more level of mail quoting parse the same."""
    assert callable(damage)
    for path in CONSOLES:
        text = path.read_text(encoding="utf-8")
        clean, damaged = parse_console(text).primary, parse_console(damage(text)).primary
        want = (clean.title, clean.cause, clean.culprit) if clean else None
        got = (damaged.title, damaged.cause, damaged.culprit) if damaged else None
        assert got == want, path.name


def test_triage_gives_one_group_per_failure() -> None:
    """Triage of the whole corpus: every input lands in a group; files documented as the same
    failure share one group; any other shared group is one the README lists as
    indistinguishable from the text alone (no stack, no register dump)."""
    groups = json.loads((ROOT / "groups.json").read_text(encoding="utf-8"))
    result = triage([*CONSOLES, *QEMU_LOGS])
    assert not result.skipped, [s.path for s in result.skipped]
    by_file = {Path(m.path).name: g.signature_id for g in result.groups for m in g.members}
    assert len(by_file) == len(CONSOLES) + len(QEMU_LOGS)
    for same in groups["same"]:
        assert len({by_file[name] for name in same["files"]}) == 1, same
    allowed = [set(s["files"]) for s in groups["same"] + groups["indistinct"]]
    for group in result.groups:
        names = {Path(m.path).name for m in group.members}
        if len(names) > 1:
            assert any(names <= a for a in allowed), sorted(names)


_ALL_LINES = [
    line for p in (*CONSOLES, *QEMU_LOGS) for line in p.read_text(encoding="utf-8").split("\n")
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(_ALL_LINES), max_size=300),
    st.sampled_from(["", "> ", "[  1.000000] ", "\t", "(qemu) "]),
    st.integers(min_value=0, max_value=90),
)
def test_spliced_real_lines_never_break_the_parsers(
    lines: list[str], prefix: str, width: int
) -> None:
    """Real lines in random order, with a prefix, some cut to a width: no exception, reports
    inside the text, at most MAX_REPORTS of them."""
    text = "\n".join(prefix + (line[:width] if width else line) for line in lines)
    analysis = parse_console(text)
    assert len(analysis.reports) <= MAX_REPORTS
    for report in analysis.reports:
        assert 0 <= report.first_line <= report.last_line < max(len(lines), 1)
    parse_qemu_log(text)
