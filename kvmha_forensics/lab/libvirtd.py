"""A libvirt daemon for the lab and the tests, on a host without systemd as PID 1.

Debian's ``libvirt-daemon`` and ``libvirt-daemon-driver-qemu`` install the daemons but nothing
that prepares the host (that is ``libvirt-daemon-system``, which pulls systemd). :func:`prepare`
does its part: the directories, the ``libvirt-qemu`` user and group (libvirtd looks them up
even when QEMU runs as root) and a ``qemu.conf`` that runs QEMU as root without relabelling.
:func:`ensure` starts ``virtlogd`` and ``libvirtd`` when they are not running and returns what
it started, so the caller stops only that (:func:`stop`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import EnvironmentProblem

DIRS = tuple(
    Path(p)
    for p in ("/var/log/libvirt/qemu", "/var/lib/libvirt/qemu", "/var/cache/libvirt/qemu",
              "/etc/libvirt/qemu", "/run/libvirt")
)  # fmt: skip
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
MARK = "# written by kvmha-forensics (kvmha_forensics/lab/libvirtd.py)"
QEMU_CONF_TEXT = f"""{MARK}: libvirt without systemd
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
"""
SOCKET = Path("/run/libvirt/libvirt-sock")
LOG_SOCKET = Path("/run/libvirt/virtlogd-sock")
USERS_LOCK = Path("/run/kvmha-forensics-libvirtd.lock")
STARTED = Path("/run/kvmha-forensics-libvirtd.json")  # what :func:`shared` users started
_held: list[int] = []  # the lock :func:`shared` holds in this process
START_TIMEOUT = 60.0  # the first start probes QEMU's capabilities (~8 s here)


@dataclass(frozen=True, slots=True)
class Daemon:
    """A daemon this module started: its name and pid."""

    name: str
    pid: int


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise EnvironmentProblem(f"{' '.join(argv)} failed: {done.stderr.strip()}")


def prepare() -> None:
    """Directories, the ``libvirt-qemu`` user and group, and ``qemu.conf`` (written only when
    there is none: a host's own configuration is left alone)."""
    for directory in DIRS:
        directory.mkdir(parents=True, exist_ok=True)
    if not _exists("group", "libvirt-qemu"):
        _run(["groupadd", "--system", "libvirt-qemu"])
    if not _exists("passwd", "libvirt-qemu"):
        home = ["--home-dir", "/var/lib/libvirt", "--shell", "/usr/sbin/nologin"]
        _run(["useradd", "--system", "--gid", "libvirt-qemu", "--no-create-home", *home,
              "libvirt-qemu"])  # fmt: skip
    if not QEMU_CONF.exists():
        QEMU_CONF.write_text(QEMU_CONF_TEXT)


def _exists(database: str, name: str) -> bool:
    return subprocess.run(["getent", database, name], capture_output=True).returncode == 0


def daemon_pid(name: str) -> int | None:
    """The pid in ``/run/NAME.pid`` when that process is alive and is ``name``."""
    try:
        pid = int(Path(f"/run/{name}.pid").read_text().strip())
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    comm, _, rest = stat.partition("(")[2].rpartition(")")
    return pid if comm == name and rest.split()[0] != "Z" else None


def running() -> bool:
    """Whether a libvirtd is up (its pid file names a live libvirtd)."""
    return daemon_pid("libvirtd") is not None


def ensure() -> list[Daemon]:
    """Start ``virtlogd`` and ``libvirtd`` unless they run; return the ones started here.

    libvirtd is pinned to CPU 0: unpinned restarts were seen to probe QEMU again (~8 s)."""
    if shutil.which("libvirtd") is None:
        raise EnvironmentProblem(
            "libvirtd is not installed",
            "apt-get install libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients",
        )
    prepare()
    started: list[Daemon] = []
    for name, argv, sock in (
        ("virtlogd", ["virtlogd", "-d"], LOG_SOCKET),
        ("libvirtd", ["taskset", "-c", "0", "libvirtd", "-d"], SOCKET),
    ):
        if daemon_pid(name) is None:
            _run(argv)
            pid = _wait_pid(name)
            started.append(Daemon(name, pid))
            _wait_socket(sock, name)
    return started


def _wait_pid(name: str) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = daemon_pid(name)
        if pid is not None:
            return pid
        time.sleep(0.05)
    raise EnvironmentProblem(f"{name} did not start", f"run '{name}' in the foreground to see why")


def _wait_socket(path: Path, name: str) -> None:
    """Until ``path`` accepts a connection (a stale socket file from an earlier run does not)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(str(path))
                return
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise EnvironmentProblem(f"{name} does not listen on {path} after {START_TIMEOUT:g}s")
        time.sleep(0.05)


@contextmanager
def shared() -> Iterator[None]:
    """libvirtd and virtlogd up for the ``with`` body, shared with other users of this
    function (e.g. test sessions side by side): the first starts what is missing, the last
    to leave stops what any of them started; daemons that were already up stay up."""
    fd = os.open(USERS_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = _load_started()
        started += ensure()
        STARTED.write_text(json.dumps([asdict(d) for d in started]))
        fcntl.flock(fd, fcntl.LOCK_SH)
        _held.append(fd)
        yield
    finally:
        if fd in _held:
            _held.remove(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # others still use the daemons
        else:
            stop(_load_started())
            STARTED.unlink(missing_ok=True)
        os.close(fd)


def _load_started() -> list[Daemon]:
    try:
        return [Daemon(str(d["name"]), int(d["pid"])) for d in json.loads(STARTED.read_text())]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def started_here() -> list[Daemon]:
    """The daemons users of :func:`shared` started (they stop them when the last one leaves)."""
    return _load_started()


@contextmanager
def exclusive() -> Iterator[bool]:
    """Within :func:`shared`: whether this process is the daemons' only user now; while the
    block runs, others wait to start using them (e.g. to restart libvirtd safely)."""
    if not _held:
        yield False
        return
    fd = _held[-1]
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        yield False
        return
    try:
        yield True
    finally:
        fcntl.flock(fd, fcntl.LOCK_SH)


def restart() -> None:
    """Start libvirtd again (within :func:`exclusive`) and record it in place of the one that
    was stopped, so the last user of :func:`shared` stops this one."""
    kept = [d for d in _load_started() if d.name != "libvirtd"]
    kept += ensure()
    STARTED.write_text(json.dumps([asdict(d) for d in kept]))


def stop(daemons: list[Daemon]) -> None:
    """Stop the daemons :func:`ensure` started (libvirtd first), each only if still itself."""
    for daemon in reversed(daemons):
        if daemon_pid(daemon.name) != daemon.pid:
            continue
        os.kill(daemon.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and daemon_pid(daemon.name) == daemon.pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(daemon.pid, os.WNOHANG)
            time.sleep(0.05)
