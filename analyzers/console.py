"""Serial console: the guest's last words as they reached the console, syzkaller-style."""

from __future__ import annotations

from typing import ClassVar

from kvmha_forensics.analysis import Confidence, Context, Evidence, Finding, Outcome, Requirement
from kvmha_forensics.sources.console import last_lines, parse_console


class ConsoleLog:
    """Oops, panic, BUG, WARNING, lockup, hung task, RCU stall and KASAN reports on the console."""

    name: ClassVar[str] = "console"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "titles the kernel reports found on the serial console"
    requires: ClassVar[frozenset[Requirement]] = frozenset({"console"})
    refines: ClassVar[frozenset[str]] = frozenset()

    def run(self, ctx: Context) -> Outcome:
        text = ctx.text("console") or ""
        parsed = parse_console(text)
        lines = last_lines(text)[0].split("\n")  # the lines the report's numbers count
        findings = []
        if (report := parsed.primary) is not None:
            excerpt = "\n".join(lines[report.first_line : report.last_line + 1][:30])
            span = f"lines {report.first_line + 1}-{report.last_line + 1}"
            findings.append(
                Finding(
                    cause=report.cause,
                    summary=f"The guest console shows: {report.title}.",
                    signature=f"{report.cause}: {report.title}",
                    confidence=Confidence.DAMAGED if report.corrupted else Confidence.RECORDED,
                    culprit=report.culprit,
                    crashed_cpu=report.crashed_cpu,
                    evidence=(Evidence("console", span, excerpt),),
                )
            )
        facts = {
            "kernel_release": parsed.kernel_release,
            "reports": [
                {"title": r.title, "cause": r.cause, "culprit": r.culprit, "signature": r.signature}
                for r in parsed.reports
            ],
        }
        return Outcome(tuple(findings), facts, parsed.notes)
