"""The one place reports become text: JSON, Markdown, or a terminal view (rich)."""

from __future__ import annotations

import json
from io import StringIO

from ..printable import printable
from .model import Report

TEXT_EXCERPTS = 2  # evidence items shown with their excerpt on a terminal
TEXT_EXCERPT_LINES = 12


def to_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, sort_keys=True, default=str) + "\n"


def to_markdown(report: Report) -> str:
    v = report.verdict
    out = [
        f"## kvmha-forensics: {v.cause}",
        "",
        f"**{v.summary}**",
        "",
        f"- Culprit: `{v.culprit or 'unknown'}`",
        f"- Signature: `{v.signature}`",
        f"- Confidence: {v.confidence:.2f}",
        f"- Crashed CPU: {v.crashed_cpu if v.crashed_cpu is not None else 'unknown'}",
        f"- Target: `{report.target}` ({report.kind})",
        "",
        "### Evidence",
        "",
    ]
    for ev in v.evidence:
        out.append(f"- `{ev.artifact}` {ev.locator or ''}")
        if ev.excerpt:
            out += ["", "```", ev.excerpt, "```", ""]
    out += ["", "### Analyzers", "", "| analyzer | status | time | note |", "|---|---|---|---|"]
    for a in report.analyzers:
        note = (a.reason or "; ".join(a.outcome.notes) or "").replace("|", "\\|")
        out.append(f"| {a.name} | {a.status} | {a.seconds:.3f} s | {note} |")
    if report.problems:
        out += ["", "### Problems", ""] + [f"- {p}" for p in report.problems]
    return printable("\n".join(out) + "\n")  # guest text never reaches a terminal raw


def to_text(report: Report, width: int = 100, color: bool = False) -> str:
    """A terminal view (rich, imported here: JSON and Markdown reports never need it); every
    string that may quote the guest goes through :func:`printable` (rich adds its own codes)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    buffer = StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color)
    v = report.verdict
    s = printable
    console.print(f"[bold]{v.cause}[/bold]  {escape(s(v.summary))}", highlight=False)
    console.print(f"  culprit     {s(v.culprit or 'unknown')}", markup=False, highlight=False)
    console.print(f"  signature   {s(v.signature)}", markup=False, highlight=False)
    cpu = v.crashed_cpu if v.crashed_cpu is not None else "unknown"
    console.print(f"  crashed cpu {cpu}   confidence {v.confidence:.2f}", highlight=False)
    for index, ev in enumerate(v.evidence):
        console.print(f"\n  evidence: {s(ev.artifact)} {s(ev.locator or '')}", markup=False)
        lines = s(ev.excerpt or "").split("\n") if ev.excerpt else []
        shown = lines[:TEXT_EXCERPT_LINES] if index < TEXT_EXCERPTS else []
        for line in shown:
            console.print(f"    {line}", markup=False, highlight=False)
        if len(lines) > len(shown):
            console.print(f"    ({len(lines) - len(shown)} more lines: --format json)")
    table = Table(title="analyzers", title_justify="left", show_edge=False)
    for column in ("analyzer", "status", "time", "note"):
        table.add_column(column)
    for a in report.analyzers:
        note = a.reason or "; ".join(a.outcome.notes)
        table.add_row(s(a.name), a.status, f"{a.seconds:.3f}s", s(note, one_line=True))
    console.print()
    console.print(table)
    for problem in report.problems:
        console.print(f"problem: {s(problem, one_line=True)}", markup=False, highlight=False)
    return buffer.getvalue()


RENDERERS = {"json": to_json, "markdown": to_markdown, "text": to_text}


def render(report: Report, fmt: str, color: bool = False) -> str:
    """``report`` in ``fmt`` (a key of :data:`RENDERERS`); ``color`` for the text view only."""
    return to_text(report, color=color) if fmt == "text" else RENDERERS[fmt](report)
