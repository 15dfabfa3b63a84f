"""The guest kernel is read in a forked child (kvmha_forensics.bounded): also from a process
whose own thread already used drgn, as a test process, a long-lived watcher with a plugin, or
a script calling the library may have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import drgn
import pytest

from kvmha_forensics import kernel_read
from kvmha_forensics.analysis import Context
from kvmha_forensics.analyze import analyze, gather
from kvmha_forensics.bounded import Pending
from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.debuginfo import dump_vmcoreinfo
from kvmha_forensics.kernel_facts import KernelFacts
from kvmha_forensics.lab import assets
from tests.conftest import DEBUGINFO, Lab

pytestmark = pytest.mark.lab


def test_a_process_that_used_drgn_still_reads_kernels_in_children(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump = Bundle.open(lab.bundle("panic")).file("memory-elf")
    assert dump is not None
    vmlinux = assets.kernel().vmlinux
    prog = drgn.Program()
    prog.set_core_dump(str(dump))
    prog.load_debug_info([str(vmlinux)])  # this thread now owns drgn's OpenMP thread pool
    release = bytes(prog["init_uts_ns"].name.release.string_()).decode()
    monkeypatch.setenv("KVMHA_KERNEL_READ_SECONDS", "120")  # a hang fails in 2 min, not 5
    facts = kernel_read.start_kernel_read(
        dump, None, dump_vmcoreinfo(None, dump, dump), vmlinux
    ).result()
    assert facts.release == release == assets.kernel().release
    assert facts.panic_message == "Kernel panic - not syncing: sysrq triggered crash"
    assert facts.crashed_task is not None and facts.crashed_task.comm == "init"
    assert "sysrq_handle_crash" in [f.function for f in facts.stack]


def test_the_read_starts_once_and_only_for_the_guest_kernel_analyzer(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """analyze() starts the read before loading the analyzers (one child, collected by the
    guest-kernel analyzer); with that analyzer left out, no child is started at all."""
    bundle = lab.bundle("panic")
    started: list[Path] = []
    real = kernel_read.start_kernel_read

    def counted(memory: Path, *args: Any) -> Pending[KernelFacts]:
        started.append(memory)
        return real(memory, *args)

    monkeypatch.setattr(kernel_read, "start_kernel_read", counted)
    inputs, _ = gather(bundle, debuginfo_dirs=[DEBUGINFO])
    report = analyze(inputs, analyzers=["console"])
    assert started == [] and report.verdict.cause == "guest-panic"
    report = analyze(inputs)
    assert len(started) == 1
    (kernel,) = [r for r in report.analyzers if r.name == "guest-kernel"]
    assert kernel.status == "ok" and kernel.outcome.findings[0].culprit == "sysrq_handle_crash"
    ctx = Context(inputs)
    ctx.start_kernel_read()
    ctx.start_kernel_read()
    assert len(started) == 2 and ctx.kernel() is ctx.kernel()
