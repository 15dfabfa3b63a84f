"""The watcher's wire records: one JSON line each (``kind`` says which), and the hook payload.

Their fields are a contract with HA software (docs/ha/README.md): names never change meaning.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ..serial import to_json
from ..vocabulary import JSONObject
from .freeze import FreezeState
from .hooks import HookResult


class Wire:
    """A record the watcher emits: its ``kind``, then its fields."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Any]]
    kind: ClassVar[str]

    def to_json(self) -> JSONObject:
        return {"kind": self.kind, **to_json(self)}


@dataclass(frozen=True, slots=True)
class VerdictSummary:
    """The part of the analysis verdict HA software is handed (the bundle has the rest)."""

    cause: str
    summary: str
    culprit: str | None
    signature: str
    confidence: float


@dataclass(frozen=True, slots=True)
class GuestState(Wire):
    """Which guest (its label, address and QEMU pid) and the state it is in."""

    guest: str
    qmp: str
    qemu_pid: int | None
    state: str
    runstate: str | None


@dataclass(frozen=True, slots=True)
class Signal(GuestState):
    """The HA signal: a guest froze (or is gone), why, and whether failing over is safe."""

    kind: ClassVar[str] = "signal"

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


@dataclass(frozen=True, slots=True)
class StateChange(GuestState):
    """A guest's state seen on connecting, or a change that is not a freeze."""

    kind: ClassVar[str] = "state"

    detail: str | None = None


@dataclass(frozen=True, slots=True)
class CaptureRecord(Wire):
    """Step (2): the bundle (``status`` complete/incomplete) or why there is none."""

    kind: ClassVar[str] = "capture"

    guest: str
    qmp: str
    status: Literal["complete", "incomplete", "failed", "skipped"]
    bundle: str | None
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AnalysisRecord(Wire):
    """Step (3): the verdict on a bundle, or why there is none."""

    kind: ClassVar[str] = "analysis"

    guest: str
    bundle: str
    status: Literal["ok", "failed", "skipped"]
    verdict: VerdictSummary | None
    reason: str | None = None


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
