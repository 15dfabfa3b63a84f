"""freeze.refine_cause: the events that make a runstate's cause precise."""

from __future__ import annotations

import pytest

from kvmha_forensics.ha.freeze import refine_cause
from kvmha_forensics.transport.base import Event

# Shaped as QEMU 7.2's QAPI events; SHUTDOWN and MEMORY_FAILURE as the lab recorded them.
EIO = Event(
    "BLOCK_IO_ERROR",
    {
        "device": "",
        "node-name": "disk0",
        "operation": "write",
        "action": "stop",
        "nospace": False,
        "reason": "Input/output error",
    },
    0,
)
NOSPC = Event(
    "BLOCK_IO_ERROR", {**EIO.data, "nospace": True, "reason": "No space left on device"}, 0
)
RESET = Event("SHUTDOWN", {"guest": True, "reason": "guest-reset"}, 0)
POWEROFF = Event("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"}, 0)
MCE = Event(
    "MEMORY_FAILURE",
    {
        "recipient": "guest",
        "action": "reset",
        "flags": {"action-required": False, "recursive": False},
    },
    0,
)
IGNORED = Event("MEMORY_FAILURE", {**MCE.data, "recipient": "hypervisor", "action": "ignore"}, 0)
STOP = Event("STOP", {}, 0)


@pytest.mark.parametrize(
    ("runstate", "events", "cause"),
    [
        ("io-error", [EIO, STOP], "io-error"),
        ("io-error", [NOSPC, STOP], "io-error-nospace"),
        ("shutdown", [RESET, STOP], "triple-fault"),
        ("shutdown", [POWEROFF, STOP], "shutdown-guest-shutdown"),
        ("shutdown", [], "shutdown"),  # seen after the fact: the runstate alone
        ("shutdown", [MCE, RESET, STOP], "host-memory-error"),  # QEMU's reset after the MCE
        ("shutdown", [IGNORED, RESET, STOP], "triple-fault"),  # an error QEMU ignored
        ("running", [MCE], None),  # not frozen: no cause, whatever the events
    ],
)
def test_events_refine_the_runstate_cause(runstate: str, events: list[Event], cause: str) -> None:
    assert refine_cause(runstate, events) == cause
