"""Find the guest kernel's debug info (vmlinux with DWARF) by build ID.

The dump's VMCOREINFO names the kernel (``OSRELEASE=``) and, since Linux 5.9, its build ID
(``BUILD-ID=``, commit 0935288c6e00 "kdump: append kernel build-id string to VMCOREINFO").
A vmlinux whose GNU build ID differs is refused: symbols from the wrong build print garbage.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection

from .errors import InputError
from .lab.paths import cache_dir
from .sources import vmcoreinfo

if TYPE_CHECKING:
    from .analysis import Context

SYSTEM_DEBUG = Path("/usr/lib/debug")


def build_id(path: Path) -> str | None:
    """The GNU build ID of an ELF file, in hex; None if it has none or is not ELF."""
    try:
        with path.open("rb") as f:
            elf = ELFFile(f)
            for section in elf.iter_sections():
                if not isinstance(section, NoteSection):
                    continue
                for note in section.iter_notes():
                    if note["n_name"] == "GNU" and note["n_type"] == "NT_GNU_BUILD_ID":
                        return str(note["n_desc"])
    except (OSError, ELFError):
        return None
    return None


def dump_vmcoreinfo(ctx: Context) -> dict[str, str]:
    """VMCOREINFO of the analyzed dump: the bundle's recovered copy, else the dump's note."""
    text = ctx.text("vmcoreinfo")
    if text is None and ctx.path("memory-elf"):
        text = vmcoreinfo.from_elf_note(ctx.path("memory-elf"))  # type: ignore[arg-type]
    if text is None and ctx.memory is not None:
        text = vmcoreinfo.scan(ctx.memory)
    return vmcoreinfo.parse(text) if text else {}


def _candidates(release: str, wanted: str | None, dirs: tuple[Path, ...]) -> Iterator[Path]:
    for directory in dirs:
        yield from sorted(directory.rglob("vmlinux*"))
    if wanted:
        yield SYSTEM_DEBUG / ".build-id" / wanted[:2] / f"{wanted[2:]}.debug"
    yield SYSTEM_DEBUG / "boot" / f"vmlinux-{release}"
    yield SYSTEM_DEBUG / "lib" / "modules" / release / "vmlinux"
    yield cache_dir() / "kernel" / release / "vmlinux"


def find_vmlinux(ctx: Context) -> Path | None:
    """The vmlinux matching the dump: ``--vmlinux`` (checked), else searched by build ID."""
    info = ctx.vmcoreinfo
    wanted = info.get("BUILD-ID")
    explicit = ctx.inputs.vmlinux
    if explicit is not None:
        if not explicit.is_file():
            raise InputError(f"--vmlinux {explicit} does not exist")
        found = build_id(explicit)
        if found is None:
            raise InputError(f"--vmlinux {explicit} is not an ELF file with a build ID")
        if wanted and found != wanted:
            raise InputError(
                f"--vmlinux {explicit} has build ID {found}, the dump's kernel {wanted}",
                f"use the vmlinux of {info.get('OSRELEASE', 'that kernel')}",
            )
        return explicit
    release = info.get("OSRELEASE")
    if release is None:
        return None
    for candidate in _candidates(release, wanted, ctx.inputs.debuginfo_dirs):
        if candidate.is_file() and (wanted is None or build_id(candidate) == wanted):
            return candidate
    return None


def debug_package(release: str) -> str:
    """The Debian package holding the vmlinux of ``release``."""
    return f"linux-image-{release}-dbg"
