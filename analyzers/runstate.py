"""Runstate: what QEMU's own stop reason says, the weakest evidence but always there."""

from __future__ import annotations

from typing import ClassVar

from kvmha_forensics.analysis import Confidence, Context, Evidence, Finding, Outcome, Requirement
from kvmha_forensics.vocabulary import Cause

# The freeze cause recorded at capture → the report's cause and a plain sentence.
CAUSES: dict[str, tuple[Cause, str]] = {
    "guest-panicked": ("guest-panic", "the guest kernel reported a panic (pvpanic)"),
    "internal-error": ("kvm-internal-error", "KVM stopped the guest on an internal error"),
    "io-error": ("storage-io-error", "a disk returned an I/O error and QEMU paused the guest"),
    "io-error-nospace": ("storage-nospace", "a disk ran out of space and QEMU paused the guest"),
    "triple-fault": ("triple-fault", "the guest reset itself (triple fault or reboot)"),
    "watchdog": ("watchdog", "the guest watchdog fired"),
    "host-memory-error": ("host-memory-error", "a host memory error hit guest RAM"),
}


class Runstate:
    """Maps the runstate and stop events recorded at capture to a cause (low confidence)."""

    name: ClassVar[str] = "runstate"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "the cause QEMU's runstate and events imply"
    requires: ClassVar[frozenset[Requirement]] = frozenset({"freeze"})
    refines: ClassVar[frozenset[str]] = frozenset()

    def run(self, ctx: Context) -> Outcome:
        freeze = ctx.freeze
        runstate, cause = (freeze.runstate, freeze.cause) if freeze else (None, None)
        facts = {"runstate": runstate, "cause": cause}
        if cause is None or cause not in CAUSES:
            return Outcome((), facts)
        mapped, sentence = CAUSES[cause]
        finding = Finding(
            cause=mapped,
            summary=f"QEMU stopped the guest in runstate {runstate}: {sentence}.",
            signature=f"{mapped}: runstate {runstate}",
            confidence=Confidence.STATE_ONLY,
            evidence=(Evidence("freeze.json", "runstate", str(runstate)),),
        )
        return Outcome((finding,), facts)
