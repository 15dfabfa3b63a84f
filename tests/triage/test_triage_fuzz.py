"""Property tests: the input classifier and triage never raise on arbitrary or mutated input;
an input is either analyzed or skipped with a reason."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvmha_forensics.sources.classify import HEAD_BYTES, classify_head
from kvmha_forensics.triage.grouping import triage

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
REAL = [
    p.read_bytes()
    for p in sorted((FIXTURES / "logs").glob("*.log"))
    + sorted((FIXTURES / "console").glob("0*.txt"))
    if p.stat().st_size
]


@st.composite
def mutated_logs(draw: st.DrawFn) -> bytes:
    """A real log with bytes flipped, spans deleted or duplicated, and cut anywhere."""
    data = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["flip", "delete", "duplicate", "insert"]))
        span = draw(st.integers(1, 64))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[at : at + span]
        elif op == "duplicate":
            data[at:at] = data[at : at + span]
        else:
            data[at:at] = draw(st.binary(max_size=span))
    return bytes(data[: draw(st.integers(0, len(data)))])


inputs = st.one_of(st.binary(max_size=2048), st.text(max_size=2048).map(str.encode), mutated_logs())


@given(inputs)
@settings(max_examples=300, deadline=None)
def test_classifier_never_raises(data: bytes) -> None:
    found = classify_head(Path("x"), data[:HEAD_BYTES], len(data))
    assert (found.kind is None) != (found.skip is None)


@given(inputs)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_triage_never_raises(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.log"
        path.write_bytes(data)
        result = triage([Path(tmp)])
    assert result.stats.inputs == 1
    assert len(result.skipped) + sum(len(g.members) for g in result.groups) == 1
    for skipped in result.skipped:
        assert skipped.reason and "\n" not in skipped.reason
