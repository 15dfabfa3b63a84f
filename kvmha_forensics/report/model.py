"""The report model: the verdict and what each analyzer found. Its JSON is a stable contract
(docs/report-schema.md)."""

from __future__ import annotations

from dataclasses import dataclass

from .. import __version__
from ..analysis import AnalyzerResult, Evidence
from ..serial import to_json
from ..signature import signature_id
from ..vocabulary import JSON, Cause, JSONObject

REPORT_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Verdict:
    """The one answer: why the guest froze, who is to blame, and what shows it."""

    cause: Cause
    summary: str
    culprit: str | None
    signature: str
    confidence: float
    crashed_cpu: int | None
    evidence: tuple[Evidence, ...]
    analyzer: str | None

    def to_json(self) -> JSONObject:
        return to_json(self, signature_id=signature_id(self.signature))


@dataclass(frozen=True, slots=True)
class Report:
    target: str
    kind: str
    verdict: Verdict
    analyzers: tuple[AnalyzerResult, ...]
    problems: tuple[str, ...]

    @property
    def partial(self) -> bool:
        """Whether something was missing, damaged or failing while analyzing."""
        return bool(self.problems) or any(a.status == "failed" for a in self.analyzers)

    def to_json(self) -> dict[str, JSON]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "tool": {"name": "kvmha-forensics", "version": __version__},
            "target": {"path": self.target, "kind": self.kind},
            "verdict": self.verdict.to_json(),
            "analyzers": [a.to_json() for a in self.analyzers],
            "problems": list(self.problems),
            "partial": self.partial,
        }
