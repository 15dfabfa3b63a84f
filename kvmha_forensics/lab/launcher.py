"""Start QEMU the way an HA-minded operator would, and bring a guest into a frozen state.

QEMU is started with ``-S`` and continued only once QMP is connected, so no event is missed;
it keeps running after the launcher returns (``lab down`` ends it). ``lab.json`` in the
guest's directory records everything a test or a user needs to reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import (
    BusyError,
    EnvironmentProblem,
    ForensicsError,
    GuestHeld,
    GuestStateError,
    InputError,
    OperationTimeout,
)
from ..transport.base import Event
from ..transport.qmp import Endpoint, QMPSession, session
from . import assets
from .scenarios import Scenario

log = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
Accel = Literal["kvm", "tcg"]
STATE_FILE = "lab.json"
SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1
KVM_GET_API_VERSION = 0xAE00


@dataclass(frozen=True, slots=True)
class LabGuest:
    """A lab guest that was brought up: how to reach it and what state it is in."""

    scenario: str
    dir: str
    pid: int
    qmp: str
    qmp_spare: str
    stderr: str
    serial: str
    runstate: str
    accel: str
    accel_reason: str
    memory_mb: int
    vcpus: int
    vmlinux: str | None = None
    events: list[dict[str, object]] = field(default_factory=list)

    def save(self) -> None:
        path = Path(self.dir) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> LabGuest:
        path = directory / STATE_FILE
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError as exc:
            raise InputError(f"no lab guest in {directory} ({STATE_FILE} missing)") from exc
        except (ValueError, TypeError) as exc:
            raise InputError(f"{path} is not a lab state file: {exc}") from exc


def kvm_usable() -> tuple[bool, str]:
    """Whether /dev/kvm can be opened and answers KVM_GET_API_VERSION, and why not."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return False, f"/dev/kvm unusable: {exc.strerror}"
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as exc:
        return False, f"/dev/kvm does not answer KVM_GET_API_VERSION: {exc.strerror}"
    finally:
        os.close(fd)
    return (version == 12, f"KVM API version {version}")


def _hardware_virt() -> bool:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    return any(flag in cpuinfo.split() for flag in ("vmx", "svm"))


def pick_accel(scenario: Scenario, requested: str) -> tuple[Accel, str]:
    """The accelerator for ``scenario`` and why: ``auto`` picks what works on this host."""
    if requested == "tcg":
        if scenario.needs_kvm:
            raise InputError(f"scenario {scenario.name} needs KVM", "use --accel kvm or auto")
        return "tcg", "requested"
    usable, why = kvm_usable()
    if requested == "kvm" or scenario.needs_kvm:
        if not usable:
            raise EnvironmentProblem(f"scenario {scenario.name} needs KVM but {why}")
        return "kvm", "requested" if requested == "kvm" else "the scenario needs KVM"
    if requested != "auto":
        raise InputError(f"unknown accelerator {requested!r}", "use auto, kvm or tcg")
    if scenario.guest == "baremetal" and usable:
        return "kvm", why
    if usable and _hardware_virt():
        return "kvm", f"{why} with hardware virtualization"
    if usable:
        return "tcg", "KVM here has no vmx/svm (nested paravirtual): a stock kernel cannot boot"
    return "tcg", why


def _socket_dir(directory: Path) -> Path:
    if len(str(directory / "qmp-spare.sock")) <= SUN_PATH_MAX:
        return directory
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:12]
    short = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"kvmha-lab-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short


def _disk_args(kind: str, directory: Path) -> list[str]:
    image = directory / "disk.img"
    with image.open("wb") as f:
        f.truncate(16 << 20)
    errno, werror = (5, "stop") if kind == "eio" else (28, "enospc")
    node = {
        "node-name": "disk0",
        "driver": "raw",
        "file": {
            "driver": "blkdebug",
            "inject-error": [{"event": "write_aio", "errno": errno}],
            "image": {"driver": "file", "filename": str(image)},
        },
    }
    return [
        "-blockdev", json.dumps(node),
        "-device", f"virtio-blk-pci,drive=disk0,id=vd0,werror={werror},rerror=stop",
    ]  # fmt: skip


