"""find_vmlinux's search of --debuginfo-dir: a tree people (or a guest's files) may have
made hostile is walked without recursion and to a depth."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from kvmha_forensics.debuginfo import MAX_DEPTH, build_id, find_vmlinux
from tests.hostile.hostile import nested, unnest

ELF = Path(sys.executable).resolve()  # a real ELF file with a GNU build ID


def test_a_tree_3000_levels_deep_beside_the_vmlinux_is_no_obstacle(tmp_path: Path) -> None:
    wanted = build_id(ELF)
    assert wanted is not None
    (tmp_path / "boot" / "debug").mkdir(parents=True)
    shutil.copy(ELF, tmp_path / "boot" / "debug" / "vmlinux-6.1.0-x")
    nested(tmp_path / "boot", ["d"] * 3000)
    info = {"OSRELEASE": "6.1.0-x", "BUILD-ID": wanted}
    try:  # before: RecursionError, and the guest-kernel analyzer failed with it
        found = find_vmlinux(info, None, (tmp_path,))
    finally:
        unnest(tmp_path / "boot", "d")
    assert found == tmp_path / "boot" / "debug" / "vmlinux-6.1.0-x"


def test_a_vmlinux_deeper_than_the_bound_or_behind_a_link_is_not_searched(tmp_path: Path) -> None:
    wanted = build_id(ELF)
    assert wanted is not None
    deep = tmp_path / "deep"
    for _ in range(MAX_DEPTH + 1):
        deep /= "d"
    deep.mkdir(parents=True)
    shutil.copy(ELF, deep / "vmlinux")  # MAX_DEPTH + 1 directories down
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(ELF, tmp_path / "elsewhere" / "vmlinux")
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "link").symlink_to(tmp_path / "elsewhere")
    info = {"OSRELEASE": "6.1.0-x", "BUILD-ID": wanted}
    assert find_vmlinux(info, None, (tmp_path / "top",)) is None
    assert find_vmlinux(info, None, (tmp_path / "deep",)) is None
    assert find_vmlinux(info, None, (deep.parent,)) == deep / "vmlinux"
