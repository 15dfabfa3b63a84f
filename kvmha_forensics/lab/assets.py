"""Guest assets, fetched or built once and cached outside the repository.

Linux guests use Debian's cloud kernel, resolved through the meta-packages (never a pinned
version), its ``-dbg`` vmlinux, a busybox-static initramfs whose ``/init`` is
``fixtures/guest/init``, and the trigger module built from ``fixtures/module``.
Bare-metal guests are boot sectors assembled from ``fixtures/baremetal``.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvironmentProblem, InputError
from . import newc
from .paths import cache_dir, fixtures_dir

log = logging.getLogger(__name__)

KERNEL_META = "linux-image-cloud-amd64"
BUSYBOX = Path("/bin/busybox")
# Loaded by /init in this order; virtio's chain must come before virtio_blk.
GUEST_MODULES = (
    "qemu_fw_cfg",
    "pvpanic",
    "pvpanic-mmio",
    "pvpanic-pci",
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
)

Progress = Callable[[str, float | None], None]
"""Called with a description and a percentage (None when unknown)."""


def _quiet(_description: str, _percent: float | None) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Kernel:
    """A cached Debian cloud kernel: boot image, debug vmlinux and the lab's modules."""

    release: str
    vmlinuz: Path
    vmlinux: Path
    modules: Path


@dataclass(frozen=True, slots=True)
class LinuxAssets:
    kernel: Kernel
    initramfs: Path


def _run(argv: list[str], what: str, hint: str) -> str:
    """Run a setup command with no terminal (apt asks nothing: CI has no stdin)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, env=env
        )
    except FileNotFoundError as exc:
        raise EnvironmentProblem(f"{argv[0]} is not installed ({what})", hint) from exc
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentProblem(f"{what} failed: {tail}", hint)
    return done.stdout


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def resolve_release() -> str:
    """The kernel release behind ``linux-image-cloud-amd64`` in apt's lists."""
    out = _run(
        ["apt-cache", "depends", KERNEL_META],
        "resolving the guest kernel through apt",
        "run 'apt-get update' as root, or set KVMHA_CACHE_DIR to a cache that holds a kernel",
    )
    match = re.search(r"Depends: linux-image-(\S+?)(?:-unsigned)?$", out, re.M)
    if not match:
        raise EnvironmentProblem(
            f"apt does not know {KERNEL_META}",
            "run 'apt-get update' as root on a Debian bookworm host",
        )
    return match.group(1)


def _cached_release(root: Path) -> str | None:
    ready = sorted(p.parent.name for p in (root / "kernel").glob("*/ready"))
    return ready[-1] if ready else None


def manual_debs() -> Path:
    """Where a user puts .deb files fetched by hand when the Debian archive is unreachable."""
    return cache_dir() / "debs"


