"""drgn with debug info, run in a forked child.

drgn's OpenMP thread pool does not survive a fork, and analysis forks to read guest kernels
(kvmha_forensics.bounded): a test process that loaded debug info itself would leave every
later analysis in it hanging. So tests read with drgn the way analysis does, in a child."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import drgn

from kvmha_forensics.bounded import call_bounded
from kvmha_forensics.lab import assets

T = TypeVar("T")


def in_child(read: Callable[[], T]) -> T:
    """``read()`` in a forked child; its value, or its exception raised here."""
    return call_bounded(read, "the test's drgn read", 300, 16 << 30)


def kernel_release(dump: Path, vmcoreinfo: str | None = None) -> str:
    """The release the guest kernel in ``dump`` names, read with the lab kernel's debug info."""

    def read() -> str:
        prog = drgn.Program(vmcoreinfo=vmcoreinfo) if vmcoreinfo else drgn.Program()
        prog.set_core_dump(str(dump))
        prog.load_debug_info([str(assets.kernel().vmlinux)])
        return bytes(prog["init_uts_ns"].name.release.string_()).decode()

    return in_child(read)
