"""The lab's scenarios as libvirt domains, built from the same assets as the QEMU lab guests.

Linux guests are ``type='qemu'`` (TCG: this host's KVM cannot boot a stock kernel) with
``<on_crash>preserve``, an ISA pvpanic (``<panic model='isa'/>``), ``<vmcoreinfo/>`` and a
serial console file. The failing disk of ``io-error`` and ``enospc`` is libvirt-native: an NBD
disk with ``error_policy='stop'`` (``enospace`` for ENOSPC) served by ``qemu-nbd`` from a
``blkdebug`` image that fails every write, so no ``<qemu:commandline>`` taints the domain.
Bare-metal boot sectors are ``type='kvm'`` (KVM internal errors need KVM).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EnvironmentProblem, GuestStateError, InputError, OperationTimeout
from ..transport.libvirt_files import pid_of
from ..transport.local import process_alive, process_started
from . import assets
from .scenarios import Scenario

EMULATOR = "/usr/bin/qemu-system-x86_64"
ERRNO = {"eio": 5, "enospc": 28}
POLICY = {"eio": "stop", "enospc": "enospace"}


@dataclass(frozen=True, slots=True)
class DomainFiles:
    """Where a lab domain's files live: its directory, console, disk server and its socket."""

    directory: Path

    @property
    def console(self) -> Path:
        return self.directory / "console.log"

    @property
    def nbd_socket(self) -> Path:
        return self.directory / "nbd.sock"

    @property
    def nbd_pid(self) -> Path:
        return self.directory / "qemu-nbd.pid"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = text
    return element