def qemu_argv(
    scenario: Scenario, directory: Path, sockets: tuple[Path, Path], accel: Accel,
    memory_mb: int, vcpus: int, boot: list[str], vmcoreinfo: bool = True,
) -> list[str]:  # fmt: skip
    """The QEMU command line of a lab guest (``vmcoreinfo=False`` leaves the device out, as
    many real deployments do)."""
    qmp, spare = sockets
    argv = [
        QEMU, "-nodefaults", "-no-user-config", "-machine", "pc", "-accel", accel,
        "-m", str(memory_mb), "-smp", str(vcpus), "-display", "none",
        "-name", f"kvmha-lab-{scenario.name}",
        "-serial", f"file:{directory / 'console.log'}",
        "-device", "pvpanic", *(["-device", "vmcoreinfo"] if vmcoreinfo else []),
        "-action", "panic=pause,reboot=shutdown,shutdown=pause",
        "-qmp", f"unix:{qmp},server=on,wait=off",
        "-qmp", f"unix:{spare},server=on,wait=off",
        "-S", *boot,
    ]  # fmt: skip
    if scenario.disk:
        argv += _disk_args(scenario.disk, directory)
    return argv


def _boot_args(
    scenario: Scenario, progress: assets.Progress, fill_mb: int = 0
) -> tuple[list[str], str | None]:
    if scenario.guest == "baremetal":
        image = assets.baremetal(scenario.name)
        return ["-drive", f"file={image},format=raw,if=ide,snapshot=on"], None
    linux = assets.linux(progress)
    cmdline = f"console=ttyS0 oops=panic mitigations=off kvmha.scenario={scenario.name}"
    cmdline += f" kvmha.fill={fill_mb}" if fill_mb else ""
    boot = ["-kernel", str(linux.kernel.vmlinuz), "-initrd", str(linux.initramfs)]
    return [*boot, "-append", cmdline], str(linux.kernel.vmlinux)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"  ({path.name}: unreadable)"
    body = text.splitlines()[-lines:] or ["(empty)"]
    return "\n".join(f"  {path.name}: {line}" for line in body)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return ") Z " not in stat


def _reached(scenario: Scenario, runstate: str, events: list[Event], serial: Path) -> bool:
    if runstate != scenario.runstate:
        return False
    if scenario.runstate == "running":
        return "KVMHA-LAB: idle" in serial.read_text(errors="replace")
    return scenario.event is None or any(e.name == scenario.event for e in events)


async def up(
    scenario: Scenario,
    directory: Path,
    *,
    memory_mb: int = 256,
    vcpus: int | None = None,
    accel: str = "auto",
    progress: assets.Progress = assets._quiet,
    vmcoreinfo: bool = True,
    qemu_args: tuple[str, ...] = (),
    fill_mb: int = 0,
) -> LabGuest:
    """Boot ``scenario`` in ``directory`` and return once the guest is in its frozen state.

    ``qemu_args`` are appended to QEMU's command line (memory backends, NUMA nodes, DIMMs);
    ``fill_mb`` has the Linux guest write that much random data to its tmpfs first."""
    if shutil.which(QEMU) is None:
        raise EnvironmentProblem(f"{QEMU} is not installed", "apt-get install qemu-system-x86")
    directory = directory.resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {directory}: {exc.strerror}") from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"{directory} is not writable", "choose another --dir")
    if (directory / STATE_FILE).exists():
        old = LabGuest.load(directory)
        if _alive(old.pid):
            raise BusyError(
                f"a lab guest ({old.scenario}, pid {old.pid}) is already up in {directory}",
                f"run 'kvmha-forensics lab down {directory}' first",
            )
    chosen, reason = pick_accel(scenario, accel)
    boot, vmlinux = _boot_args(scenario, progress, fill_mb)
    sockets = _socket_dir(directory)
    qmp_path, spare_path = sockets / "qmp.sock", sockets / "qmp-spare.sock"
    for stale in (qmp_path, spare_path):
        stale.unlink(missing_ok=True)
    cpus = vcpus or scenario.vcpus
    argv = qemu_argv(
        scenario, directory, (qmp_path, spare_path), chosen, memory_mb, cpus, boot, vmcoreinfo
    ) + list(qemu_args)
    stderr_path, serial = directory / "qemu.stderr", directory / "console.log"
    (directory / "qemu.argv").write_text(json.dumps(argv) + "\n")
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True,
        )  # fmt: skip
    guest = LabGuest(
        scenario.name, str(directory), proc.pid, str(qmp_path), str(spare_path),
        str(stderr_path), str(serial), scenario.runstate, chosen, reason, memory_mb, cpus, vmlinux,
    )  # fmt: skip
    try:
        events = await _drive(scenario, guest, proc)
    except BaseException:
        _stop(proc.pid)
        raise
    guest.events.extend(e.to_json() for e in events)
    guest.save()
    return guest


