"""The HA state machine on a scripted guest (tests/unit/fake_guest.py): assess, status and its
exit codes, the watcher's loop, and capture's step failures. The same paths run on real QEMU
in tests/ha and tests/capture; these pin each transition without one."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.capture.steps import Capture, CaptureOptions, Progress
from kvmha_forensics.errors import (
    AddressMissing,
    CommandFailed,
    GuestGone,
    GuestHeld,
    GuestStateError,
    NotAMonitor,
    TransportConfigError,
    TransportTimeout,
)
from kvmha_forensics.ha.freeze import assess
from kvmha_forensics.ha.records import CaptureRecord, Record, Signal, StateChange
from kvmha_forensics.ha.status import StatusExit, status
from kvmha_forensics.ha.watch import Watcher, WatchOptions
from kvmha_forensics.transport.base import Event
from tests.unit.fake_guest import FakeAddress, FakeDomain, FakeGuest, event

MIRROR = {"device": "drive0", "type": "mirror", "status": "running", "paused": False}
BOUND = 10.0  # seconds before a stuck test fails instead of hanging (never an assertion)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, BOUND))


# --- assess ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runstate", "state", "cause"),
    [
        ("running", "running", None),
        ("paused", "paused", None),
        ("postmigrate", "paused", None),
        ("internal-error", "frozen", "internal-error"),
        ("guest-panicked", "frozen", "guest-panicked"),
        ("io-error", "frozen", "io-error"),
    ],
)
def test_assess_maps_the_runstate(runstate: str, state: str, cause: str | None) -> None:
    freeze = run(assess(FakeGuest(state=runstate)))
    assert (freeze.state, freeze.cause) == (state, cause)
    assert freeze.failover_safe is (state == "frozen")
    assert freeze.runstate == runstate


def test_a_frozen_guest_with_a_running_mirror_is_not_failover_safe() -> None:
    freeze = run(assess(FakeGuest(state="io-error", block_jobs=[MIRROR])))
    assert freeze.state == "frozen" and not freeze.failover_safe
    assert freeze.reasons == ("block job drive0 (mirror) is still running",)


def test_a_paused_block_job_and_finished_jobs_do_not_write() -> None:
    paused = {**MIRROR, "paused": True}
    done = {"id": "snap", "type": "snapshot-save", "status": "concluded"}
    freeze = run(assess(FakeGuest(state="io-error", block_jobs=[paused], jobs=[done])))
    assert freeze.failover_safe and freeze.reasons == ()


def test_other_jobs_and_migration_make_it_unsafe() -> None:
    job = {"id": "snap", "type": "snapshot-save", "status": "running"}
    freeze = run(assess(FakeGuest(state="internal-error", jobs=[job], migration="active")))
    assert freeze.reasons == ("job snap (snapshot-save) is still running", "migration is active")


def test_events_refine_the_cause() -> None:
    nospace = event("BLOCK_IO_ERROR", nospace=True)
    freeze = run(assess(FakeGuest(state="io-error"), [nospace]))
    assert freeze.cause == "io-error-nospace" and freeze.events == (nospace,)


def test_assess_raises_what_the_guest_raises() -> None:
    guest = FakeGuest(state="running")
    guest.hang_up()
    with pytest.raises(GuestGone):
        run(assess(guest))


# --- status ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("guest", "code"),
    [
        (FakeGuest(state="running"), StatusExit.RUNNING),
        (FakeGuest(state="internal-error"), StatusExit.FROZEN_SAFE),
        (FakeGuest(state="internal-error", block_jobs=[MIRROR]), StatusExit.FROZEN_UNSAFE),
        (FakeGuest(state="paused"), StatusExit.PAUSED),
    ],
)
def test_status_exit_codes_of_a_reachable_guest(guest: FakeGuest, code: StatusExit) -> None:
    guest.pid = 4242
    result = run(status(FakeAddress([guest])))
    assert result.exit_code == code
    assert result.qemu_pid == 4242 and result.qmp == "fake.qmp"


@pytest.mark.parametrize(
    ("error", "pids", "state", "code", "safe"),
    [
        (GuestGone("no QMP socket at fake.qmp"), [], "gone", StatusExit.GONE, True),
        (GuestGone("connection refused"), None, "gone", StatusExit.GONE, False),  # TCP
        (GuestHeld("no greeting"), [], "busy", StatusExit.BUSY, False),
        (TransportTimeout("connecting timed out"), [], "busy", StatusExit.BUSY, False),
    ],
)
def test_status_maps_the_error_class_to_a_state(
    error: Exception, pids: list[int] | None, state: str, code: StatusExit, safe: bool
) -> None:
    result = run(status(FakeAddress([error], pids=pids)))  # type: ignore[list-item]
    assert (result.state, result.exit_code, result.failover_safe) == (state, code, safe)
    assert result.reasons[0].startswith(str(error).split(":")[0])


def test_status_of_a_gone_guest_whose_qemu_lingers_is_not_safe() -> None:
    result = run(status(FakeAddress([GuestGone("lost")], pids=[os.getpid()])))
    assert result.exit_code == StatusExit.GONE and not result.failover_safe
    assert f"QEMU process {os.getpid()} is still alive" in result.reasons


class Hanging(FakeGuest):
    """A guest whose monitor takes commands and never answers them."""

    async def execute(self, command: str, arguments: object = None, **_: object) -> object:
        await asyncio.Event().wait()
        return None


def test_status_says_busy_when_the_guest_never_answers() -> None:
    result = run(status(FakeAddress([Hanging()]), timeout=0.05))
    assert result.exit_code == StatusExit.BUSY
    assert result.reasons == ("QEMU did not answer within 0.05s",)


def test_status_raises_for_a_wrong_address() -> None:
    with pytest.raises(NotAMonitor):
        run(status(FakeAddress([NotAMonitor("x does not speak QMP")])))


def test_status_raises_when_qemu_refuses_query_status() -> None:
    guest = FakeGuest(replies={"query-status": CommandFailed("QEMU refused query-status")})
    with pytest.raises(CommandFailed):
        run(status(FakeAddress([guest])))


# --- the watcher ----------------------------------------------------------------------------


class Script:
    """A watcher over fake addresses, and the records it emits."""

    def __init__(
        self, *addresses: FakeAddress, poll: float = 0.01, retry_max: float = 0.02,
        out: Path | None = None,
    ) -> None:  # fmt: skip
        self.records: list[Record] = []
        opts = WatchOptions(endpoints=addresses, analyze=False, poll_interval=poll,
                            retry_max=retry_max, out=out, memory_format="none")  # fmt: skip
        self.watcher = Watcher(opts, self.records.append, analyzer=None)

    async def until(self, what: Callable[[Record], bool]) -> Record:
        """The first record (old or new) that matches, waiting for it."""
        while True:
            found = next((r for r in self.records if what(r)), None)
            if found is not None:
                return found
            await asyncio.sleep(0.001)

    def play(self, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run the watcher while ``scenario`` drives the guests, then stop it."""

        async def both() -> None:
            task = asyncio.create_task(self.watcher.run())
            await scenario()
            self.watcher.stop()
            await task

        run(both())

    def signals(self) -> list[Signal]:
        return [r for r in self.records if isinstance(r, Signal)]


