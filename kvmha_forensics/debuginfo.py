"""Find the guest kernel's debug info (vmlinux with DWARF) by build ID.

The dump's VMCOREINFO names the kernel (``OSRELEASE=``) and, since Linux 5.9, its build ID
(``BUILD-ID=``, commit 0935288c6e00 "kdump: append kernel build-id string to VMCOREINFO").
A vmlinux whose GNU build ID differs is refused: symbols from the wrong build print garbage.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection

from .errors import InputError
from .input_files import absent, opened, refusal
from .sources import vmcoreinfo

SYSTEM_DEBUG = Path("/usr/lib/debug")


def build_id(path: Path) -> str | None:
    """The GNU build ID of an ELF file, in hex; None if it has none or is not ELF."""
    try:
        with opened(path) as f:
            elf = ELFFile(f)
            for section in elf.iter_sections():
                if not isinstance(section, NoteSection):
                    continue
                for note in section.iter_notes():
                    if note["n_name"] == "GNU" and note["n_type"] == "NT_GNU_BUILD_ID":
                        return str(note["n_desc"])
    except (OSError, ELFError, InputError):
        return None
    return None


def dump_vmcoreinfo(recovered: str | None, elf: Path | None, memory: Path) -> dict[str, str]:
    """VMCOREINFO of a dump: the bundle's ``recovered`` copy, else the ELF dump's note, else
    a scan of ``memory`` (a kdump file or an ELF dump without the note)."""
    text = recovered
    if text is None and elf is not None:
        text = vmcoreinfo.from_elf_note(elf)
    if text is None:
        text = vmcoreinfo.scan(memory)
    return vmcoreinfo.parse(text) if text else {}


def _candidates(release: str, wanted: str | None, dirs: tuple[Path, ...]) -> Iterator[Path]:
    for directory in dirs:
        yield from sorted(directory.rglob("vmlinux*"))
    if wanted:
        yield SYSTEM_DEBUG / ".build-id" / wanted[:2] / f"{wanted[2:]}.debug"
    yield SYSTEM_DEBUG / "boot" / f"vmlinux-{release}"
    yield SYSTEM_DEBUG / "lib" / "modules" / release / "vmlinux"


def find_vmlinux(
    info: Mapping[str, str], explicit: Path | None, dirs: tuple[Path, ...]
) -> Path | None:
    """The vmlinux matching the dump whose VMCOREINFO is ``info``: ``explicit`` (``--vmlinux``,
    checked), else searched by build ID in ``dirs`` (``--debuginfo-dir``) and /usr/lib/debug.

    Raises: InputError when ``explicit`` is missing, not ELF, or of another build."""
    wanted = info.get("BUILD-ID")
    if explicit is not None:
        if (why := refusal(explicit)) is not None:
            what = absent(explicit) if why == "missing" else f"is {why}"
            raise InputError(f"--vmlinux {explicit} {what}", "give the guest kernel's vmlinux")
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
    for candidate in _candidates(release, wanted, dirs):
        if candidate.is_file() and (wanted is None or build_id(candidate) == wanted):
            return candidate
    return None


def debug_package(release: str) -> str:
    """The Debian package holding the vmlinux of ``release``."""
    return f"linux-image-{release}-dbg"
