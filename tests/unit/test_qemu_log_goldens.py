"""Golden expectations for every QEMU log in fixtures/logs: cause, title, culprit, signature.

Each ``NAME.log`` keeps its raw bytes (other tests read it as QEMU's stderr); its expectations
are in ``NAME.log.expected`` (tests/goldens.py). ``--update-goldens`` rewrites them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmha_forensics.analyze import analyze, gather
from tests.goldens import check_case, read_case, sidecar_of
from tests.unit.qemu_logs import LOGS

KEYS = ("CAUSE", "TITLE", "CULPRIT", "SIGNATURE")
CASES = sorted(LOGS.glob("*.log"))
READERS = ("kvm-exit", "instruction")  # the analyzers of a QEMU log (others add nothing)


def headers_of(path: Path) -> dict[str, str]:
    """What the QEMU-log analyzers conclude from the log alone."""
    inputs, problems = gather(None, qemu_log=path)
    verdict = analyze(inputs, problems, READERS).verdict
    return {
        "CAUSE": verdict.cause,
        "TITLE": verdict.summary,
        "CULPRIT": verdict.culprit or "",
        "SIGNATURE": verdict.signature,
    }


def test_every_log_is_a_case() -> None:
    assert len(CASES) >= 10
    assert [p.name for p in CASES if not sidecar_of(p).is_file()] == []


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_golden(path: Path, update_goldens: bool) -> None:
    case = read_case(path, KEYS, sidecar=True)
    check_case(case, headers_of(path), KEYS, update_goldens, {})
