"""The files libvirt keeps for a domain on this host: its pid file and its QEMU log."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..input_files import opened
from .local import process_alive

LOG_START = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d{4}: starting up ", re.M)
LOG_LIMIT = 8 << 20  # the QEMU log since the domain's last start keeps its last 8 MiB


def local(uri: str) -> bool:
    return uri.split("://", 1)[-1].startswith("/")


def _run_dir(uri: str) -> Path:
    if uri.endswith("/session"):
        base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
        return Path(base) / "libvirt" / "qemu" / "run"
    return Path("/run/libvirt/qemu")


def log_dir(uri: str) -> Path:
    """Where libvirt writes each domain's QEMU log (``NAME.log``)."""
    if uri.endswith("/session"):
        return Path.home() / ".cache" / "libvirt" / "qemu" / "log"
    return Path("/var/log/libvirt/qemu")


def pid_of(uri: str, name: str) -> int | None:
    """The domain's QEMU pid from libvirt's pid file, when that process is alive."""
    try:
        pid = int((_run_dir(uri) / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def log_since_start(path: Path, limit: int = LOG_LIMIT) -> bytes:
    """The domain's QEMU log from its last ``starting up`` line (libvirt writes one per
    start), at most its last ``limit`` bytes; not a regular file: :class:`InputError`."""
    with opened(path) as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - limit))
        data = f.read(limit)
    starts = list(LOG_START.finditer(data))
    if starts:
        return data[starts[-1].start() :]
    if size > limit:
        cut = data.find(b"\n") + 1
        return f"[kvmha-forensics: {size - limit + cut} bytes cut here]\n".encode() + data[cut:]
    return data
