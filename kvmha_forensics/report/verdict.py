"""Combine the analyzers' findings into one verdict."""

from __future__ import annotations

from collections.abc import Sequence

from ..analysis import AnalyzerResult, Finding
from .model import Verdict

# When two findings are equally confident, the more specific cause wins (earlier = stronger).
SPECIFICITY = (
    "kvm-emulation-failure", "kvm-entry-failure", "kvm-internal-error", "triple-fault",
    "host-memory-error", "storage-nospace", "storage-io-error", "guest-oops", "guest-bug",
    "guest-lockup", "guest-hung-task", "guest-oom", "watchdog", "guest-panic", "unknown",
)  # fmt: skip


def decide(results: Sequence[AnalyzerResult]) -> Verdict:
    """The most confident finding (ties: the more specific cause); evidence from all that
    agree with it."""
    ranked: list[tuple[Finding, str]] = [(f, r.name) for r in results for f in r.outcome.findings]
    if not ranked:
        skipped = [f"{r.name} ({r.reason})" for r in results if r.status != "ok"]
        why = "; ".join(skipped) if skipped else "no analyzer recognised the failure"
        return Verdict("unknown", f"Cause unknown: {why}.", None, "unknown", 0.0, None, (), None)
    best, name = min(ranked, key=lambda fr: (-fr[0].confidence, SPECIFICITY.index(fr[0].cause)))
    evidence = list(best.evidence)
    for other, _ in ranked:
        if other is not best and other.cause == best.cause:
            evidence += [e for e in other.evidence if e not in evidence]
    crashed = best.crashed_cpu
    if crashed is None:
        crashed = next((f.crashed_cpu for f, _ in ranked if f.crashed_cpu is not None), None)
    return Verdict(
        best.cause, best.summary, best.culprit, best.signature, best.confidence, crashed,
        tuple(evidence), name,
    )  # fmt: skip
