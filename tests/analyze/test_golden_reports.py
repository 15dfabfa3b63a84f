"""Each lab scenario's bundle analyzes to the reviewed verdict in fixtures/reports/NAME.json.

Regenerate with ``pytest tests/analyze --update-goldens`` and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvmha_forensics.analyze import analyze, gather
from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.lab import scenarios
from tests import schemas
from tests.conftest import DEBUGINFO, Lab, require_kvm

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "reports"
STABLE = ("cause", "culprit", "signature", "crashed_cpu")
FROZEN = [s.name for s in scenarios.SCENARIOS if s.runstate != "running"]


@pytest.mark.lab
@pytest.mark.parametrize("name", FROZEN)
def test_verdict_matches_the_golden(lab: Lab, name: str, update_goldens: bool) -> None:
    inputs, problems = gather(lab.bundle(name), debuginfo_dirs=(DEBUGINFO,))
    report = analyze(inputs, problems).to_json()
    schemas.check_report(json.loads(json.dumps(report)))
    verdict = report["verdict"]
    assert isinstance(verdict, dict)
    got = {key: verdict[key] for key in STABLE}
    failed = [a["name"] for a in report["analyzers"] if a["status"] == "failed"]  # type: ignore[index, union-attr, attr-defined]
    assert failed == [], report["analyzers"]
    assert report["problems"] == []
    path = GOLDEN / f"{name}.json"
    if update_goldens:
        path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert got == json.loads(path.read_text())
    assert verdict["summary"] and verdict["evidence"]  # type: ignore[index]


GUEST_CRASHES = [
    s.name for s in scenarios.SCENARIOS if s.guest == "linux" and s.runstate == "guest-panicked"
]


@pytest.mark.lab
@pytest.mark.parametrize("name", GUEST_CRASHES)
def test_console_alone_gives_the_bundles_cause_and_signature(lab: Lab, name: str) -> None:
    golden = json.loads((GOLDEN / f"{name}.json").read_text())
    inputs, problems = gather(None, console=Path(lab.frozen(name).serial))
    verdict = analyze(inputs, problems).verdict
    assert (verdict.cause, verdict.signature) == (golden["cause"], golden["signature"])


@pytest.mark.lab
@pytest.mark.parametrize(
    ("name", "memory_format"),
    [("oops", "elf"), ("smp-panic", "elf"), ("panic", "kdump-zlib"), ("emulation-failure", "elf")],
)
def test_a_bare_vmcore_analyzes_like_its_bundle(lab: Lab, name: str, memory_format: str) -> None:
    """The dump alone (as `virsh dump --memory-only` or kdump would leave it), with the QEMU log
    for a KVM failure: the same verdict as the whole bundle."""
    require_kvm(scenarios.get(name))
    bundle = Bundle.open(lab.bundle(name, memory_format))
    dump = bundle.file("memory-elf") or bundle.file("memory-kdump")
    assert dump is not None
    log = bundle.file("qemu-log") if scenarios.get(name).guest == "baremetal" else None
    inputs, problems = gather(dump, qemu_log=log, debuginfo_dirs=(DEBUGINFO,))
    report = analyze(inputs, problems).to_json()
    assert report["target"] == {"kind": "vmcore", "path": str(dump)}
    assert report["problems"] == []
    verdict = report["verdict"]
    assert isinstance(verdict, dict)
    golden = json.loads((GOLDEN / f"{name}.json").read_text())
    assert {key: verdict[key] for key in STABLE} == golden
