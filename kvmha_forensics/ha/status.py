"""Passive status: is the guest running, frozen, paused or gone, and is it failover-safe?

One short QMP conversation, bounded by a small timeout: a socket held by another client or a
QEMU too busy to answer gives ``busy``, never a hang. The exit codes (:class:`StatusExit`) are
a stable contract that resource agents branch on (docs/ha/README.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from ..errors import AddressMissing, ExitCode, GuestGone, GuestHeld, OperationTimeout
from ..limits import STATUS_TIMEOUT
from ..printable import printable
from ..serial import to_json
from ..transport.base import Address
from ..vocabulary import JSONObject
from .freeze import FreezeState, assess

StatusState = Literal["running", "frozen", "paused", "gone", "busy", "missing"]


class StatusExit(IntEnum):
    """Exit codes of ``kvmha-forensics status``; they never change meaning."""

    RUNNING = 0
    BUSY = int(ExitCode.BUSY)  # 9: no answer in time (socket held, QEMU busy): unknown
    FROZEN_SAFE = 10  # stopped on an error and nothing still writes: fail over, no fencing
    FROZEN_UNSAFE = 11  # stopped on an error but a job or migration still writes
    PAUSED = 12  # stopped on purpose (operator, migration, snapshot): not a failure
    GONE = 13  # QEMU is not there: its socket refuses connections, or it closed the connection
    MISSING = 14  # no socket at the path: a configuration error, not evidence of anything


@dataclass(frozen=True, slots=True)
class Status:
    """What ``status`` reports: the state, the cause, the failover-safe verdict and why."""

    qmp: str
    state: StatusState
    runstate: str | None
    cause: str | None
    failover_safe: bool
    reasons: tuple[str, ...]
    qemu_pid: int | None
    seconds: float

    @classmethod
    def from_freeze(cls, qmp: str, freeze: FreezeState, pid: int | None, seconds: float) -> Status:
        return cls(
            qmp, freeze.state, freeze.runstate, freeze.cause, freeze.failover_safe,
            freeze.reasons, pid, seconds,
        )  # fmt: skip

    @property
    def exit_code(self) -> StatusExit:
        if self.state == "frozen":
            return StatusExit.FROZEN_SAFE if self.failover_safe else StatusExit.FROZEN_UNSAFE
        codes = {"running": StatusExit.RUNNING, "paused": StatusExit.PAUSED,
                 "gone": StatusExit.GONE, "busy": StatusExit.BUSY,
                 "missing": StatusExit.MISSING}  # fmt: skip
        return codes[self.state]

    def to_json(self) -> JSONObject:
        return to_json(self, exit_code=int(self.exit_code), seconds=round(self.seconds, 4))


def render(result: Status, as_json: bool) -> str:
    """What ``kvmha-forensics status`` prints: one JSON object, or a line and the reasons."""
    if as_json:
        return json.dumps(result.to_json(), sort_keys=True) + "\n"
    safe = "failover-safe" if result.failover_safe else "not failover-safe"
    cause = f" ({result.cause})" if result.cause else ""
    lines = [f"{result.state}{cause}, {safe}", *(f"  {r}" for r in result.reasons)]
    return "".join(printable(line, one_line=True) + "\n" for line in lines)


def _gone(address: Address, why: str, start: float) -> Status:
    freeze = FreezeState.gone(why, address.owners())
    return Status.from_freeze(str(address), freeze, None, time.monotonic() - start)


def _missing(address: Address, why: str, start: float) -> Status:
    why += ": a configuration error (check --qmp), not evidence that QEMU is gone"
    return Status(str(address), "missing", None, None, False, (why,), None,
                  time.monotonic() - start)  # fmt: skip


def _busy(address: Address, why: str, start: float) -> Status:
    owners = address.owners() or []
    pid = owners[0] if len(owners) == 1 else None  # so an agent can still end that QEMU
    return Status(str(address), "busy", None, None, False, (why,), pid, time.monotonic() - start)


async def status(address: Address, timeout: float = STATUS_TIMEOUT) -> Status:
    """Ask the guest at ``address`` for its state; answer within about ``timeout`` s.

    ``gone`` rests on evidence (:class:`~..errors.GuestGone`): a socket file that refuses
    connections, or QEMU closing the connection. No socket at the path
    (:class:`~..errors.AddressMissing`) is ``missing``: a configuration error, never read as
    gone. A held monitor (:class:`~..errors.GuestHeld`) or no answer in time gives ``busy``.

    Raises: NotAMonitor, TransportConfigError, CommandFailed (a wrong address or a QEMU that
    refuses ``query-status``)."""
    start = time.monotonic()

    async def ask() -> Status:
        async with address.connect(timeout) as guest:
            freeze = await assess(guest)
            return Status.from_freeze(str(address), freeze, guest.pid, time.monotonic() - start)

    try:
        return await asyncio.wait_for(ask(), timeout)
    except TimeoutError:
        return _busy(address, f"QEMU did not answer within {timeout:g}s", start)
    except (OperationTimeout, GuestHeld) as exc:
        return _busy(address, str(exc), start)
    except AddressMissing as exc:
        return _missing(address, exc.message, start)
    except GuestGone as exc:
        return _gone(address, str(exc), start)
