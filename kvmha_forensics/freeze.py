"""Is the guest frozen, why, and is it failover-safe? Decided from QMP, never assumed.

A guest is *failover-safe* when its vCPUs are stopped in an error runstate and nothing of the
old instance can still write: no block job running (mirror and backup jobs go on while the
guest is paused), no outgoing migration, and no block device with I/O still in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

from .qmp import Event, JSONObject, QMPSession

State = Literal["running", "frozen", "paused", "gone"]

# QEMU RunState → (state, freeze cause). Error runstates freeze the guest; the others are
# a running guest or a pause someone asked for (operator, migration, snapshot).
RUNSTATES: dict[str, tuple[State, str | None]] = {
    "running": ("running", None),
    "guest-panicked": ("frozen", "guest-panicked"),
    "internal-error": ("frozen", "internal-error"),
    "io-error": ("frozen", "io-error"),
    "shutdown": ("frozen", "shutdown"),
    "watchdog": ("frozen", "watchdog"),
    "paused": ("paused", None),
    "prelaunch": ("paused", None),
    "debug": ("paused", None),
    "suspended": ("paused", None),
    "inmigrate": ("paused", None),
    "postmigrate": ("paused", None),
    "finish-migrate": ("paused", None),
    "save-vm": ("paused", None),
    "restore-vm": ("paused", None),
    "colo": ("paused", None),
}

FREEZE_EVENTS = frozenset(
    {"STOP", "GUEST_PANICKED", "GUEST_CRASHLOADED", "BLOCK_IO_ERROR", "MEMORY_FAILURE",
     "SHUTDOWN", "WATCHDOG", "RESET"}
)  # fmt: skip


ACTIVE_JOB = frozenset({"created", "running", "ready", "waiting", "pending", "aborting"})
ACTIVE_MIGRATION = frozenset(
    {"setup", "active", "pre-switchover", "device", "postcopy-active", "postcopy-paused",
     "postcopy-recover", "wait-unplug", "cancelling"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FreezeState:
    """The guest's state as HA software needs it, with the evidence behind the verdict."""

    state: State
    runstate: str | None
    cause: str | None
    failover_safe: bool
    reasons: tuple[str, ...]
    events: tuple[Event, ...] = field(default=())
    details: JSONObject = field(default_factory=dict)

    def to_json(self) -> JSONObject:
        return {
            "state": self.state,
            "runstate": self.runstate,
            "cause": self.cause,
            "failover_safe": self.failover_safe,
            "reasons": list(self.reasons),
            "events": [e.to_json() for e in self.events],
            "details": self.details,
        }


def refine_cause(runstate: str, events: Sequence[Event]) -> str | None:
    """The freeze cause, made more precise by the events (e.g. io-error → nospace)."""
    cause = RUNSTATES.get(runstate, ("paused", None))[1]
    for event in reversed(events):
        if event.name == "BLOCK_IO_ERROR" and cause == "io-error" and event.data.get("nospace"):
            return "io-error-nospace"
        if event.name == "SHUTDOWN" and cause == "shutdown":
            reason = str(event.data.get("reason", ""))
            return "triple-fault" if reason == "guest-reset" else f"shutdown-{reason}"
        if event.name == "MEMORY_FAILURE" and cause is not None:
            return "host-memory-error"
    return cause


async def assess(qmp: QMPSession, events: Sequence[Event] = ()) -> FreezeState:
    """Query runstate, block jobs, migration and block devices; decide failover safety."""
    status = cast(JSONObject, await qmp.execute("query-status"))
    runstate = str(status.get("status"))
    state, _ = RUNSTATES.get(runstate, ("paused", None))
    cause = refine_cause(runstate, events)
    jobs = cast(list[JSONObject], await qmp.execute("query-block-jobs"))
    migration = cast(JSONObject, await qmp.execute("query-migrate"))
    reasons: list[str] = []
    if state != "frozen":
        reasons.append(f"runstate {runstate} is not an error stop")
    for job in jobs:
        if job.get("status") in ACTIVE_JOB and not job.get("paused"):
            reasons.append(f"block job {job.get('device')} ({job.get('type')}) is still running")
    mig_status = str(migration.get("status", "none"))
    if mig_status in ACTIVE_MIGRATION:
        reasons.append(f"migration is {mig_status}")
    details: JSONObject = {"block_jobs": list(jobs), "migration": mig_status}
    return FreezeState(
        state=state,
        runstate=runstate,
        cause=cause,
        failover_safe=state == "frozen" and len(reasons) == 0,
        reasons=tuple(reasons),
        events=tuple(events),
        details=details,
    )