def is_state(state: str, detail: str | None = None) -> Callable[[Record], bool]:
    return lambda r: isinstance(r, StateChange) and r.state == state and detail in (None, r.detail)


def test_watch_signals_unsafe_then_safe_then_gone() -> None:
    guest = FakeGuest(state="running", pid=None)
    address = FakeAddress([guest])
    script = Script(address)

    async def scenario() -> None:
        await script.until(is_state("running", "connected"))
        guest.state, guest.block_jobs = "internal-error", [MIRROR]
        guest.emit(event("STOP"))
        await script.until(lambda r: isinstance(r, Signal) and not r.failover_safe)
        guest.block_jobs = []  # the mirror ends: the same freeze is now safe
        await script.until(lambda r: isinstance(r, Signal) and r.failover_safe)
        guest.hang_up()
        await script.until(lambda r: isinstance(r, Signal) and r.state == "gone")
        await script.until(is_state("unreachable"))  # reconnecting finds nothing

    script.play(scenario)
    unsafe, safe, gone = script.signals()
    assert (unsafe.state, unsafe.cause, unsafe.detected_by) == (
        "frozen", "internal-error", "event STOP",
    )  # fmt: skip
    assert unsafe.reasons == ("block job drive0 (mirror) is still running",)
    assert (safe.state, safe.failover_safe, safe.detected_by) == ("frozen", True, "poll")
    assert (gone.cause, gone.detected_by, gone.failover_safe) == (
        "qemu-exited", "connection lost", True,
    )  # fmt: skip
    assert address.connects >= 2  # it reconnected