async def _wait_socket(path: Path, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Until QEMU listens on ``path``: the file appears at bind(), before listen(), and a
    connection in between is refused (seen on a loaded machine)."""
    while proc.poll() is None and time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
                return
            except (FileNotFoundError, ConnectionRefusedError):
                pass
        await asyncio.sleep(0.02)


async def _drive(scenario: Scenario, guest: LabGuest, proc: subprocess.Popen[bytes]) -> list[Event]:
    deadline = time.monotonic() + scenario.timeout
    await _wait_socket(Path(guest.qmp), proc, time.monotonic() + 10)
    events: list[Event] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            qmp = await _monitor(stack, guest)
            await qmp.execute("cont")
            while time.monotonic() < deadline and proc.poll() is None:
                event = await qmp.next_event(0.25)
                events += ([event] if event else []) + qmp.events()
                status = await qmp.execute("query-status")
                runstate = str(status["status"]) if isinstance(status, dict) else "?"
                if _reached(scenario, runstate, events, Path(guest.serial)):
                    return events
    except ForensicsError:
        if proc.poll() is None:
            raise
    failure = f"the guest did not reach {scenario.runstate} in {scenario.timeout:g}s"
    if proc.poll() is not None:
        failure = f"QEMU exited with status {proc.returncode}"
    details = "\n".join((_tail(Path(guest.serial)), _tail(Path(guest.stderr))))
    error = OperationTimeout if proc.poll() is None else GuestStateError
    raise error(f"lab {scenario.name}: {failure}", "see the tails below", details)


async def _monitor(stack: contextlib.AsyncExitStack, guest: LabGuest) -> QMPSession:
    """A session on the guest's QMP socket, or on its spare when another client (a watcher
    scanning the directory) connected first: QEMU greets one client per monitor at a time."""
    try:
        return await stack.enter_async_context(session(Endpoint(path=guest.qmp), timeout=3))
    except GuestHeld:
        return await stack.enter_async_context(session(Endpoint(path=guest.qmp_spare), timeout=10))


def _stop(pid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        end = time.monotonic() + wait
        while time.monotonic() < end and _alive(pid):
            time.sleep(0.02)
        if not _alive(pid):
            break
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def down(directory: Path) -> LabGuest:
    """End the QEMU of the lab guest in ``directory``, and only it."""
    guest = LabGuest.load(directory.resolve())
    end(guest)
    return guest


def end(guest: LabGuest) -> None:
    """End ``guest``'s QEMU if its pid is still that QEMU's, and remove its sockets and state
    file (its directory may be gone already)."""
    cmdline = Path(f"/proc/{guest.pid}/cmdline")
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        if _alive(guest.pid) and guest.qmp.encode() in cmdline.read_bytes():
            _stop(guest.pid)
    for path in (guest.qmp, guest.qmp_spare, str(Path(guest.dir) / STATE_FILE)):
        Path(path).unlink(missing_ok=True)