def domain_xml(scenario: Scenario, name: str, files: DomainFiles, *, memory_mb: int = 256) -> str:
    """The domain XML of ``scenario`` named ``name`` (its files under ``files.directory``)."""
    kvm = scenario.guest == "baremetal"
    root = ET.Element("domain", type="kvm" if kvm else "qemu")
    _sub(root, "name", name)
    _sub(root, "memory", str(memory_mb), unit="MiB")
    _sub(root, "vcpu", str(scenario.vcpus))
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "vmcoreinfo", state="on")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "destroy")
    _sub(root, "on_crash", "preserve")
    devices = _sub(root, "devices")
    _sub(devices, "emulator", EMULATOR)
    if kvm:
        _sub(os_el, "boot", dev="hd")
        image = files.directory / "boot.img"
        shutil.copyfile(assets.baremetal(scenario.name), image)
        disk = _sub(devices, "disk", type="file", device="disk")
        _sub(disk, "driver", name="qemu", type="raw")
        _sub(disk, "source", file=str(image))
        _sub(disk, "target", dev="hda", bus="ide")
    else:
        linux = assets.linux()
        _sub(os_el, "kernel", str(linux.kernel.vmlinuz))
        _sub(os_el, "initrd", str(linux.initramfs))
        cmdline = f"console=ttyS0 oops=panic mitigations=off kvmha.scenario={scenario.name}"
        _sub(os_el, "cmdline", cmdline)
    if scenario.disk:
        disk = _sub(devices, "disk", type="network", device="disk")
        _sub(disk, "driver", name="qemu", type="raw", error_policy=POLICY[scenario.disk],
             rerror_policy="stop")  # fmt: skip
        source = _sub(disk, "source", protocol="nbd")
        _sub(source, "host", transport="unix", socket=str(files.nbd_socket))
        _sub(disk, "target", dev="vda", bus="virtio")
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=str(files.console))
    _sub(serial, "target", port="0")
    _sub(devices, "panic", model="isa")
    _sub(devices, "controller", type="usb", model="none")
    _sub(devices, "memballoon", model="none")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def start_disk_server(kind: str, files: DomainFiles) -> int:
    """``qemu-nbd`` serving a 16 MiB image through ``blkdebug`` that fails every write with
    ``kind``'s errno; returns its pid (:func:`stop_disk_server` ends it)."""
    if shutil.which("qemu-nbd") is None:
        raise EnvironmentProblem("qemu-nbd is not installed", "apt-get install qemu-utils")
    if kind not in ERRNO:
        raise InputError(f"unknown failing disk {kind!r}", "use eio or enospc")
    image = files.directory / "disk.img"
    with image.open("wb") as f:
        f.truncate(16 << 20)
    spec = {
        "driver": "raw",
        "file": {
            "driver": "blkdebug",
            "inject-error": [{"event": "write_aio", "errno": ERRNO[kind]}],
            "image": {"driver": "file", "filename": str(image)},
        },
    }
    files.nbd_socket.unlink(missing_ok=True)
    argv = ["qemu-nbd", "--fork", "--persistent", "--cache=none",
            f"--socket={files.nbd_socket}", f"--pid-file={files.nbd_pid}",
            f"json:{json.dumps(spec)}"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise EnvironmentProblem(f"qemu-nbd did not start: {done.stderr.strip()}")
    return int(files.nbd_pid.read_text())


def stop_disk_server(files: DomainFiles) -> None:
    """End the ``qemu-nbd`` of ``files`` (only if that pid is still a qemu-nbd)."""
    try:
        pid = int(files.nbd_pid.read_text())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return
    if comm != "qemu-nbd":
        return
    os.kill(pid, 15)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    files.nbd_pid.unlink(missing_ok=True)


# libvirt's (state, reason) of each scenario's frozen runstate (libvirt-domain.h); a KVM
# internal error is "paused (unknown)": libvirt does not know QEMU's reason for that STOP
LIBVIRT_STATE = {
    "guest-panicked": (6, 1),  # VIR_DOMAIN_CRASHED, VIR_DOMAIN_CRASHED_PANICKED
    "io-error": (3, 5),  # VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_IOERROR
    "internal-error": (3, 0),  # VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_UNKNOWN
    "running": (1, 1),  # VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_BOOTED
}


@dataclass(frozen=True, slots=True)
class LabDomain:
    """A lab scenario started as a transient libvirt domain."""

    scenario: str
    name: str
    uri: str
    files: DomainFiles
    qemu: tuple[int, float] | None = None  # its QEMU's pid and start time (see end_qemu)


def start(
    conn: Any, scenario: Scenario, name: str, directory: Path, *, paused: bool = False
) -> LabDomain:
    """Create ``scenario`` as the transient domain ``name`` on ``conn`` (a libvirt
    ``virConnect``), paused before its first instruction when ``paused``."""
    if scenario.runstate not in LIBVIRT_STATE:
        raise InputError(f"scenario {scenario.name} has no libvirt domain", "see docs/libvirt.md")
    directory.mkdir(parents=True, exist_ok=True)
    files = DomainFiles(directory)
    if scenario.disk:
        start_disk_server(scenario.disk, files)
    xml = domain_xml(scenario, name, files)
    (directory / "domain.xml").write_text(xml)
    try:
        conn.createXML(xml, 1 if paused else 0)  # VIR_DOMAIN_START_PAUSED
    except Exception:
        stop_disk_server(files)
        raise
    uri = str(conn.getURI())
    return LabDomain(scenario.name, name, uri, files, qemu_of(uri, name))


def qemu_of(uri: str, name: str) -> tuple[int, float] | None:
    """The running domain's QEMU: its pid (libvirt's pid file) and when it started."""
    pid = pid_of(uri, name)
    started = process_started(pid) if pid else None
    return (pid, started) if pid and started is not None else None


def end_qemu(qemu: tuple[int, float] | None) -> bool:
    """Kill the QEMU ``qemu`` names (from :func:`qemu_of`) if it still runs: only that process,
    never a later one given the same pid. For when libvirtd cannot destroy its domain (it is
    gone: QEMU outlives it). Whether it had to."""
    if qemu is None:
        return False
    pid, started = qemu
    if not process_alive(pid) or process_started(pid) != started:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return True


def wait_frozen(conn: Any, lab: LabDomain, scenario: Scenario) -> None:
    """Until the domain is in its scenario's state (the idle console line for ``running``)."""
    want = LIBVIRT_STATE[scenario.runstate]
    dom = conn.lookupByName(lab.name)
    deadline = time.monotonic() + scenario.timeout
    while time.monotonic() < deadline:
        state = tuple(dom.state())
        idle = scenario.runstate != "running" or _idle(lab.files.console)
        if state == want and idle:
            return
        if state[0] in (4, 5):  # shutting down, shut off
            raise GuestStateError(f"lab domain {lab.name} shut down (state {state})")
        time.sleep(0.05)
    raise OperationTimeout(
        f"lab domain {lab.name} did not reach {scenario.runstate} in {scenario.timeout:g}s",
        "see its console and /var/log/libvirt/qemu/NAME.log",
    )


def _idle(console: Path) -> bool:
    try:
        return "KVMHA-LAB: idle" in console.read_text(errors="replace")
    except OSError:
        return False


def destroy(conn: Any, lab: LabDomain) -> None:
    """Destroy the domain (a transient one then disappears) and end its disk server. When
    libvirt cannot (libvirtd gone, the connection closed), its QEMU is killed by the pid
    recorded at its start, so no QEMU is left behind."""
    import libvirt

    try:
        conn.lookupByName(lab.name).destroy()
    except libvirt.libvirtError as exc:
        gone = (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID)
        if not end_qemu(lab.qemu) and exc.get_error_code() not in gone:
            raise
    finally:
        stop_disk_server(lab.files)
