"""Shared benchmark plumbing: timed child processes with their peak RSS, lab guests, tables."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kvmha_forensics.lab import launcher, scenarios
from kvmha_forensics.lab.launcher import LabGuest

PYTHON = sys.executable
ROUNDS = int(os.environ.get("KVMHA_BENCH_ROUNDS", "5"))
SETTLE = 0.5  # seconds after sync before a timed run, for the disk to go quiet


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    max_rss_mb: float
    output: str = ""


def run(argv: Sequence[str]) -> Run:
    """Run ``argv`` to completion; its wall time, peak RSS (from wait4, this child only) and
    standard output (kept in a file: a pipe could fill up while we wait).

    Dirty pages of earlier runs are synced first (and the disk given a moment), so one run's
    writeback never lands on the next one's clock."""
    os.sync()
    time.sleep(SETTLE)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{argv[:3]} failed: {err.read().decode().strip()[-300:]}")
        return Run(seconds, usage.ru_maxrss / 1024, out.read().decode(errors="replace"))


def median(runs: Sequence[Run]) -> Run:
    return Run(statistics.median(r.seconds for r in runs), max(r.max_rss_mb for r in runs))


@contextmanager
def guest(name: str, directory: Path, memory_mb: int) -> Iterator[LabGuest]:
    up = asyncio.run(launcher.up(scenarios.get(name), directory, memory_mb=memory_mb))
    try:
        yield up
    finally:
        launcher.down(directory)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]  # fmt: skip
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class JsonLines:
    """A child's JSON stdout lines, each with the wall time it was read."""

    def __init__(self, argv: list[str], wait: float) -> None:
        self.timeout = wait
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, dict[str, object]]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.time(), json.loads(line)))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=self.timeout)
