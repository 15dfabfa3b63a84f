"""The guest kernel is read in a forked child (kvmha_forensics.bounded): also from a process
whose own thread already used drgn, as a test process, a long-lived watcher with a plugin, or
a script calling the library may have."""

from __future__ import annotations

import drgn
import pytest

from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.debuginfo import dump_vmcoreinfo
from kvmha_forensics.kernel_read import start_kernel_read
from kvmha_forensics.lab import assets
from tests.conftest import Lab

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
    facts = start_kernel_read(dump, None, dump_vmcoreinfo(None, dump, dump), vmlinux).result()
    assert facts.release == release == assets.kernel().release
    assert facts.panic_message == "Kernel panic - not syncing: sysrq triggered crash"
    assert facts.crashed_task is not None and facts.crashed_task.comm == "init"
    assert "sysrq_handle_crash" in [f.function for f in facts.stack]