def test_watch_a_pause_is_a_state_change_not_a_signal() -> None:
    guest = FakeGuest(state="running")
    script = Script(FakeAddress([guest]))

    async def scenario() -> None:
        await script.until(is_state("running", "connected"))
        guest.becomes("paused", event("STOP"))
        await script.until(is_state("paused", "event STOP"))

    script.play(scenario)
    assert script.signals() == []


def test_watch_a_second_freeze_after_a_restart_is_signaled_again() -> None:
    first, second = FakeGuest(state="running", pid=None), FakeGuest(state="running", pid=None)
    script = Script(FakeAddress([first, second]))

    async def scenario() -> None:
        await script.until(is_state("running", "connected"))
        first.becomes("guest-panicked", event("GUEST_PANICKED", action="pause"))
        await script.until(lambda r: isinstance(r, Signal) and r.state == "frozen")
        first.hang_up()
        await script.until(lambda r: isinstance(r, Signal) and r.state == "gone")
        await script.until(
            lambda r: is_state("running", "connected")(r) and r is not script.records[0]
        )
        second.becomes("internal-error", event("STOP"))
        await script.until(lambda r: len([s for s in script.signals() if s.state == "frozen"]) == 2)

    script.play(scenario)
    frozen = [s for s in script.signals() if s.state == "frozen"]
    assert [s.cause for s in frozen] == ["guest-panicked", "internal-error"]
    assert [s.detected_by for s in frozen] == ["event GUEST_PANICKED", "event STOP"]


def test_watch_a_guest_frozen_when_first_seen_is_signaled_on_connect() -> None:
    script = Script(FakeAddress([FakeGuest(state="io-error")]))

    async def scenario() -> None:
        await script.until(lambda r: isinstance(r, Signal))

    script.play(scenario)
    (signal,) = script.signals()
    assert (signal.cause, signal.detected_by, signal.failover_safe) == ("io-error", "connect", True)


def test_watch_resumed_guest_starts_a_new_episode() -> None:
    guest = FakeGuest(state="running")
    script = Script(FakeAddress([guest]))

    async def scenario() -> None:
        await script.until(is_state("running", "connected"))
        guest.becomes("internal-error", event("STOP"))
        await script.until(lambda r: isinstance(r, Signal))
        guest.becomes("running", event("RESUME"))  # an operator resumed it (cont)
        await script.until(is_state("running", "event RESUME"))  # any event: runstate read
        guest.becomes("internal-error", event("STOP"))
        await script.until(lambda r: len(script.signals()) == 2)

    script.play(scenario)
    assert [s.cause for s in script.signals()] == ["internal-error", "internal-error"]


def test_watch_a_freeze_whose_event_never_came_is_caught_by_the_poll() -> None:
    guest = FakeGuest(state="running")
    script = Script(FakeAddress([guest]))

    async def scenario() -> None:
        await script.until(is_state("running", "connected"))
        guest.state = "internal-error"  # no STOP: the event was lost
        await script.until(lambda r: isinstance(r, Signal))

    script.play(scenario)
    (signal,) = script.signals()
    assert (signal.cause, signal.detected_by) == ("internal-error", "poll")


def test_watch_a_call_the_transport_lacks_is_unreachable_not_gone() -> None:
    lacking = TransportConfigError("get job stats on vm: this function is not supported")
    guest = FakeGuest(state="running", replies={"query-jobs": lacking})
    address = FakeAddress([guest, guest, guest])
    script = Script(address)

    async def scenario() -> None:
        await script.until(is_state("unreachable"))
        while address.sessions:  # it tries again (at --retry-max's pace), quietly
            await asyncio.sleep(0.001)

    script.play(scenario)
    assert script.signals() == []
    assert [r.detail for r in script.records] == [str(lacking)]  # one record, not one a try


