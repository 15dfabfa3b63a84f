"""Combine the analyzers' findings into one verdict."""

from __future__ import annotations

from collections.abc import Sequence

from ..analysis import AnalyzerResult, Finding
from ..vocabulary import specificity
from .model import Verdict


def decide(results: Sequence[AnalyzerResult]) -> Verdict:
    """The most confident finding (ties: the more specific cause), unless an analyzer that
    refines its own found the same cause; evidence from all that agree with it."""
    ranked: list[tuple[Finding, str]] = [(f, r.name) for r in results for f in r.outcome.findings]
    refined = {(name, f.cause) for r in results for f in r.outcome.findings for name in r.refines}
    if not ranked:
        skipped = [f"{r.name} ({r.reason})" for r in results if r.status != "ok"]
        why = "; ".join(skipped) if skipped else "no analyzer recognised the failure"
        return Verdict("unknown", f"Cause unknown: {why}.", None, "unknown", 0.0, None, (), None)
    best, name = min(
        ranked,
        key=lambda fr: (
            (fr[1], fr[0].cause) in refined,
            -fr[0].confidence,
            specificity(fr[0].cause),
        ),
    )
    evidence = list(best.evidence)
    for other, _ in ranked:
        if other is not best and other.cause == best.cause:
            evidence += [e for e in other.evidence if e not in evidence]
    crashed = best.crashed_cpu
    if crashed is None:
        crashed = next((f.crashed_cpu for f, _ in ranked if f.crashed_cpu is not None), None)
    return Verdict(
        best.cause, best.summary, best.culprit, best.signature, float(best.confidence), crashed,
        tuple(evidence), name,
    )  # fmt: skip
