"""The Pacemaker pieces with a libvirt domain: VirtualDomain's monitor_scripts command, the
kvmha-guest agent's domain parameter and the alert agent, on a real frozen domain."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kvmha_forensics.capture.bundle import Bundle
from tests.ha.test_ocf import ALERT, BINARY, agent, alert_env, need_resource_agents, published
from tests.libvirt.conftest import Domains

pytestmark = pytest.mark.lab
MONITOR = Path(__file__).resolve().parents[2] / "ha" / "virtualdomain" / "kvmha-domain-monitor"


def monitor_script(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run as VirtualDomain runs it: no arguments, its parameters in the environment; a
    frozen domain is captured next to ``config``."""
    full = {**os.environ, "OCF_RESKEY_config": str(config), "KVMHA_BINARY": BINARY,
            "KVMHA_CAPTURE_DIR": str(config.with_name("monitor")), **env}  # fmt: skip
    return subprocess.run([str(MONITOR)], env=full, capture_output=True, text=True, timeout=60)


def test_a_frozen_domain_fails_virtualdomain_and_kvmha_guest(lv: Domains, tmp_path: Path) -> None:
    need_resource_agents()
    dom = lv.start("panic", tag="-ha")
    config = tmp_path / "vm.xml"  # VirtualDomain's config: the domain XML
    config.write_text(lv.conn.lookupByName(dom.name).XMLDesc(0))
    for api_only in ("0", "1"):
        done = monitor_script(config, KVMHA_LIBVIRT_API_ONLY=api_only)
        assert done.returncode == 1, done.stdout
        assert done.stdout.startswith("frozen (guest-panicked), failover-safe")
        assert "capture (exit 0)" in done.stdout, done.stdout  # the second: --once, the first's
    (captured,) = (tmp_path / "monitor").iterdir()
    assert Bundle.open(captured).manifest.status == "complete"

    out = tmp_path / "alert"  # the alert finds the domain named like the resource
    env = alert_env(dom.name, out)
    done = subprocess.run([str(ALERT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    alerted = published(out)
    assert Bundle.open(alerted).manifest.guest["runstate"] == "guest-panicked"

    params = {"domain": dom.name, "capture_dir": str(tmp_path / "stop")}
    monitor = agent("monitor", **params)
    assert monitor.returncode == 1, monitor.stderr  # OCF_ERR_GENERIC
    assert "guest frozen: guest-panicked (failover_safe=true)" in monitor.stderr
    stop = agent("stop", **params)  # captures, then virsh destroy
    assert stop.returncode == 0, stop.stderr
    (bundle,) = (tmp_path / "stop").iterdir()
    assert Bundle.open(bundle).manifest.status == "complete"
    assert agent("monitor", **params).returncode == 7  # OCF_NOT_RUNNING
    assert monitor_script(config).returncode == 0  # gone: VirtualDomain's own check says so


def test_an_operator_pause_passes_the_monitor_script(lv: Domains, tmp_path: Path) -> None:
    dom = lv.start("running", tag="-vd")
    config = tmp_path / "vm.xml"
    config.write_text(lv.conn.lookupByName(dom.name).XMLDesc(0))
    running = monitor_script(config)
    assert running.returncode == 0 and running.stdout.startswith("running")
    lv.conn.lookupByName(dom.name).suspend()
    paused = monitor_script(config)
    assert paused.returncode == 0 and paused.stdout.startswith("paused")
    lv.destroy(dom)
