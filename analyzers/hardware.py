"""Hardware: host memory errors that hit guest RAM, and machine checks the guest reported."""

from __future__ import annotations

import re
from typing import ClassVar

from kvmha_forensics.analysis import Confidence, Context, Evidence, Finding, Outcome, Requirement

# Guest kernel lines that report a machine check or a poisoned page.
GUEST_MCE = re.compile(
    r"(Machine check|mce: \[Hardware Error\]|Memory failure: 0x[0-9a-f]+|MCE: Killing)", re.I
)
#: A word each match of :data:`GUEST_MCE` holds, lower case (tested on the whole text first).
_MCE_WORDS = ("machine check", "mce: [hardware error]", "memory failure: 0x", "mce: killing")


_CHUNK = 1 << 20


def _mentions_mce(text: str) -> bool:
    """Whether ``text`` holds one of :data:`_MCE_WORDS` in any case, lowered a chunk at a
    time (a whole lowered copy of a large console could exceed the memory cap)."""
    overlap = max(len(w) for w in _MCE_WORDS)
    for start in range(0, len(text), _CHUNK):
        chunk = text[start : start + _CHUNK + overlap].lower()
        if any(word in chunk for word in _MCE_WORDS):
            return True
    return False


class Hardware:
    """MEMORY_FAILURE events (QEMU's view) and machine-check lines on the guest console."""

    name: ClassVar[str] = "hardware"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "host memory errors and machine checks"
    requires: ClassVar[frozenset[Requirement]] = frozenset()
    refines: ClassVar[frozenset[str]] = frozenset()

    def run(self, ctx: Context) -> Outcome:
        failures = [e for e in ctx.events() if e.name == "MEMORY_FAILURE"]
        console = ctx.text("console") or ""
        mce_lines = (
            [ln.strip() for ln in console.splitlines() if GUEST_MCE.search(ln)][:10]
            if _mentions_mce(console)  # most consoles do not: one cheap pass first
            else []
        )
        facts = {"memory_failures": [e.to_json() for e in failures], "guest_mce_lines": mce_lines}
        if not failures and not mce_lines:
            return Outcome((), facts)
        evidence = []
        if failures:
            data = failures[0].data
            evidence.append(Evidence("events.json", "MEMORY_FAILURE", str(data)))
            summary = (
                f"A host memory error ({data.get('recipient')}, action {data.get('action')}) "
                "hit guest memory."
            )
        else:
            summary = f"The guest reported a machine check: {mce_lines[0]}"
        if mce_lines:
            evidence.append(Evidence("console", "machine-check lines", "\n".join(mce_lines)))
        finding = Finding(
            cause="host-memory-error",
            summary=summary,
            signature="host-memory-error: " + ("MEMORY_FAILURE" if failures else "guest MCE"),
            confidence=Confidence.CONFIRMED if failures else Confidence.SECONDHAND,
            evidence=tuple(evidence),
        )
        return Outcome((finding,), facts)
