"""What analysis reads of a guest kernel, as plain data: built in the child that runs drgn
(``kernel.py``), used by the analyzers, which need not import drgn for it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Frame:
    """One stack frame: function (or symbol+offset), module when not vmlinux, source line."""

    function: str
    module: str | None
    source: str | None

    def __str__(self) -> str:
        return f"{self.function} [{self.module}]" if self.module else self.function


@dataclass(frozen=True, slots=True)
class Task:
    pid: int
    comm: str
    state: str
    cpu: int | None


@dataclass(frozen=True, slots=True)
class KernelFacts:
    """What the guest kernel says about its own death."""

    release: str | None
    build_id: str | None
    debuginfo: str | None
    taint: str | None
    uptime_seconds: float | None
    panic_message: str | None
    dmesg: str | None
    crashed_task: Task | None
    crashed_cpu: int | None
    stack: tuple[Frame, ...]
    blocked_tasks: tuple[Task, ...]
    skipped: tuple[str, ...]