def _download(package: str, into: Path, progress: Progress) -> Path:
    """``package``'s .deb: one put in :func:`manual_debs` by hand, else ``apt-get download``
    with its progress (APT::Status-Fd) reported to ``progress``."""
    by_hand = sorted(manual_debs().glob(f"{package}_*.deb"))
    if by_hand:
        return by_hand[-1]
    read_fd, write_fd = os.pipe()
    argv = ["apt-get", "download", "-q", "-o", f"APT::Status-Fd={write_fd}", package]
    try:
        proc = subprocess.Popen(
            argv, cwd=into, pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    except FileNotFoundError as exc:
        raise EnvironmentProblem("apt-get is not installed", "run on Debian bookworm") from exc
    os.close(write_fd)
    with os.fdopen(read_fd) as status:
        for line in status:
            parts = line.split(":", 3)
            if parts[0] == "dlstatus" and len(parts) == 4:
                progress(f"downloading {package}", float(parts[2]))
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.wait() != 0:
        errors = [ln for ln in stderr.splitlines() if ln.startswith("E:")] or ["no error text"]
        raise EnvironmentProblem(
            f"could not download {package} from Debian's archive ({errors[-1]})",
            f"check apt's sources and network, or fetch {package}_*.deb by hand into "
            f"{manual_debs()}/ and run the command again",
        )
    found = sorted(into.glob(f"{package}_*.deb"))
    if not found:
        raise EnvironmentProblem(f"apt-get download left no .deb for {package}", "retry")
    return found[-1]


def _extract_image(deb: Path, release: str, dest: Path) -> None:
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        _run(["dpkg-deb", "-x", str(deb), tmp], f"unpacking {deb.name}", "re-run the fetch")
        root = Path(tmp)
        shutil.copy(root / f"boot/vmlinuz-{release}", dest / "vmlinuz")
        (dest / "modules").mkdir(exist_ok=True)
        tree = root / f"lib/modules/{release}/kernel"
        for name in GUEST_MODULES:
            hits = list(tree.rglob(f"{name}.ko"))
            if not hits:
                raise EnvironmentProblem(f"module {name}.ko missing from {deb.name}", "report it")
            shutil.copy(hits[0], dest / "modules" / f"{name}.ko")


def _extract_vmlinux(deb: Path, release: str, dest: Path) -> None:
    member = f"./usr/lib/debug/boot/vmlinux-{release}"
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        done = subprocess.run(["tar", "-x", "-C", tmp, member], stdin=tar.stdout, check=False)
        tar.wait()
        if done.returncode != 0 or tar.returncode != 0:
            raise EnvironmentProblem(f"{member} not found in {deb.name}", "re-run the fetch")
        os.replace(Path(tmp) / member, dest / "vmlinux")


def kernel(progress: Progress = _quiet, release: str | None = None) -> Kernel:
    """The cached kernel for ``release`` (default: apt's current one), fetched if missing."""
    root = cache_dir()
    if release is None:
        try:
            release = resolve_release()
        except EnvironmentProblem:
            release = _cached_release(root)
            if release is None:
                raise
            log.info("apt cannot resolve the kernel; using the cached %s", release)
    dest = root / "kernel" / release
    assets = Kernel(release, dest / "vmlinuz", dest / "vmlinux", dest / "modules")
    if (dest / "ready").exists():
        return assets
    with _locked(root):
        if (dest / "ready").exists():
            return assets
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            image = _download(f"linux-image-{release}", Path(tmp), progress)
            _extract_image(image, release, dest)
            debug = _download(f"linux-image-{release}-dbg", Path(tmp), progress)
            progress("unpacking the debug vmlinux", None)
            _extract_vmlinux(debug, release, dest)
        (dest / "ready").write_text(release + "\n")
    return assets


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def trigger_module(kern: Kernel) -> Path:
    """``fixtures/module/kvmha_lab.ko`` built against the kernel's Debian headers."""
    source = fixtures_dir() / "module"
    key = _digest(*(p.read_bytes() for p in sorted(source.iterdir())), kern.release.encode())
    out = cache_dir() / "module" / f"kvmha_lab-{kern.release}-{key}.ko"
    if out.exists():
        return out
    headers = Path(f"/usr/src/linux-headers-{kern.release}")
    if not (headers / "Makefile").exists():
        _run(
            ["apt-get", "install", "-y", "-q", f"linux-headers-{kern.release}"],
            f"installing linux-headers-{kern.release}",
            f"install linux-headers-{kern.release} with apt as root",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        build = Path(tmp) / "src"
        shutil.copytree(source, build)
        _run(
            ["make", "-C", str(headers), f"M={build}", "modules"],
            "building the lab's trigger module",
            "install gcc and make (apt-get install build-essential)",
        )
        os.replace(build / "kvmha_lab.ko", out)
    return out


def initramfs(kern: Kernel, module: Path) -> Path:
    """A busybox-static initramfs with the lab's ``/init``, drivers and trigger module."""
    if not BUSYBOX.is_file():
        raise EnvironmentProblem("/bin/busybox is missing", "apt-get install busybox-static")
    init = fixtures_dir() / "guest" / "init"
    key = _digest(init.read_bytes(), BUSYBOX.read_bytes(), module.read_bytes())
    out = cache_dir() / "initramfs" / f"{kern.release}-{key}.cpio"
    if out.exists():
        return out
    entries = [newc.directory(d) for d in ("bin", "dev", "proc", "sys", "lib", "lib/modules")]
    entries += [
        newc.chardev("dev/console", 5, 1),
        newc.file("init", init, 0o755),
        newc.file("bin/busybox", BUSYBOX, 0o755),
        newc.file("lib/modules/kvmha_lab.ko", module),
    ]
    entries += [newc.file(f"lib/modules/{n}.ko", kern.modules / f"{n}.ko") for n in GUEST_MODULES]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tmp.open("wb") as stream:
        newc.write(stream, entries)
    os.replace(tmp, out)
    return out


def linux(progress: Progress = _quiet) -> LinuxAssets:
    """Everything a Linux lab guest boots from."""
    kern = kernel(progress)
    return LinuxAssets(kern, initramfs(kern, trigger_module(kern)))


def baremetal(name: str) -> Path:
    """The boot sector ``fixtures/baremetal/NAME.asm``, assembled with nasm."""
    source_dir = fixtures_dir() / "baremetal"
    source = source_dir / f"{name}.asm"
    if not source.is_file():
        raise InputError(f"no bare-metal source {source}", "see docs/lab.md to add one")
    key = _digest(*(p.read_bytes() for p in sorted(source_dir.glob("*.inc"))), source.read_bytes())
    out = cache_dir() / "baremetal" / f"{name}-{key}.bin"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    _run(
        ["nasm", "-f", "bin", "-I", f"{source_dir}/", "-o", str(tmp), str(source)],
        f"assembling {source.name}",
        "apt-get install nasm",
    )
    os.replace(tmp, out)
    return out
