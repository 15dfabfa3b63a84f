"""A bare-metal lab guest whose QMP is also served on TCP, for the captures that cannot see
QEMU's process (no peer pid over TCP)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kvmha_forensics.lab import assets, launcher, scenarios


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def triple_fault_on_tcp(tmp_path: Path) -> Iterator[tuple[int, tuple[Path, Path]]]:
    """Start the triple-fault guest (stopped, as the lab starts it) with QMP on a free TCP
    port beside its two unix sockets; yield the port and the sockets; kill it on exit."""
    scenario = scenarios.get("triple-fault")
    port = free_port()
    sockets = (tmp_path / "qmp.sock", tmp_path / "spare.sock")
    boot = ["-drive", f"file={assets.baremetal(scenario.name)},format=raw,if=ide,snapshot=on"]
    argv = launcher.qemu_argv(scenario, tmp_path, sockets, "tcg", 64, 1, boot)
    argv += ["-qmp", f"tcp:127.0.0.1:{port},server=on,wait=off"]
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not sockets[0].exists():
            assert qemu.poll() is None, "QEMU exited"
            time.sleep(0.02)
        yield port, sockets
    finally:
        qemu.kill()
        qemu.wait()