def test_watch_a_socket_not_there_yet_is_tried_again_soon() -> None:
    guest = FakeGuest(state="running")
    script = Script(FakeAddress([AddressMissing("no QMP socket at fake.qmp"), guest]),
                    retry_max=3600)  # fmt: skip

    async def scenario() -> None:
        await script.until(is_state("running", "connected"))  # not after --retry-max

    script.play(scenario)
    assert [r.state for r in script.records[:2]] == ["unreachable", "running"]


def answers_then(guest: FakeGuest, first: str, then: Callable[[], None]) -> None:
    """From now on the guest's next ``query-status`` answers ``first``, then calls ``then``
    (which changes the guest) before the answer reaches the watcher."""

    def reply(_: object) -> dict[str, object]:
        answer = {"status": first if then in pending else guest.state}
        if then in pending:
            pending.remove(then)
            then()
        return answer  # type: ignore[return-value]

    pending = [then]
    guest.replies["query-status"] = reply  # type: ignore[assignment]


def test_watch_a_panic_whose_stop_came_with_the_answer_is_read_again_at_once() -> None:
    guest = FakeGuest(state="running")
    script = Script(FakeAddress([guest]), poll=3600)  # no poll to fall back on

    async def scenario() -> None:
        await script.until(is_state("running", "connected"))
        stop = event("STOP")
        answers_then(guest, "running", lambda: guest.becomes("guest-panicked", stop))
        guest.emit(Event("GUEST_PANICKED", {"action": "pause"}, 7.0))
        await script.until(lambda r: isinstance(r, Signal))

    script.play(scenario)
    (signal,) = script.signals()
    assert (signal.cause, signal.detected_by, signal.qemu_time) == (
        "guest-panicked", "event GUEST_PANICKED", 7.0,
    )  # fmt: skip


def test_watch_a_freeze_seen_by_the_poll_after_its_event_keeps_the_event() -> None:
    guest = FakeGuest(state="running")
    script = Script(FakeAddress([guest]))

    async def scenario() -> None:
        await script.until(is_state("running", "connected"))

        def stops_without_event() -> None:  # the STOP was lost: only the poll sees it
            guest.state = "guest-panicked"

        answers_then(guest, "running", stops_without_event)
        guest.emit(Event("GUEST_PANICKED", {"action": "pause"}, 7.0))
        await script.until(lambda r: isinstance(r, Signal))

    script.play(scenario)
    (signal,) = script.signals()
    assert (signal.detected_by, signal.qemu_time) == ("event GUEST_PANICKED", 7.0)


def test_watch_an_event_during_the_assessment_refines_the_cause() -> None:
    guest = FakeGuest(state="running")
    script = Script(FakeAddress([guest]), poll=3600)

    async def scenario() -> None:
        await script.until(is_state("running", "connected"))
        nospace = event("BLOCK_IO_ERROR", nospace=True)
        answers_then(guest, "io-error", lambda: guest.emit(nospace))  # sent after the answer
        guest.becomes("io-error", event("STOP"))
        await script.until(lambda r: isinstance(r, Signal))

    script.play(scenario)
    (signal,) = script.signals()
    assert (signal.cause, signal.detected_by) == ("io-error-nospace", "event STOP")


def libvirt_panic(domain: FakeDomain, script: Script, *before: Event) -> Callable[[], Any]:
    """The domain panics while libvirtd is busy with it: the signal must come from QEMU's
    event alone; then libvirtd answers (the confirmation)."""

    async def scenario() -> None:
        await script.until(is_state("running", "connected"))
        domain.emit(*before)
        await asyncio.sleep(0.05)  # the watcher has read them
        domain.busy.set()
        domain.becomes("guest-panicked", Event("GUEST_PANICKED", {"action": "pause"}, 7.0))
        await script.until(lambda r: isinstance(r, Signal))
        domain.busy.clear()
        domain.done.set()
        domain.emit(event("STOP"))
        await asyncio.sleep(0.05)  # the confirmation is read

    return scenario


