"""Reading the guest kernel from a dump, in a child process bounded in time and memory
(``bounded.py``): the guest wrote the pointers drgn follows. The read can start early, so
that drgn's import and debug-info load overlap what the parent does meanwhile."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .bounded import Pending, start_bounded
from .errors import InputError
from .kernel_facts import KernelFacts
from .limits import KERNEL_READ_MIB, KERNEL_READ_SECONDS


def _limit(name: str, default: float) -> float:
    """``default``, or the environment's positive number for ``name``."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise InputError(f"{name}={text!r} is not a positive number", "unset it or give one")
    return value


def start_kernel_read(
    memory: Path, recovered: str | None, info: Mapping[str, str], vmlinux: Path | None
) -> Pending[KernelFacts]:
    """Start :func:`.kernel.read_facts` of the dump ``memory`` (see
    :func:`.kernel.open_program`) in a bounded child; ``.result()`` waits for it."""
    seconds = _limit("KVMHA_KERNEL_READ_SECONDS", KERNEL_READ_SECONDS)
    mib = _limit("KVMHA_KERNEL_READ_MIB", KERNEL_READ_MIB)

    def read() -> KernelFacts:
        from .kernel import open_program, read_facts  # drgn: imported in the child only

        return read_facts(open_program(memory, recovered, vmlinux), info, vmlinux)

    return start_bounded(read, "reading the guest kernel", seconds, int(mib * (1 << 20)))
