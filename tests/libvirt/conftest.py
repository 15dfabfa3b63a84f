"""A real libvirt daemon for the session, and the lab's scenarios as libvirt domains.

The daemons are started here when they are not running (``lab/libvirtd.py`` prepares a host
without systemd: directories, the ``libvirt-qemu`` user, ``qemu.conf``) and stopped at the end
by the last session that uses them. Every domain a test starts is destroyed after it, also
when the test fails.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmha_forensics.lab import domains, libvirtd, scenarios
from kvmha_forensics.lab.domains import LabDomain
from tests.conftest import require_kvm
from tests.ha.test_watch import Record, Watch, kind

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is in the dev extras: ./run setup")
URI = "qemu:///system"
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # raised, not printed


@pytest.fixture(scope="session")
def libvirt_daemon() -> Iterator[str]:
    """The URI of a running libvirtd (started for the session when none runs)."""
    with libvirtd.shared():
        yield URI


class Domains:
    """Starts lab domains on demand; destroys them all at the end."""

    def __init__(self, uri: str, root: Path) -> None:
        self.conn = libvirt.open(uri)
        self.root = root
        self.started: list[LabDomain] = []
        self.shared: dict[str, LabDomain] = {}
        self.count = itertools.count()

    def start(self, name: str, *, paused: bool = False, tag: str = "") -> LabDomain:
        """A new domain of scenario ``name``; frozen unless ``paused`` (then not yet run)."""
        scenario = scenarios.get(name)
        require_kvm(scenario)
        n = next(self.count)
        domain = f"kvmha-lab-{name}{tag}-{os.getpid()}-{n}"
        lab = domains.start(self.conn, scenario, domain, self.root / f"{name}{tag}-{n}",
                            paused=paused)  # fmt: skip
        self.started.append(lab)
        if not paused:
            domains.wait_frozen(self.conn, lab, scenario)
        return lab

    def frozen(self, name: str) -> LabDomain:
        """The session's shared domain of scenario ``name`` (never to be changed by a test)."""
        if name not in self.shared:
            self.shared[name] = self.start(name, tag="-shared")
        return self.shared[name]

    def frozen_signal(self, w: Watch, lab: LabDomain) -> Record:
        """Once ``w`` watches the paused domain ``lab``, run it; its frozen signal."""
        w.wait(kind("state", lab.name, detail="connected"), "connected")
        self.conn.lookupByName(lab.name).resume()
        return w.wait(kind("signal", lab.name, state="frozen"), "frozen signal")

    def reconnect(self) -> None:
        """A new connection, after libvirtd was restarted."""
        self.conn = libvirt.open(URI)

    def destroy(self, lab: LabDomain) -> None:
        domains.destroy(self.conn, lab)

    def close(self) -> None:
        for lab in self.started:
            domains.destroy(self.conn, lab)
        self.conn.close()


@pytest.fixture(scope="session")
def lv(libvirt_daemon: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Domains]:
    started = Domains(libvirt_daemon, tmp_path_factory.mktemp("libvirt"))
    yield started
    started.close()
