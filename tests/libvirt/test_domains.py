"""The lab's libvirt domains: created from the lab's assets, destroyed after use."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kvmha_forensics.lab import domains, scenarios
from kvmha_forensics.lab.domains import DomainFiles
from kvmha_forensics.transport.local import process_alive
from tests.libvirt.conftest import URI, Domains, libvirt

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("name", ["panic", "io-error", "emulation-failure"])
def test_domain_xml_keeps_the_crashed_guest(tmp_path: Path, name: str) -> None:
    xml = domains.domain_xml(scenarios.get(name), f"vm-{name}", DomainFiles(tmp_path))
    assert "<on_crash>preserve</on_crash>" in xml
    assert '<panic model="isa" />' in xml and '<vmcoreinfo state="on" />' in xml
    assert ('type="kvm"' in xml) == (name == "emulation-failure")
    assert ('error_policy="stop"' in xml) == (name == "io-error")


def test_domains_are_destroyed(lv: Domains) -> None:
    lab = lv.start("panic", paused=True, tag="-gone")
    assert lv.conn.lookupByName(lab.name).state()[0] == libvirt.VIR_DOMAIN_PAUSED
    lv.destroy(lab)
    with pytest.raises(libvirt.libvirtError):
        lv.conn.lookupByName(lab.name)
    assert not lab.files.nbd_pid.exists()


def test_a_domain_libvirt_cannot_destroy_has_its_qemu_killed_and_no_other(lv: Domains) -> None:
    """With no usable connection (as when libvirtd is gone, which QEMU outlives), destroy
    kills the domain's QEMU by the pid recorded at its start; a process that only has that pid
    (another start time) is never killed."""
    lab = lv.start("panic", paused=True, tag="-orphan")
    assert lab.qemu is not None
    pid, started = lab.qemu
    assert not domains.end_qemu((pid, started + 1))  # not the process started then
    assert process_alive(pid)
    closed = libvirt.open(URI)
    closed.close()
    domains.destroy(closed, lab)
    assert not process_alive(pid)
    deadline = time.monotonic() + 30  # libvirtd notices its QEMU gone: the domain goes
    while time.monotonic() < deadline and lab.name in names(lv):
        time.sleep(0.1)
    assert lab.name not in names(lv)


def names(lv: Domains) -> set[str]:
    return {str(d.name()) for d in lv.conn.listAllDomains()}
