"""Facts about local QEMU processes, read from /proc (any transport with a local QEMU)."""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a zombie holds no files any more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def process_started(pid: int) -> float | None:
    """When ``pid`` started (epoch seconds, to the clock tick), or None if it is not there."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def socket_owners(path: str) -> list[int]:
    """Live processes serving the unix socket ``path``: QEMUs whose command line has it as
    ``unix:PATH`` (``-qmp``) or ``path=PATH`` (``-chardev socket``)."""
    forms = [f"{prefix}{path}".encode() for prefix in ("unix:", "path=")]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        named = any(
            arg[arg.find(form) + len(form) :][:1] in (b"", b",")
            for arg in argv
            for form in forms
            if form in arg
        )
        if named and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found
