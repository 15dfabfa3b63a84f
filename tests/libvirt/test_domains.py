"""The lab's libvirt domains: created from the lab's assets, destroyed after use."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmha_forensics.lab import domains, scenarios
from kvmha_forensics.lab.domains import DomainFiles
from tests.libvirt.conftest import Domains, libvirt

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
