"""``analyze`` on bundles of real KVM lab guests, and the same guests' QEMU logs as text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kvmha_forensics.capture.bundle import VENDOR_OF_KVM, kvm_module
from tests.conftest import DEBUGINFO, Lab

pytestmark = [pytest.mark.lab, pytest.mark.kvm]

# scenario, culprit, words the summary must contain, signature
EXPECTED = {
    "emulation-failure": (
        "pxor xmm0, xmmword ptr [rax]",
        "KVM could not emulate `pxor xmm0, xmmword ptr [rax]` (SSE load) against MMIO "
        "0xfed00000 (hpet).",
        "kvm-emulation-failure: pxor xmm, m128 (SSE) on MMIO hpet in long-64",
    ),
    "mmio-fetch": (
        "hpet",
        "KVM could not emulate an instruction: the vCPU fetched instructions from MMIO "
        "0xfed00000 (hpet).",
        "kvm-emulation-failure: instruction fetch from MMIO hpet in long-64",
    ),
}


def analyze_json(*args: str | Path) -> dict[str, Any]:
    """The CLI's JSON report, from a run that gave a verdict (exit 0)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kvmha_forensics",
            "analyze",
            *map(str, args),
            "--format",
            "json",
            "--debuginfo-dir",
            str(DEBUGINFO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def analyzer(doc: dict[str, Any], name: str) -> dict[str, Any]:
    (result,) = [a for a in doc["analyzers"] if a["name"] == name]
    return result  # type: ignore[no-any-return]


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_bundle_verdict_names_instruction_and_device(lab: Lab, scenario: str) -> None:
    culprit, summary, signature = EXPECTED[scenario]
    doc = analyze_json(lab.bundle(scenario))
    verdict = doc["verdict"]
    assert verdict["cause"] == "kvm-emulation-failure"
    assert verdict["analyzer"] == "instruction"
    assert verdict["culprit"] == culprit
    assert verdict["summary"] == summary
    assert verdict["signature"] == signature
    assert verdict["crashed_cpu"] == 0
    assert {e["artifact"] for e in verdict["evidence"]} >= {"qemu-stderr.log", "mtree.txt"}
    insn = analyzer(doc, "instruction")
    assert insn["status"] == "ok"
    assert insn["facts"]["cpu_mode"] == "long-64"
    assert insn["facts"]["target"]["source"] == "mtree"
    assert insn["facts"]["target"]["range"] == "0xfed00000-0xfed003ff"
    exit_result = analyzer(doc, "kvm-exit")
    assert exit_result["facts"]["suberror"]["name"] == "KVM_INTERNAL_ERROR_EMULATION"
    # a bundle records which KVM ran the guest: VMX/SVM names only for kvm_intel/kvm_amd,
    # "vendor unknown" for PVM (whose exit reasons are its own) rather than a guess
    vendor = VENDOR_OF_KVM.get(kvm_module())
    assert exit_result["facts"]["vendor"] == vendor
    assert ("vendor unknown" in json.dumps(exit_result["facts"])) == (vendor is None)


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_qemu_log_as_text_decodes_to_the_bundle_cause(lab: Lab, scenario: str) -> None:
    bundle = lab.bundle(scenario)
    whole = analyze_json(bundle)
    text = analyze_json("--qemu-log", bundle / "qemu-stderr.log")
    assert text["target"]["kind"] == "text"
    assert text["verdict"]["cause"] == whole["verdict"]["cause"]
    # the region comes from the fixed PC address table: same group, marked "probably"
    assert text["verdict"]["signature"] == whole["verdict"]["signature"]
    assert "probably hpet" in text["verdict"]["summary"]
    assert analyzer(text, "instruction")["facts"]["cpu_mode"] == "long-64"
