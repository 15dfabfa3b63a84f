"""Is the guest frozen, why, and is it failover-safe? Decided from QMP, never assumed.

A guest is *failover-safe* when its vCPUs are stopped in an error runstate and nothing of the
old instance can still write: no block job or other job running (mirror and backup jobs go on
while the guest is paused), and no outgoing migration. Block devices need no separate check:
QEMU drains and flushes every block device before it enters a stop runstate (``do_vm_stop``
calls ``bdrv_drain_all`` then ``bdrv_flush_all``, softmmu/cpus.c), so a stopped runstate
means no guest request is still in flight; only jobs keep writing after it.

A guest is *gone* when its QEMU can no longer be reached; that is failover-safe only once its
QEMU process is known to have exited (nothing left that could write).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

from ..transport.base import Event, Guest
from ..transport.local import process_alive
from ..transport.replies import Job, MigrationInfo
from ..vocabulary import JSON, JSONObject

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


# Events of jobs and migrations: after one, only a new assessment says nothing writes.
WRITER_EVENTS = frozenset(
    {"JOB_STATUS_CHANGE", "BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED",
     "BLOCK_JOB_ERROR", "BLOCK_JOB_PENDING", "MIGRATION", "MIGRATION_PASS"}
)  # fmt: skip
# What QEMU does by itself right after these events: (event, its action) → the runstate
ANNOUNCED = {("GUEST_PANICKED", "pause"): "guest-panicked", ("BLOCK_IO_ERROR", "stop"): "io-error"}

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

    @classmethod
    def from_json(cls, doc: JSON) -> FreezeState:
        """Read back what ``serial.to_json`` wrote (a bundle's ``freeze.json``); raises
        ``ValueError`` on anything else."""
        if not isinstance(doc, dict) or doc.get("state") not in get_args(State):
            raise ValueError(f"not a freeze record: {doc!r:.80}")
        runstate, cause, reasons = doc.get("runstate"), doc.get("cause"), doc.get("reasons")
        events, details = doc.get("events") or [], doc.get("details") or {}
        if not (isinstance(runstate, str | None) and isinstance(cause, str | None)):
            raise ValueError("freeze record: runstate and cause must be strings or null")
        if not (isinstance(reasons, list) and isinstance(events, list)):
            raise ValueError("freeze record: reasons and events must be lists")
        if not isinstance(details, dict):
            raise ValueError("freeze record: details must be an object")
        return cls(
            doc["state"], runstate, cause, doc.get("failover_safe") is True,
            tuple(map(str, reasons)), tuple(Event.from_json(e) for e in events), details,
        )  # fmt: skip

    @property
    def quiet(self) -> bool:
        """Whether the assessment behind this state found no job and no migration running."""
        d = self.details
        if not all(key in d for key in ("block_jobs", "jobs", "migration")):
            return False  # not from an assessment
        return not writers(d["block_jobs"], d["jobs"], str(d["migration"]))

    @classmethod
    def announced(cls, events: Sequence[Event], quiet: bool) -> tuple[FreezeState, Event] | None:
        """The freeze the last of ``events`` that announces one says QEMU is entering
        (``GUEST_PANICKED`` that pauses, ``BLOCK_IO_ERROR`` that stops), before anyone is
        asked, and that event; failover-safe when the guest was ``quiet`` (:attr:`quiet`)
        since its last assessment."""
        for event in reversed(events):
            runstate = ANNOUNCED.get((event.name, str(event.data.get("action"))))
            if runstate is not None:
                reasons = () if quiet else ("a job or migration may still be running",)
                cause = refine_cause(runstate, events)
                return cls("frozen", runstate, cause, quiet, reasons, tuple(events)), event
        return None

    def with_events(self, events: Sequence[Event]) -> FreezeState:
        """This state with ``events`` as its evidence, and the cause they refine."""
        cause = refine_cause(self.runstate, events) if self.runstate else self.cause
        return replace(self, cause=cause, events=tuple(events))

    @classmethod
    def gone(
        cls, why: str, pids: Sequence[int] | None, events: Sequence[Event] = ()
    ) -> FreezeState:
        """QEMU is unreachable (``why``); ``pids``: its processes that may remain, None when
        they cannot be known (a TCP endpoint), which is not failover-safe."""
        alive = [pid for pid in pids or () if process_alive(pid)]
        reasons = [why]
        reasons += [f"QEMU process {pid} is still alive" for pid in alive]
        if pids is None:
            reasons.append("cannot tell whether the QEMU behind a TCP endpoint exited")
        shutdown = [e for e in events if e.name == "SHUTDOWN"]
        cause = "qemu-exited"
        if shutdown:
            cause = f"qemu-exited-after-shutdown-{shutdown[-1].data.get('reason', 'unknown')}"
        safe = pids is not None and not alive
        return cls("gone", None, cause, safe, tuple(reasons), tuple(events))


def refine_cause(runstate: str, events: Sequence[Event]) -> str | None:
    """The freeze cause, made more precise by the events (e.g. io-error → nospace).

    A host memory error that QEMU acted on (MEMORY_FAILURE with an action other than
    ``ignore``) explains any freeze: QEMU resets the guest when it cannot take the machine
    check, and that reset looks like a triple fault (SHUTDOWN, reason guest-reset)."""
    cause = RUNSTATES.get(runstate, ("paused", None))[1]
    if cause is not None and any(
        e.name == "MEMORY_FAILURE" and e.data.get("action") != "ignore" for e in events
    ):
        return "host-memory-error"
    for event in reversed(events):
        if event.name == "BLOCK_IO_ERROR" and cause == "io-error" and event.data.get("nospace"):
            return "io-error-nospace"
        if event.name == "SHUTDOWN" and cause == "shutdown":
            reason = str(event.data.get("reason", ""))
            return "triple-fault" if reason == "guest-reset" else f"shutdown-{reason}"
    return cause


def writers(block: JSON, jobs: JSON, migration: str) -> list[str]:
    """What may still write: running jobs (``query-block-jobs``, ``query-jobs`` replies),
    and the migration (``query-migrate``'s status)."""
    block_jobs = Job.list_from_json(block, "query-block-jobs", "device")
    found = [f"block job {job.id} ({job.type}) is still running"
             for job in block_jobs if job.status in ACTIVE_JOB and not job.paused]  # fmt: skip
    block_ids = {job.id for job in block_jobs}
    for job in Job.list_from_json(jobs, "query-jobs", "id"):
        # non-block jobs that write: snapshot-save, blockdev-create, amend
        if job.id not in block_ids and job.status in ACTIVE_JOB:
            found.append(f"job {job.id} ({job.type}) is still running")
    if migration in ACTIVE_MIGRATION:
        found.append(f"migration is {migration}")
    return found


async def assess(guest: Guest, events: Sequence[Event] = ()) -> FreezeState:
    """Query runstate, jobs and migration (all at once); decide failover safety.

    Raises what :class:`~..transport.base.Guest` methods raise."""
    import asyncio  # here: analysis reads freeze records without an event loop (~25 ms)

    runstate, block, jobs, mig = await asyncio.gather(
        guest.runstate(),
        guest.execute("query-block-jobs"),
        guest.execute("query-jobs"),
        guest.execute("query-migrate"),
    )
    mig_status = MigrationInfo.from_json(mig).status
    state, _ = RUNSTATES.get(runstate, ("paused", None))
    cause = refine_cause(runstate, events)
    reasons: list[str] = []
    if state != "frozen":
        reasons.append(f"runstate {runstate} is not an error stop")
    reasons += writers(block, jobs, mig_status)
    # the replies as QEMU sent them: freeze.json keeps every field, not only those read here
    details: JSONObject = {"block_jobs": block, "jobs": jobs, "migration": mig_status}
    return FreezeState(
        state=state,
        runstate=runstate,
        cause=cause,
        failover_safe=state == "frozen" and len(reasons) == 0,
        reasons=tuple(reasons),
        events=tuple(events),
        details=details,
    )
