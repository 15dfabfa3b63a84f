"""Guest kernel: what the frozen kernel says about its own death, read with drgn."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar, cast

from kvmha_forensics.analysis import (
    KERNEL_ANALYZER,
    Confidence,
    Context,
    Evidence,
    Finding,
    Outcome,
    Requirement,
)
from kvmha_forensics.kernel_facts import Frame, KernelFacts
from kvmha_forensics.sources.console import GENERIC_SKIP, CrashReport, last_lines, parse_console

DMESG_TAIL = 40
# The console table's never-the-culprit frames (printing, trapping, panicking, watchdogs).
NOT_CULPRIT = re.compile("|".join(f"(?:{p})" for p in GENERIC_SKIP))


def _dmesg_tail(dmesg: str | None, lines: int = DMESG_TAIL) -> list[str]:
    return dmesg.splitlines()[-lines:] if dmesg else []


def stack_culprit(stack: tuple[Frame, ...]) -> str | None:
    """The first frame below the crash machinery (panic, oops, exception entry, watchdog):
    the code that failed, as drgn unwinds it."""
    generic = [i for i, f in enumerate(stack) if NOT_CULPRIT.fullmatch(f.function.split(".")[0])]
    below = stack[generic[-1] + 1 :] if generic else stack
    return str(below[0]) if below else None


def _finding(facts: KernelFacts, report: CrashReport, artifact: str) -> Finding:
    culprit = report.culprit or stack_culprit(facts.stack)
    task = facts.crashed_task
    where = f" on CPU {facts.crashed_cpu}" if facts.crashed_cpu is not None else ""
    who = f" (task {task.comm}, pid {task.pid}{where})" if task else where
    summary = f"The guest kernel {facts.release or ''} died: {report.title}{who}."
    dmesg = last_lines(facts.dmesg)[0].split("\n") if facts.dmesg else []
    lines = dmesg[report.first_line : report.last_line + 1]
    evidence = [Evidence(artifact, "dmesg (read with drgn)", "\n".join(lines[:30]) or None)]
    if facts.stack:
        frames = "\n".join(str(f) for f in facts.stack[:16])
        evidence.append(Evidence(artifact, "crashed thread's stack (drgn)", frames))
    return Finding(
        cause=report.cause,
        summary=" ".join(summary.split()),
        signature=f"{report.cause}: {report.title}",
        confidence=Confidence.SECONDHAND if report.corrupted else Confidence.MEMORY,
        culprit=culprit,
        crashed_cpu=facts.crashed_cpu if facts.crashed_cpu is not None else report.crashed_cpu,
        evidence=tuple(evidence),
    )


class GuestKernel:
    """dmesg, panic message, crashed CPU/task and its stack, D-state tasks, taint (drgn)."""

    name: ClassVar[str] = KERNEL_ANALYZER
    version: ClassVar[int] = 1
    description: ClassVar[str] = "reads the guest kernel's state from the memory dump with drgn"
    requires: ClassVar[frozenset[Requirement]] = frozenset({"memory", "vmcoreinfo"})
    refines: ClassVar[frozenset[str]] = frozenset()

    def run(self, ctx: Context) -> Outcome:
        facts = ctx.kernel()  # raises without a dump: ctx.memory is a path below
        artifact = cast(Path, ctx.memory).name
        data = asdict(facts)
        data["dmesg"] = _dmesg_tail(facts.dmesg)
        findings: tuple[Finding, ...] = ()
        if facts.dmesg:
            report = parse_console(facts.dmesg).primary
            if report is not None:
                findings = (_finding(facts, report, artifact),)
        return Outcome(findings, data, facts.skipped)
