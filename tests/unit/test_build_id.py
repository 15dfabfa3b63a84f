"""debuginfo.build_id: its own ELF note reader gives what pyelftools gives (which it replaced)."""

from __future__ import annotations

import resource
import struct
import sys
from pathlib import Path

import pytest
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection

from kvmha_forensics.debuginfo import build_id


def pyelftools_build_id(path: Path) -> str | None:
    """The reading build_id did before (debuginfo.py with pyelftools)."""
    try:
        with path.open("rb") as f:
            for section in ELFFile(f).iter_sections():
                if isinstance(section, NoteSection):
                    for note in section.iter_notes():
                        if note["n_name"] == "GNU" and note["n_type"] == "NT_GNU_BUILD_ID":
                            return str(note["n_desc"])
    except (OSError, ELFError):
        return None
    return None


def _note(order: str, name: bytes, kind: int, desc: bytes) -> bytes:
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack(order + "III", len(name), len(desc), kind) + pad(name) + pad(desc)


def synthetic_elf(elf_class: int, order: str, notes: bytes, e_type: int = 2) -> bytes:
    """An ELF file with a null section and one SHT_NOTE section holding ``notes``."""
    ident = b"\x7fELF" + bytes([elf_class, 1 if order == "<" else 2, 1]) + b"\0" * 9
    header = "HHIIIIIHHHHHH" if elf_class == 1 else "HHIQQQIHHHHHH"
    section = "IIIIIIIIII" if elf_class == 1 else "IIQQQQIIQQ"
    ehsize = 16 + struct.calcsize(order + header)
    shentsize = struct.calcsize(order + section)
    shoff = ehsize + len(notes)
    head = struct.pack(order + header, e_type, 3 if elf_class == 1 else 62, 1, 0, 0, shoff, 0,
                       ehsize, 0, 0, shentsize, 2, 0)  # fmt: skip
    null = struct.pack(order + section, *([0] * 10))
    note = struct.pack(order + section, 0, 7, 2, 0, ehsize, len(notes), 0, 0, 4, 0)
    return ident + head + notes + null + note


def system_elf_files() -> list[Path]:
    found = [Path(sys.executable).resolve()]
    found += sorted(Path(struct.__file__).parent.glob("lib-dynload/*.so"))[:10]
    found += sorted(Path("/usr/lib/x86_64-linux-gnu").glob("libc.so*"))
    return [p for p in found if p.is_file()]


@pytest.mark.parametrize("path", system_elf_files(), ids=lambda p: p.name)
def test_same_as_pyelftools_on_real_files(path: Path) -> None:
    assert build_id(path) == pyelftools_build_id(path)


def test_real_files_have_a_build_id() -> None:
    assert any(build_id(p) for p in system_elf_files()), "no ELF file here has a build ID"


@pytest.mark.parametrize("elf_class", [1, 2])
@pytest.mark.parametrize("order", ["<", ">"])
def test_same_as_pyelftools_on_each_class_and_byte_order(
    tmp_path: Path, elf_class: int, order: str
) -> None:
    notes = (
        _note(order, b"Xen", 3, b"linux\0")  # type 3 of another owner: not a build ID
        + _note(order, b"GNU", 1, b"\0" * 16)
        + _note(order, b"GNU", 3, bytes(range(20)))
        + _note(order, b"GNU", 3, b"\xff" * 20)  # only the first counts
    )
    path = tmp_path / "elf"
    path.write_bytes(synthetic_elf(elf_class, order, notes))
    assert build_id(path) == pyelftools_build_id(path) == bytes(range(20)).hex()


def test_none_without_a_build_id_or_for_a_core(tmp_path: Path) -> None:
    path = tmp_path / "elf"
    path.write_bytes(synthetic_elf(2, "<", _note("<", b"GNU", 1, b"\0" * 16)))
    assert build_id(path) is None
    path.write_bytes(synthetic_elf(2, "<", _note("<", b"GNU", 3, b"\1" * 20), e_type=4))
    assert build_id(path) is None and pyelftools_build_id(path) is None


@pytest.mark.parametrize("cut", [0, 3, 16, 40, 70, 100])
def test_none_for_what_is_not_a_whole_elf_file(tmp_path: Path, cut: int) -> None:
    whole = synthetic_elf(2, "<", _note("<", b"GNU", 3, b"\1" * 20))
    path = tmp_path / "elf"
    path.write_bytes(whole[:cut])
    assert build_id(path) is None
    path.write_bytes(b"not an ELF file at all, just text\n")
    assert build_id(path) is None


def test_a_hostile_section_table_is_read_to_a_bound(tmp_path: Path) -> None:
    """65535 sections of 65535 bytes each (4 GiB) over a sparse file: the table is read to
    4 MiB (before: the whole 4 GiB, into memory), and no build ID is found in it."""
    path = tmp_path / "vmlinux-hostile"
    header = b"\x7fELF\x02\x01\x01" + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, 0, 64, 0, 64, 0, 0, 0xFFFF, 0xFFFF, 0)
    with path.open("wb") as f:
        f.write(header)
        f.truncate(5 << 30)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert build_id(path) is None
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 64 << 10  # KiB
