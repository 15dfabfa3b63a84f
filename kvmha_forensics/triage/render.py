"""Triage as a text table (the terminal) and as Markdown (a pull-request comment)."""

from __future__ import annotations

from ..printable import printable
from .grouping import Group, TriageResult


def _status(group: Group) -> str:
    return "NEW" if group.new else "known"


def to_table(result: TriageResult) -> str:
    """One line per group: status, count, cause, signature, last seen; then the totals."""
    rows = [("STATUS", "COUNT", "CAUSE", "LAST SEEN", "SIGNATURE")]
    for g in result.groups:
        cause = g.representative.analysis.verdict.cause
        rows.append((_status(g), str(len(g.members)), cause, g.last_seen, g.signature))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[4]]).rstrip()
             for r in rows]  # fmt: skip
    s = result.stats
    lines.append(
        f"{len(result.groups)} signatures ({len(result.new_groups)} new) from {s.analyzed} "
        f"inputs; {s.skipped} skipped; {s.cache_hits} from cache, {s.cache_misses} analyzed"
    )
    return printable("\n".join(lines) + "\n")


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")


def to_markdown(result: TriageResult) -> str:
    """A pull-request comment: the headline, the groups table, details, skipped inputs."""
    new = result.new_groups
    head = (
        f"**{len(new)} new crash signature{'s' if len(new) != 1 else ''}**"
        if new
        else "No new crash signatures"
    )
    out = [
        "## kvmha-forensics triage",
        "",
        f"{head}: {len(result.groups)} signatures from {result.stats.analyzed} inputs"
        f" ({result.stats.skipped} skipped).",
        "",
    ]
    if result.groups:
        out += [
            "| | count | cause | signature | culprit | first seen | last seen |",
            "|---|---:|---|---|---|---|---|",
        ]
        for g in result.groups:
            v = g.representative.analysis.verdict
            out.append(
                f"| {'🆕 new' if g.new else 'known'} | {len(g.members)} | {v.cause} "
                f"| `{_md(g.signature)}` | {_md(v.culprit or '-')} | {g.first_seen} "
                f"| {g.last_seen} |"
            )
        out.append("")
        for g in result.groups:
            v = g.representative.analysis.verdict
            out += [
                f"<details><summary>{_status(g)}: {_md(g.signature)} ({len(g.members)})</summary>",
                "",
                _md(v.summary),
                "",
                f"Representative: `{_md(g.representative.path)}`",
                "",
                *(f"- `{_md(m.path)}` ({m.kind}, {m.seen})" for m in g.members),
                "",
                "</details>",
                "",
            ]
    if result.skipped:
        out += ["<details><summary>Skipped inputs</summary>", ""]
        out += [f"- `{_md(s.path)}`: {_md(s.reason)}" for s in result.skipped]
        out += ["", "</details>", ""]
    return printable("\n".join(out))
