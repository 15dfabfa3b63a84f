"""Agreement with syzkaller on its own golden Linux reports: titles and guilty functions.

    .venv/bin/python bench/bench_syzkaller.py [SYZKALLER_DIR] [--list N]

SYZKALLER_DIR (argument, else the environment variable of that name) is a syzkaller checkout;
its ``pkg/report/testdata/linux/report/N`` files are read in place, never copied. Each file is
headers (``TITLE:``, ``ALT:``, ``FRAME:``, ``CORRUPTED:`` …), a blank line and the raw log (up
to an optional ``REPORT:`` section). Counted: the files with a title and not ``CORRUPTED: Y``.
A title agrees when our first report's ``title`` equals syzkaller's ``TITLE``; a guilty
function agrees when our culprit (its function, no module) equals syzkaller's frame: ``FRAME:``
where given, else what follows the last `` in `` of ``TITLE`` (syzkaller's ``reportFrameRe``);
files whose title names no function are not counted for it. Target (issue 14): both ≥ 90 %.
Also shown: how often our ``corrupted`` flag agrees, over every titled file (corrupted ones too).
Without a checkout it says so and exits 2: no figure is made up.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kvmha_forensics.sources.console import parse_console

REPORTS = Path("pkg/report/testdata/linux/report")
#: syzkaller's ``reportFrameRe``: the guilty frame is what follows the title's last " in ".
_TITLE_FRAME = re.compile(r".* in ((?:<[a-zA-Z0-9_: ]+>)?[a-zA-Z0-9_:]+)")


@dataclass(frozen=True, slots=True)
class Golden:
    """One syzkaller golden report: its expectations and its raw log."""

    name: str
    title: str
    frame: str | None
    corrupted: bool
    log: str


@dataclass(frozen=True, slots=True)
class Outcome:
    golden: Golden
    title: str | None
    culprit: str | None
    corrupted: bool | None

    @property
    def title_ok(self) -> bool:
        return self.title == self.golden.title

    @property
    def frame_ok(self) -> bool:
        return self.culprit == self.golden.frame


def read_golden(path: Path) -> Golden:
    """Parse one golden file as syzkaller's ``report_test.go`` does (``\\r`` dropped)."""
    text = path.read_bytes().decode("utf-8", errors="replace").replace("\r", "")
    headers, _, log = text.partition("\n\n")
    log = log.split("\n\nREPORT:\n", 1)[0]
    title, frame, corrupted = "", None, False
    for line in headers.split("\n"):
        key, _, value = line.partition(": ")
        if key == "TITLE":
            title = value
        elif key == "FRAME":
            frame = value
        elif key == "CORRUPTED":
            corrupted = value == "Y"
    if frame is None:
        m = _TITLE_FRAME.match(title)
        frame = m[1] if m else None
    return Golden(path.name, title, frame, corrupted, log)


def load(checkout: Path) -> list[Golden]:
    """The titled Linux goldens of a syzkaller checkout, in numeric order."""
    folder = checkout / REPORTS
    paths = sorted(folder.iterdir(), key=lambda p: (len(p.name), p.name))
    goldens = [read_golden(p) for p in paths if p.is_file()]
    return [g for g in goldens if g.title]


def measure(goldens: list[Golden]) -> list[Outcome]:
    outcomes = []
    for golden in goldens:
        primary = parse_console(golden.log).primary
        culprit = primary.culprit.split(" [")[0] if primary and primary.culprit else None
        outcomes.append(
            Outcome(
                golden,
                primary.title if primary else None,
                culprit,
                primary.corrupted if primary else None,
            )
        )
    return outcomes


def render(every: list[Outcome], seconds: float, listed: int) -> str:
    outcomes = [o for o in every if not o.golden.corrupted]
    flags = sum(o.corrupted == o.golden.corrupted for o in every)
    n = len(outcomes)
    titles = sum(o.title_ok for o in outcomes)
    framed = [o for o in outcomes if o.golden.frame is not None]
    frames = sum(o.frame_ok for o in framed)
    out = [
        "### Agreement with syzkaller's golden Linux reports (issue 14: ≥ 90 % each)\n",
        "| measure | agree | of | share |",
        "| --- | ---: | ---: | ---: |",
        f"| titles | {titles} | {n} | {100 * titles / max(n, 1):.1f} % |",
        f"| guilty functions | {frames} | {len(framed)} | "
        f"{100 * frames / max(len(framed), 1):.1f} % |",
        f"| `corrupted` flag (all titled files) | {flags} | {len(every)} | "
        f"{100 * flags / max(len(every), 1):.1f} % |",
        f"\n{len(every)} reports parsed in {seconds:.2f} s.",
    ]
    bad = [o for o in outcomes if not o.title_ok or (o.golden.frame and not o.frame_ok)]
    if bad and listed:
        out.append(f"\nDisagreements ({len(bad)}; first {min(listed, len(bad))}):\n")
        out.append("| file | syzkaller title | our title | syzkaller frame | our culprit |")
        out.append("| --- | --- | --- | --- | --- |")
        for o in bad[:listed]:
            g = o.golden
            out.append(f"| {g.name} | {g.title} | {o.title} | {g.frame or ''} | {o.culprit} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> str:
    """The Markdown table; raises ``SystemExit(2)`` without a syzkaller checkout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkout", nargs="?", type=Path, help="syzkaller checkout")
    parser.add_argument("--list", type=int, default=40, help="disagreements to list")
    args = parser.parse_args(argv or [])
    checkout = args.checkout or (Path(p) if (p := os.environ.get("SYZKALLER_DIR")) else None)
    if checkout is None or not (checkout / REPORTS).is_dir():
        where = f"{checkout / REPORTS} does not exist" if checkout else "no path given"
        print(
            f"bench_syzkaller: NOT MEASURED ({where}); pass a syzkaller checkout as the "
            "argument or in SYZKALLER_DIR (git clone https://github.com/google/syzkaller)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    goldens = load(checkout)
    start = time.perf_counter()
    outcomes = measure(goldens)
    return render(outcomes, time.perf_counter() - start, args.list)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
