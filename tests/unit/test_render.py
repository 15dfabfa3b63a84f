"""Renderers keep the report's text as it is (no markup eaten, no excerpt lost in JSON)."""

from __future__ import annotations

import json

from kvmha_forensics.analysis import AnalyzerResult, Evidence, Outcome
from kvmha_forensics.report.model import Report, Verdict
from kvmha_forensics.report.render import to_json, to_markdown, to_text

SUMMARY = "KVM could not emulate `pxor xmm0, xmmword ptr [rax]` (SSE load) against MMIO [hpet]."


def report() -> Report:
    excerpt = "\n".join(f"line {i}" for i in range(30))
    verdict = Verdict(
        "kvm-emulation-failure", SUMMARY, "pxor xmm0, xmmword ptr [rax]",
        "kvm-emulation-failure: pxor xmm, m128 (SSE) on MMIO hpet", 0.85, 0,
        (Evidence("qemu-stderr.log", "line 2", excerpt),), "instruction",
    )  # fmt: skip
    result = AnalyzerResult("instruction", "ok", 0.01, None, Outcome())
    return Report("bundle", "bundle", verdict, (result,), ())


def test_text_keeps_brackets_and_cuts_long_excerpts() -> None:
    text = to_text(report())
    assert "[rax]" in text and "[hpet]" in text
    assert "line 11" in text and "line 12" not in text and "18 more lines" in text


def test_json_and_markdown_keep_everything() -> None:
    doc = json.loads(to_json(report()))
    assert doc["verdict"]["summary"] == SUMMARY
    assert doc["verdict"]["evidence"][0]["excerpt"].count("\n") == 29
    assert SUMMARY in to_markdown(report())
