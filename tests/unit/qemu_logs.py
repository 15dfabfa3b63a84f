"""Shared by the QEMU-log tests: the recorded logs, and parses compared without positions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kvmha_forensics.sources.qemu_log import QemuLog

LOGS = Path(__file__).resolve().parents[2] / "fixtures" / "logs"


def comparable(log: QemuLog) -> tuple[object, ...]:
    """Records without line numbers and raw text, which re-wrapping changes."""
    errors = tuple(dataclasses.replace(e, line=0) for e in log.internal_errors)
    dumps = tuple(dataclasses.replace(r, raw="") for r in log.register_dumps)
    entries = tuple(dataclasses.replace(e, line=0) for e in log.entry_failures)
    runs = tuple(dataclasses.replace(r, line=0) for r in log.run_failures)
    return errors, dumps, entries, runs
