"""A guest's memory is hostile input too: analysis follows pointers the guest kernel wrote.
A cycle planted in its PID tree kept drgn's walk going, and growing, forever (1.2 GB after
60 s, then killed); reading the guest kernel now ends at its time bound, and the other
analyzers' verdict stands."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import drgn
import pytest
from drgn.helpers.linux.mm import virt_to_phys
from elftools.elf.elffile import ELFFile

from kvmha_forensics.lab import assets
from tests.conftest import DEBUGINFO, Lab
from tests.hostile.hostile import cli

pytestmark = pytest.mark.lab
INCOMPLETE = 7


def _pid_tree_root_slot(dump: Path) -> tuple[int, int]:
    """The guest-physical address of the first slot of the root node of the guest's PID
    tree (``init_pid_ns.idr``), and that node's tagged pointer."""

    prog = drgn.Program()
    prog.set_core_dump(str(dump))
    prog.load_debug_info([str(assets.kernel().vmlinux)])
    head = prog["init_pid_ns"].idr.idr_rt.xa_head.value_()
    assert head & 3 == 2, f"the PID tree has no node: {head:#x}"
    node = drgn.Object(prog, "struct xa_node *", head - 2)
    slot = drgn.Object(prog, "void *", node.slots[0].address_of_().value_())
    return virt_to_phys(slot).value_(), head


def _poke(dump: Path, physical: int, value: int) -> None:
    with dump.open("r+b") as f:
        for seg in ELFFile(f).iter_segments():
            start, size = seg["p_paddr"], seg["p_filesz"]
            if seg["p_type"] == "PT_LOAD" and start <= physical < start + size:
                f.seek(seg["p_offset"] + physical - start)
                f.write(struct.pack("<Q", value))
                return
    raise AssertionError(f"{physical:#x} is not in the dump")


def test_a_cycle_in_the_guests_pid_tree_ends_at_the_time_bound(lab: Lab, tmp_path: Path) -> None:
    hostile = tmp_path / "bundle"
    shutil.copytree(lab.bundle("panic"), hostile)
    dump = hostile / "memory.elf"
    slot, node = _pid_tree_root_slot(dump)
    _poke(dump, slot, node)  # the node's first child is the node itself
    done = cli(
        "analyze", str(hostile), "--debuginfo-dir", str(DEBUGINFO), "--format", "json",
        env={"KVMHA_KERNEL_READ_SECONDS": "10"},
    )  # fmt: skip
    assert done.returncode == INCOMPLETE, done.stderr[-2000:]
    report = json.loads(done.stdout)
    (kernel,) = [a for a in report["analyzers"] if a["name"] == "guest-kernel"]
    assert kernel["status"] == "failed"
    assert kernel["reason"].startswith(
        "OperationTimeout: reading the guest kernel did not end within 10 s"
    ), kernel["reason"]
    assert report["verdict"]["cause"] == "guest-panic"  # from the console
    assert report["verdict"]["culprit"] == "sysrq_handle_crash"


def test_a_bad_bound_in_the_environment_is_named(lab: Lab) -> None:
    done = cli(
        "analyze", str(lab.bundle("panic")), "--debuginfo-dir", str(DEBUGINFO),
        "--format", "json", env={"KVMHA_KERNEL_READ_MIB": "lots"},
    )  # fmt: skip
    report = json.loads(done.stdout)
    (kernel,) = [a for a in report["analyzers"] if a["name"] == "guest-kernel"]
    assert kernel["reason"] == (
        "InputError: KVMHA_KERNEL_READ_MIB='lots' is not a positive number: unset it or give one"
    )
