"""The lab's scenarios as real libvirt domains reach the states libvirt reports for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmha_forensics.lab import domains, scenarios
from tests.libvirt.conftest import Domains, libvirt

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("name", ["panic", "io-error", "emulation-failure"])
def test_scenario_state(lv: Domains, name: str) -> None:
    lab = lv.frozen(name)
    dom = lv.conn.lookupByName(lab.name)
    assert tuple(dom.state()) == domains.LIBVIRT_STATE[scenarios.get(name).runstate]
    xml = dom.XMLDesc(0)
    assert "<on_crash>preserve</on_crash>" in xml
    assert "<panic model='isa'" in xml


def test_failing_disk_is_libvirt_native(lv: Domains) -> None:
    """The I/O error comes from a disk libvirt knows (error_policy='stop'), not from
    a QEMU argument behind libvirt's back: the domain is not tainted custom-argv."""
    dom = lv.conn.lookupByName(lv.frozen("io-error").name)
    assert "error_policy='stop'" in dom.XMLDesc(0)
    log = Path(f"/var/log/libvirt/qemu/{lv.frozen('io-error').name}.log").read_text()
    assert "custom-argv" not in log
    assert dom.blockInfo("vda")[0] == 16 << 20


def test_domains_are_destroyed(lv: Domains) -> None:
    lab = lv.start("panic", paused=True, tag="-gone")
    assert lv.conn.lookupByName(lab.name).state()[0] == libvirt.VIR_DOMAIN_PAUSED
    lv.destroy(lab)
    with pytest.raises(libvirt.libvirtError):
        lv.conn.lookupByName(lab.name)