def test_watch_libvirt_monitor_signals_from_qemus_event_before_libvirtd_answers() -> None:
    domain = FakeDomain(state="running")
    script = Script(FakeAddress([domain]), poll=3600)
    script.play(libvirt_panic(domain, script))
    (signal,) = script.signals()  # the confirmation agreed: nothing more
    assert (signal.cause, signal.failover_safe, signal.reasons) == ("guest-panicked", True, ())
    assert (signal.detected_by, signal.qemu_time) == ("event GUEST_PANICKED", 7.0)
    assert [r for r in script.records if isinstance(r, StateChange)][1:] == []


def test_watch_libvirt_monitor_event_signal_is_unsafe_after_a_job_event() -> None:
    """A job's event since the last assessment: the early signal is not failover-safe; the
    confirmation finds no job, and the safe signal follows."""
    domain = FakeDomain(state="running")
    script = Script(FakeAddress([domain]), poll=3600)
    job = event("JOB_STATUS_CHANGE", id="copy0", status="concluded")
    script.play(libvirt_panic(domain, script, job))
    early, confirmed = script.signals()
    assert (early.failover_safe, early.reasons) == (
        False, ("a job or migration may still be running",),
    )  # fmt: skip
    assert (confirmed.failover_safe, confirmed.detected_by) == (True, "event GUEST_PANICKED")


def test_watch_libvirt_monitor_event_signal_is_unsafe_with_a_job_at_connect() -> None:
    domain = FakeDomain(state="running", block_jobs=[MIRROR])
    script = Script(FakeAddress([domain]), poll=3600)
    script.play(libvirt_panic(domain, script))
    (signal,) = script.signals()  # the mirror still runs at the confirmation: the same
    assert not signal.failover_safe


def test_watch_libvirt_monitor_signals_an_io_error_from_its_event() -> None:
    domain = FakeDomain(state="running")
    script = Script(FakeAddress([domain]), poll=3600)

    async def scenario() -> None:
        await script.until(is_state("running", "connected"))
        domain.busy.set()
        nospace = Event("BLOCK_IO_ERROR", {"action": "stop", "nospace": True}, 8.0)
        domain.becomes("io-error", nospace)
        await script.until(lambda r: isinstance(r, Signal))
        domain.busy.clear()
        domain.done.set()

    script.play(scenario)
    (signal,) = script.signals()
    assert (signal.cause, signal.failover_safe, signal.detected_by, signal.qemu_time) == (
        "io-error-nospace", True, "event BLOCK_IO_ERROR", 8.0,
    )  # fmt: skip


def test_watch_libvirt_capture_waits_for_the_state_that_confirms_the_event(
    tmp_path: Path,
) -> None:
    """libvirtd still says 'running' (it has not handled QEMU's events yet): the signal goes
    out from the event, the capture waits for a state read that shows the freeze."""
    domain = FakeDomain(state="running", replies=frozen_guest().replies)
    script = Script(FakeAddress([domain]), poll=3600, out=tmp_path / "out")

    async def scenario() -> None:
        await script.until(is_state("running", "connected"))
        domain.emit(Event("GUEST_PANICKED", {"action": "pause"}, 7.0))
        await script.until(lambda r: isinstance(r, Signal))
        await asyncio.sleep(0.2)
        assert not [r for r in script.records if isinstance(r, CaptureRecord)]
        domain.becomes("guest-panicked", event("STOP"))
        await script.until(lambda r: isinstance(r, CaptureRecord))

    script.play(scenario)
    (captured,) = [r for r in script.records if isinstance(r, CaptureRecord)]
    assert captured.status == "complete", captured.reasons
    assert len(script.signals()) == 1


def test_watch_libvirt_api_only_waits_for_libvirts_state() -> None:
    """Without the monitor pass-through the events are libvirt's: no early signal."""
    domain = FakeDomain(state="running", monitor=False)
    script = Script(FakeAddress([domain]), poll=3600)

    async def scenario() -> None:
        await script.until(is_state("running", "connected"))
        domain.busy.set()
        domain.becomes("guest-panicked", Event("GUEST_PANICKED", {"action": "pause"}, 7.0))
        await asyncio.sleep(0.1)
        assert script.signals() == []  # waiting for libvirtd
        domain.busy.clear()
        domain.done.set()
        await script.until(lambda r: isinstance(r, Signal))

    script.play(scenario)
    assert [s.failover_safe for s in script.signals()] == [True]


