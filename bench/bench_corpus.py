"""Scores on the real-world corpus (fixtures/real) against its reviewed goldens, and its speed.

    .venv/bin/python bench/bench_corpus.py

Cause over every case, culprit over the cases whose reviewed answer names one, instruction and
CPU mode over the QEMU logs with readable ``Code=`` bytes (issue 14's targets: 95 %, 90 %, all).
The goldens are hand-reviewed (fixtures/real/README.md); fields the tool still gets wrong are
recorded there as ``known_wrong`` and count as wrong here. Prints a Markdown table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.real_corpus import all_cases, observe, score


def _pct(right: int, total: int) -> str:
    return f"{right}/{total} ({100 * right / total:.0f} %)" if total else "-"


def main(argv: list[str] | None = None) -> str:
    """Score every case; the Markdown table (``python -m bench`` prints it)."""
    del argv
    cases = all_cases()
    start = time.perf_counter()
    results = [(case, observe(case)) for case in cases]
    seconds = time.perf_counter() - start
    lines = ["### real corpus", "", "| kind | cases | cause | culprit | instruction+mode |"]
    lines.append("|---|---:|---:|---:|---:|")
    for kind in ("console", "qemu-log"):
        s = score([(c, g) for c, g in results if c.kind == kind])
        lines.append(
            f"| {kind} | {s.cases} | {_pct(s.cause_right, s.cases)} | "
            f"{_pct(s.culprit_right, s.culprit_cases)} | {_pct(s.decode_right, s.decode_cases)} |"
        )
    lines.append(f"\nanalyze of all {len(cases)} cases: {seconds:.2f} s\n")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
