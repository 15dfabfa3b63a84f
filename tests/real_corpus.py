"""The real-world corpus (fixtures/real): what the tool says about each case, and the scores.

Each case is a text file as it was pasted (``consoles/NNN-*.txt``, ``qemu-logs/NNN-*.log``)
and a sidecar ``.json``: ``source`` (its address), ``note`` (what was trimmed), ``expect``
(the reviewed answer, what a kernel engineer would say) and, where the tool still disagrees,
``known_wrong`` (field -> what the tool says today, where it is still wrong). ``pytest
--update-goldens`` regenerates ``expect`` from the tool's output except the ``known_wrong``
fields (see :func:`update`); review the diff by hand against the text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kvmha_forensics.analyze import analyze, gather
from kvmha_forensics.sources.console import parse_console

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "real"
CONSOLES = sorted((ROOT / "consoles").glob("[0-9][0-9][0-9]-*.txt"))
QEMU_LOGS = sorted((ROOT / "qemu-logs").glob("[0-9][0-9][0-9]-*.log"))
#: Fields compared per kind of case.
CONSOLE_FIELDS = ("cause", "title", "culprit", "signature", "start", "end", "reports")
QEMU_FIELDS = ("cause", "culprit", "signature", "instruction", "cpu_mode", "vcpu")


@dataclass(frozen=True)
class Case:
    path: Path
    kind: str  # "console" | "qemu-log"
    meta: dict[str, object]

    @property
    def sidecar(self) -> Path:
        return self.path.with_suffix(".json")

    @property
    def expect(self) -> dict[str, object] | None:
        value = self.meta.get("expect")
        return value if isinstance(value, dict) else None

    @property
    def known_wrong(self) -> dict[str, object]:
        value = self.meta.get("known_wrong")
        return value if isinstance(value, dict) else {}


def load(path: Path) -> Case:
    kind = "console" if path.suffix == ".txt" else "qemu-log"
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    return Case(path, kind, meta)


def all_cases() -> list[Case]:
    return [load(p) for p in (*CONSOLES, *QEMU_LOGS)]


def _facts(report: dict[str, object], analyzer: str) -> dict[str, object]:
    for result in report["analyzers"]:  # type: ignore[attr-defined]
        if result["name"] == analyzer:
            return dict(result["facts"])
    return {}


def observe(case: Case) -> dict[str, object]:
    """What the tool says about ``case``, in the golden's field names."""
    if case.kind == "console":
        inputs, problems = gather(None, console=case.path)
    else:
        inputs, problems = gather(None, qemu_log=case.path)
    report = analyze(inputs, problems).to_json()
    verdict = report["verdict"]
    assert isinstance(verdict, dict)
    got: dict[str, object] = {
        "cause": verdict["cause"],
        "culprit": verdict["culprit"],
        "signature": verdict["signature"],
    }
    if case.kind == "console":
        parsed = parse_console(case.path.read_text(encoding="utf-8", errors="replace"))
        primary = parsed.primary
        got["title"] = primary.title if primary else None
        got["culprit"] = primary.culprit if primary else None
        got["start"] = primary.first_line + 1 if primary else None
        got["end"] = primary.last_line + 1 if primary else None
        got["reports"] = len(parsed.reports)
    else:
        insn = _facts(report, "instruction")
        got["instruction"] = insn.get("text")
        got["cpu_mode"] = insn.get("cpu_mode")
        got["vcpu"] = insn.get("vcpu")
    return got


def compare(case: Case, got: dict[str, object]) -> dict[str, object]:
    """Fields where the tool disagrees with the reviewed answer: field -> what it says."""
    expect = case.expect or {}
    return {k: got.get(k) for k in expect if got.get(k) != expect[k]}


def update(case: Case, got: dict[str, object]) -> None:
    """Regenerate the sidecar from the tool's output: ``expect`` takes what the tool says,
    except fields already recorded as ``known_wrong`` (their reviewed answer stays, and
    ``known_wrong`` records the tool's current value, or drops the field once it is right).
    Review the diff (``git diff fixtures/real``) before committing it."""
    meta = dict(case.meta)
    fields = CONSOLE_FIELDS if case.kind == "console" else QEMU_FIELDS
    expect = dict(case.expect or {})
    wrong_before = case.known_wrong
    wrong: dict[str, object] = {}
    for k in fields:
        if k in wrong_before and k in expect and got.get(k) != expect[k]:
            wrong[k] = got.get(k)
        else:
            expect[k] = got.get(k)
    meta["expect"] = expect
    if wrong:
        meta["known_wrong"] = wrong
    else:
        meta.pop("known_wrong", None)
    case.sidecar.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Scores:
    cases: int
    cause_right: int
    culprit_cases: int
    culprit_right: int
    decode_cases: int
    decode_right: int

    def line(self) -> str:
        return (
            f"cause {self.cause_right}/{self.cases}, culprit {self.culprit_right}/"
            f"{self.culprit_cases}, instruction+mode {self.decode_right}/{self.decode_cases}"
        )


def score(results: list[tuple[Case, dict[str, object]]]) -> Scores:
    """Cause over all cases; culprit over cases whose reviewed culprit is not None; decoding
    over QEMU logs whose reviewed instruction is not None (they have readable Code= bytes)."""
    cause = culprit_n = culprit = decode_n = decode = 0
    for case, got in results:
        expect = case.expect or {}
        cause += got.get("cause") == expect.get("cause")
        if expect.get("culprit") is not None:
            culprit_n += 1
            culprit += got.get("culprit") == expect.get("culprit")
        if case.kind == "qemu-log" and expect.get("instruction") is not None:
            decode_n += 1
            decode += (got.get("instruction"), got.get("cpu_mode")) == (
                expect.get("instruction"),
                expect.get("cpu_mode"),
            )
    return Scores(len(results), cause, culprit_n, culprit, decode_n, decode)
