"""How findings become the verdict (confidence tiers, specificity, ``refines``), and what the
triage cache key holds of the code that decides it."""

from __future__ import annotations

from typing import cast

from kvmha_forensics.analysis import Analyzer, AnalyzerResult, Confidence, Finding, Outcome
from kvmha_forensics.report.verdict import decide
from kvmha_forensics.triage.cache import code_fingerprint
from kvmha_forensics.vocabulary import Cause


def result(
    name: str, cause: Cause, confidence: Confidence, refines: frozenset[str] = frozenset()
) -> AnalyzerResult:
    finding = Finding(cause, f"{name} says {cause}", f"{cause}: {name}", confidence)
    return AnalyzerResult(name, "ok", 0.0, None, Outcome((finding,)), refines)


def test_the_most_confident_finding_is_the_verdict() -> None:
    verdict = decide([result("a", "guest-panic", Confidence.RECORDED),
                      result("b", "guest-oops", Confidence.MEMORY)])  # fmt: skip
    assert (verdict.analyzer, verdict.confidence) == ("b", 0.95)


def test_between_equals_the_more_specific_cause_wins() -> None:
    verdict = decide([result("a", "guest-panic", Confidence.RECORDED),
                      result("b", "kvm-internal-error", Confidence.RECORDED)])  # fmt: skip
    assert verdict.cause == "kvm-internal-error"


def test_a_refining_analyzer_wins_on_the_same_cause_whatever_the_confidence() -> None:
    coarse = result("kvm-exit", "kvm-emulation-failure", Confidence.CONFIRMED)
    fine = result(
        "instruction", "kvm-emulation-failure", Confidence.RECORDED, frozenset({"kvm-exit"})
    )
    verdict = decide([coarse, fine])
    assert verdict.analyzer == "instruction" and verdict.confidence == 0.8
    assert decide([coarse]).analyzer == "kvm-exit"  # alone, it is the verdict


def test_refines_holds_only_for_the_same_cause() -> None:
    other = result("kvm-exit", "kvm-entry-failure", Confidence.CONFIRMED)
    fine = result(
        "instruction", "kvm-emulation-failure", Confidence.RECORDED, frozenset({"kvm-exit"})
    )
    assert decide([other, fine]).analyzer == "kvm-exit"


def test_an_analyzer_version_changes_the_cache_key() -> None:
    def analyzer(version: int) -> type[Analyzer]:
        attributes = {
            "name": "one",
            "version": version,
            "description": "a test analyzer",
            "requires": frozenset(),
            "refines": frozenset(),
            "run": lambda s, c: Outcome(),
        }
        return cast(type[Analyzer], type("One", (), attributes))

    same = [analyzer(v) for v in (1, 1, 2)]  # the same module, name and source file
    assert code_fingerprint((same[0],)) == code_fingerprint((same[1],))
    assert code_fingerprint((same[0],)) != code_fingerprint((same[2],))
