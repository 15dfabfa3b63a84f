"""Which way guest memory is captured: read directly from QEMU, or QEMU's ``dump-guest-memory``.

The direct read needs QEMU's process on this host (a unix QMP socket names its pid), the right
to read its memory (root, or CAP_SYS_PTRACE over it), and memory that is not encrypted (SEV);
both formats (ELF, kdump-zlib) are written from the direct read. Anything else goes through
QEMU's dump.
"""

from __future__ import annotations

import os
from typing import Literal

from ..errors import ForensicsError
from ..transport.base import Guest

MemorySource = Literal["auto", "direct", "dump"]


def unreadable(pid: int) -> str | None:
    """Why QEMU process ``pid``'s memory cannot be read by this process, or None."""
    for name in ("mem", "pagemap"):
        try:
            os.close(os.open(f"/proc/{pid}/{name}", os.O_RDONLY | os.O_CLOEXEC))
        except OSError as exc:
            return (f"cannot open /proc/{pid}/{name} ({exc.strerror}): reading QEMU's memory"
                    " needs root or CAP_SYS_PTRACE over it")  # fmt: skip
    return None


async def why_not_direct(guest: Guest, memory_format: str) -> str | None:
    """Why this guest's memory cannot be read directly, or None when it can."""
    if memory_format not in ("elf", "kdump-zlib"):
        return f"{memory_format} is written by QEMU's dump-guest-memory"
    if guest.pid is None:
        return "QEMU's process is not known here (QMP over TCP): it may be on another host"
    reason = unreadable(guest.pid)
    if reason:
        return reason
    try:
        sev = await guest.execute("query-sev")
    except ForensicsError:
        return None  # no SEV in this QEMU or machine
    if isinstance(sev, dict) and sev.get("enabled"):
        return "the guest's memory is encrypted (SEV)"
    return None
