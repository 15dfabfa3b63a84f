"""The watcher's wire records: one JSON line each (``kind`` says which), and the hook payload.

Their fields are a contract with HA software (docs/ha/README.md): names never change meaning.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..vocabulary import JSONObject
from .freeze import FreezeState
from .hooks import HookResult


@dataclass(frozen=True, slots=True)
class VerdictSummary:
    """The part of the analysis verdict HA software is handed (the bundle has the rest)."""

    cause: str
    summary: str
    culprit: str | None
    signature: str
    confidence: float

    def to_json(self) -> JSONObject:
        return {
            "cause": self.cause, "summary": self.summary, "culprit": self.culprit,
            "signature": self.signature, "confidence": self.confidence,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Signal:
    """The HA signal: a guest froze (or is gone), why, and whether failing over is safe."""

    guest: str
    qmp: str
    qemu_pid: int | None
    state: str
    runstate: str | None
    cause: str | None
    failover_safe: bool
    reasons: tuple[str, ...]
    detected_by: str
    qemu_time: float | None
    time: float

    @classmethod
    def of(
        cls, guest: str, qmp: str, pid: int | None, freeze: FreezeState, detected_by: str,
        qemu_time: float | None,
    ) -> Signal:  # fmt: skip
        """The signal for ``freeze``, stamped now."""
        f = freeze
        return cls(guest, qmp, pid, f.state, f.runstate, f.cause, f.failover_safe, f.reasons,
                   detected_by, qemu_time, time.time())  # fmt: skip

    def to_json(self) -> JSONObject:
        return {
            "kind": "signal", "guest": self.guest, "qmp": self.qmp, "qemu_pid": self.qemu_pid,
            "state": self.state, "runstate": self.runstate, "cause": self.cause,
            "failover_safe": self.failover_safe, "reasons": list(self.reasons),
            "detected_by": self.detected_by, "qemu_time": self.qemu_time, "time": self.time,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class StateChange:
    """A guest's state seen on connecting, or a change that is not a freeze."""

    guest: str
    qmp: str
    qemu_pid: int | None
    state: str
    runstate: str | None
    detail: str | None = None

    def to_json(self) -> JSONObject:
        return {
            "kind": "state", "guest": self.guest, "qmp": self.qmp, "qemu_pid": self.qemu_pid,
            "state": self.state, "runstate": self.runstate, "detail": self.detail,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """Step (2): the bundle (``status`` complete/incomplete) or why there is none."""

    guest: str
    qmp: str
    status: Literal["complete", "incomplete", "failed", "skipped"]
    bundle: str | None
    reasons: tuple[str, ...]

    def to_json(self) -> JSONObject:
        return {
            "kind": "capture", "guest": self.guest, "qmp": self.qmp, "status": self.status,
            "bundle": self.bundle, "reasons": list(self.reasons),
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class AnalysisRecord:
    """Step (3): the verdict on a bundle, or why there is none."""

    guest: str
    bundle: str
    status: Literal["ok", "failed", "skipped"]
    verdict: VerdictSummary | None
    reason: str | None = None

    def to_json(self) -> JSONObject:
        return {
            "kind": "analysis", "guest": self.guest, "bundle": self.bundle,
            "status": self.status, "reason": self.reason,
            "verdict": self.verdict.to_json() if self.verdict else None,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class HookRecord:
    """How a hook run ended (also logged)."""

    guest: str
    result: HookResult

    def to_json(self) -> JSONObject:
        r = self.result
        return {
            "kind": "hook", "guest": self.guest, "phase": r.phase, "returncode": r.returncode,
            "timed_out": r.timed_out, "seconds": round(r.seconds, 3), "error": r.error,
        }  # fmt: skip


Record = Signal | StateChange | CaptureRecord | AnalysisRecord | HookRecord
Sink = Callable[[Record], None]
