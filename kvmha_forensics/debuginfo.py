"""Find the guest kernel's debug info (vmlinux with DWARF) by build ID.

The dump's VMCOREINFO names the kernel (``OSRELEASE=``) and, since Linux 5.9, its build ID
(``BUILD-ID=``, commit 0935288c6e00 "kdump: append kernel build-id string to VMCOREINFO").
A vmlinux whose GNU build ID differs is refused: symbols from the wrong build print garbage.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from .errors import InputError
from .input_files import absent, opened, refusal
from .sources import vmcoreinfo

SYSTEM_DEBUG = Path("/usr/lib/debug")
SHT_NOTE = 7
NT_GNU_BUILD_ID = 3
ET_CORE = 4  # a core file's note type 3 is NT_PRPSINFO, not a build ID
#: Per ELF class: the header after e_ident, and a section header (name, type, flags, addr,
#: offset, size, ...).
_ELF_HEADER = {1: "HHIIIIIHHHHHH", 2: "HHIQQQIHHHHHH"}
_SECTION = {1: "IIIIII", 2: "IIQQQQ"}
MAX_SECTIONS = 1 << 16
MAX_TABLE_BYTES = 1 << 22  # a section header table larger than this is read to here
MAX_NOTE_BYTES = 1 << 20  # a section of notes larger than this is not read
MAX_DEPTH = 32  # --debuginfo-dir is searched this many directories down


def build_id(path: Path) -> str | None:
    """The GNU build ID of an ELF file, in hex; None if it has none or is not ELF.

    The first ``NT_GNU_BUILD_ID`` note named ``GNU`` in an ``SHT_NOTE`` section, in section
    order, read with ``struct`` (pyelftools costs ~25 ms to import, for one note)."""
    try:
        with opened(path) as f:
            return _build_id(f)
    except (OSError, InputError, struct.error, ValueError):
        return None


def _build_id(f: BinaryIO) -> str | None:
    ident = f.read(16)
    if len(ident) < 16 or not ident.startswith(b"\x7fELF") or ident[4] not in (1, 2):
        return None
    if ident[5] not in (1, 2):
        return None
    order = "<" if ident[5] == 1 else ">"
    header = struct.unpack(
        order + _ELF_HEADER[ident[4]], f.read(struct.calcsize(order + _ELF_HEADER[ident[4]]))
    )
    e_type, shoff, shentsize, shnum = header[0], header[5], header[10], header[11]
    section = order + _SECTION[ident[4]]
    if e_type == ET_CORE or shoff == 0 or shentsize < struct.calcsize(section):
        return None
    if shnum == 0:  # extended numbering: the count is section 0's sh_size
        f.seek(shoff)
        shnum = struct.unpack(section, f.read(struct.calcsize(section)))[5]
    f.seek(shoff)
    table = f.read(min(min(shnum, MAX_SECTIONS) * shentsize, MAX_TABLE_BYTES))
    for i in range(len(table) // shentsize):
        _, sh_type, _, _, offset, size = struct.unpack_from(section, table, i * shentsize)
        if sh_type == SHT_NOTE and (found := _gnu_build_id(f, order, offset, size)):
            return found
    return None


def _gnu_build_id(f: BinaryIO, order: str, offset: int, size: int) -> str | None:
    """The build ID among the notes at ``offset`` (``size`` bytes): each a 12-byte header,
    then its name and its descriptor, each padded to 4 bytes."""
    f.seek(offset)
    blob = f.read(min(size, MAX_NOTE_BYTES))
    pos = 0
    while pos + 12 < len(blob):
        namesz, descsz, kind = struct.unpack_from(order + "III", blob, pos)
        name_at = pos + 12
        desc_at = name_at + _align4(namesz)
        name = blob[name_at : name_at + namesz].split(b"\0", 1)[0]
        if kind == NT_GNU_BUILD_ID and name == b"GNU" and desc_at + descsz <= len(blob):
            return blob[desc_at : desc_at + descsz].hex()
        pos = desc_at + _align4(descsz)
    return None


def _align4(n: int) -> int:
    return (n + 3) & ~3


def dump_vmcoreinfo(recovered: str | None, elf: Path | None, memory: Path) -> dict[str, str]:
    """VMCOREINFO of a dump: the bundle's ``recovered`` copy, else the ELF dump's note, else
    a scan of ``memory`` (a kdump file or an ELF dump without the note)."""
    text = recovered
    if text is None and elf is not None:
        text = vmcoreinfo.from_elf_note(elf)
    if text is None:
        text = vmcoreinfo.scan(memory)
    return vmcoreinfo.parse(text) if text else {}


def _vmlinux_files(top: Path) -> list[Path]:
    """``vmlinux*`` under ``top``, sorted; at most :data:`MAX_DEPTH` directories down, links
    to directories not followed, and without recursion (``Path.rglob`` recursed until
    ``RecursionError`` in a tree 3000 levels deep). A directory that cannot be listed (its
    path too long, say) is passed over."""
    found: list[Path] = []
    stack = [(top, 0)]
    while stack:
        here, depth = stack.pop()
        try:
            with os.scandir(here) as listing:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in listing]
        except OSError:
            continue
        found += [here / name for name, is_dir in entries if name.startswith("vmlinux")]
        if depth < MAX_DEPTH:
            stack += [(here / name, depth + 1) for name, is_dir in entries if is_dir]
    return sorted(found)


def _candidates(release: str, wanted: str | None, dirs: tuple[Path, ...]) -> Iterator[Path]:
    for directory in dirs:
        yield from _vmlinux_files(directory)
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