# --- capture's steps ------------------------------------------------------------------------

REGISTERS = "CPU#0\nRAX=0000000000000000 RBX=0000000000000000\n"


def frozen_guest(**replies: object) -> FakeGuest:
    base: dict[str, object] = {
        "query-name": {"name": "web1"},
        "query-uuid": {"UUID": "00000000-0000-0000-0000-000000000000"},
        "hmp:info registers -a": REGISTERS,
        "hmp:info mtree -f": "FlatView #0\n",
    }
    return FakeGuest(state="internal-error", replies={**base, **replies})  # type: ignore[dict-item]


def capture_with(
    guest: FakeGuest, out: Path, memory: str = "none"
) -> tuple[Bundle, list[Progress]]:
    seen: list[Progress] = []
    options = CaptureOptions(FakeAddress([guest]), out, memory)  # type: ignore[arg-type]
    result = run(Capture(guest, options, seen.append).run(()))
    return Bundle.open(result.bundle), seen


def steps_of(bundle: Bundle) -> dict[str, str]:
    return {s.name: s.status for s in bundle.manifest.steps}


def test_capture_of_a_scripted_guest_completes_without_qemu(tmp_path: Path) -> None:
    bundle, progress = capture_with(frozen_guest(), tmp_path)
    assert bundle.manifest.status == "complete", bundle.manifest.reasons
    steps = steps_of(bundle)
    assert steps["freeze"] == steps["registers"] == steps["runstate-check"] == "ok"
    assert steps["memory"] == "skipped" and steps["vcpu-stats"] == "skipped"
    freeze = bundle.read_json("freeze")
    assert isinstance(freeze, dict) and freeze["cause"] == "internal-error"
    assert bundle.verify() == []
    assert [p.step for p in progress if p.status == "start"][:2] == ["freeze", "identity"]


def test_a_failing_register_read_makes_the_bundle_incomplete(tmp_path: Path) -> None:
    guest = frozen_guest(**{"hmp:info registers -a": CommandFailed("QEMU refused it")})
    bundle, progress = capture_with(guest, tmp_path)
    assert bundle.manifest.status == "incomplete"
    assert steps_of(bundle)["registers"] == "failed"
    assert any("QEMU refused it" in r for r in bundle.manifest.reasons)
    assert any(p.step == "registers" and p.status == "failed" for p in progress)
    assert steps_of(bundle)["mtree"] == "ok"  # the steps after it still ran


def test_a_runstate_change_during_capture_is_a_failed_check(tmp_path: Path) -> None:
    answers = iter(["internal-error", "running"])
    guest = frozen_guest(**{"query-status": lambda _: {"status": next(answers)}})
    bundle, _ = capture_with(guest, tmp_path)
    assert steps_of(bundle)["runstate-check"] == "failed"
    assert any("internal-error -> running" in r for r in bundle.manifest.reasons)


def test_identity_records_what_qemu_refused(tmp_path: Path) -> None:
    bundle, _ = capture_with(frozen_guest(), tmp_path)
    identity = bundle.read_json("identity")
    assert isinstance(identity, dict)
    assert identity["name"] == "web1"
    assert identity["kvm"] == {"error": "no query-kvm"}  # asked, refused, recorded


def test_a_failed_memory_dump_leaves_no_half_file(tmp_path: Path) -> None:
    guest = frozen_guest(
        **{"dump-guest-memory": {}, "query-dump": {"status": "failed", "completed": 0, "total": 1}}
    )
    bundle, _ = capture_with(guest, tmp_path, "elf")
    assert steps_of(bundle)["memory"] == "failed"
    assert bundle.artifact("memory-elf") is None
    assert not (bundle.path / "memory.elf").exists()
    assert "dump-guest-memory" in guest.commands


def test_capture_refuses_a_running_guest_without_live(tmp_path: Path) -> None:
    guest = frozen_guest()
    guest.state = "running"
    with pytest.raises(GuestStateError):
        capture_with(guest, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no bundle, no temporary directory left
    assert set(guest.commands) == {
        "query-status",
        "query-block-jobs",
        "query-jobs",
        "query-migrate",
    }  # fmt: skip  (only asked, never changed)
