"""The direct read of guest RAM against QEMU's own dump of the same frozen guest.

Every guest-physical page equal, the notes QEMU writes reproduced, the same verdicts; guests
with every kind of RAM QEMU maps (anonymous, memfd shared, a private file DIMM, two NUMA
nodes, RAM above 4 GiB, ROM); and the guest never changed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import drgn
import pytest
from elftools.elf.elffile import ELFFile

from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.capture.direct import write_core
from kvmha_forensics.capture.guestram import RamRange, ram_ranges
from kvmha_forensics.capture.steps import CaptureOptions, capture
from kvmha_forensics.errors import OperationTimeout
from kvmha_forensics.lab import assets, scenarios
from kvmha_forensics.lab.launcher import LabGuest
from kvmha_forensics.sources.elfcore import Note, read_core
from kvmha_forensics.sources.registers import parse_register_dumps
from kvmha_forensics.transport.qmp import Endpoint
from kvmha_forensics.x86.paging import ElfMemory
from tests.capture.hostmem import PAGE, hugepages, page_out, swap_file, swapped_pages
from tests.capture.physical import covered, differing_pages
from tests.capture.tcp_guest import triple_fault_on_tcp
from tests.conftest import Lab, runstate

pytestmark = pytest.mark.lab
CLI = [sys.executable, "-m", "kvmha_forensics"]
FROZEN = [s.name for s in scenarios.SCENARIOS if s.runstate != "running"]  # memory stays put
QEMU_TR_FLAGS = 8 + 18 * 8 + 7 * 24 + 8  # QEMUCPUState: tr.flags
QEMU_KERNEL_GS_BASE = 432


def notes(dump: Path) -> list[Note]:
    with dump.open("rb") as f:
        return list(read_core(f).notes(f))


def comparable(note: Note) -> tuple[str, int, bytes]:
    """A note without what ``info registers`` cannot tell: in QEMU's CPU state, the low byte
    of each segment's flags (QEMU prints ``flags & 0xffff00``) and MSR_KERNEL_GS_BASE."""
    desc = bytearray(note.desc)
    if note.name == "QEMU":
        for segment in range(10):
            desc[8 + 18 * 8 + segment * 24 + 8] = 0
        desc[QEMU_KERNEL_GS_BASE:] = bytes(len(desc) - QEMU_KERNEL_GS_BASE)
    return note.name, note.type, bytes(desc)


def step_detail(bundle: Path, name: str) -> str:
    step = next(s for s in Bundle.open(bundle).manifest.steps if s.name == name)
    return step.detail or ""


def dump_file(bundle: Path) -> Path:
    found = Bundle.open(bundle).file("memory-elf")
    assert found is not None
    return found


def assert_same_memory(direct: Path, qemu: Path) -> None:
    """Same guest-physical pages and the same notes as QEMU's dump."""
    ours, theirs = dump_file(direct), dump_file(qemu)
    assert covered(ours) == covered(theirs)
    assert differing_pages(ours, theirs) == []
    assert [comparable(n) for n in notes(ours)] == [comparable(n) for n in notes(theirs)]


def capture_now(guest: LabGuest, out: Path, source: str = "auto") -> Path:
    opts = CaptureOptions(Endpoint(path=guest.qmp), out, memory_source=source)  # type: ignore[arg-type]
    result = asyncio.run(capture(opts))
    assert result.manifest.status == "complete", result.manifest.reasons
    return result.bundle


@pytest.mark.parametrize("name", FROZEN)
def test_direct_read_equals_qemus_dump_page_for_page(lab: Lab, name: str) -> None:
    direct, qemu = lab.bundle(name), lab.bundle(name, source="dump")
    assert step_detail(direct, "memory-source").startswith("direct: ")
    assert step_detail(qemu, "memory-source") == "dump-guest-memory: --memory-source dump"
    assert_same_memory(direct, qemu)
    assert runstate(lab.frozen(name).qmp_spare) == scenarios.get(name).runstate


@pytest.mark.parametrize("name", FROZEN)
def test_analysis_of_both_captures_reaches_the_same_verdict(lab: Lab, name: str) -> None:
    verdicts = []
    for bundle in (lab.bundle(name), lab.bundle(name, source="dump")):
        done = subprocess.run([*CLI, "analyze", str(bundle), "--format", "json"],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        verdicts.append(json.loads(done.stdout)["verdict"])
    assert verdicts[0] == verdicts[1]


def test_every_kind_of_guest_ram(lab: Lab, tmp_path: Path) -> None:
    """Two NUMA nodes (anonymous; memfd shared), a private file-backed DIMM, RAM above 4 GiB,
    the BIOS ROM, 96 MiB the guest filled: read fresh, after QEMU's dump mapped every page,
    and equal to that dump each time."""
    dimm = tmp_path / "dimm0"
    args = ("-m", "512M,slots=2,maxmem=1G", "-machine", "max-ram-below-4g=384M",
            "-object", "memory-backend-ram,id=m0,size=256M",
            "-object", "memory-backend-memfd,id=m1,size=256M,share=on",
            "-numa", "node,nodeid=0,cpus=0,memdev=m0", "-numa", "node,nodeid=1,cpus=1,memdev=m1",
            "-object", f"memory-backend-file,id=d0,size=128M,mem-path={dimm},share=off",
            "-device", "pc-dimm,id=dimm0,memdev=d0")  # fmt: skip
    guest = lab.up("panic", "-mixed", memory_mb=512, vcpus=2, qemu_args=args, fill_mb=96)
    maps = Path(f"/proc/{guest.pid}/maps").read_text().splitlines()
    assert any(" rw-s " in m and "/memfd:" in m for m in maps)  # the backends really are those
    assert any(" rw-p " in m and m.endswith(str(dimm)) for m in maps)
    fresh = capture_now(guest, tmp_path / "b")
    qemu = capture_now(guest, tmp_path / "b", "dump")
    again = capture_now(guest, tmp_path / "b")
    spans = covered(dump_file(qemu))
    assert any(start >= 1 << 32 for start, _ in spans) and len(spans) == 3  # RAM, ROM, DIMM
    for direct in (fresh, again):
        assert_same_memory(direct, qemu)
    examined = [_mib(step_detail(b, "memory"), "examined") for b in (fresh, again)]
    written = [_mib(step_detail(b, "memory"), "non-zero") for b in (fresh, again)]
    # QEMU's dump faulted the whole memfd and DIMM into existence (zeros): examined, not written
    assert written[0] == written[1] >= 96 and examined[1] <= examined[0] + 256 + 128, examined
    assert _kernel_release(dump_file(fresh)) == assets.kernel().release
    assert runstate(guest.qmp_spare) == "guest-panicked"
    lab.down(guest)


def test_after_qemus_dump_the_huge_zero_page_is_not_read(lab: Lab, tmp_path: Path) -> None:
    """QEMU's dump maps every page of anonymous guest RAM (most to the huge zero page): the
    direct read after it examines what it did before, not the whole guest."""
    guest = lab.up("panic", "-afterdump", memory_mb=512)
    fresh = capture_now(guest, tmp_path / "b")
    capture_now(guest, tmp_path / "b", "dump")
    present = Path(f"/proc/{guest.pid}/smaps_rollup").read_text()
    again = capture_now(guest, tmp_path / "b")
    examined = [_mib(step_detail(b, "memory"), "examined") for b in (fresh, again)]
    assert examined[1] <= examined[0] + 16 < 256, (examined, present)
    assert_same_memory(again, fresh)
    lab.down(guest)


def layout(guest: LabGuest) -> tuple[list[RamRange], str]:
    """The guest's RAM ranges and its ``info registers -a``, asked on the spare socket."""

    async def ask() -> tuple[list[RamRange], str]:
        async with Endpoint(path=guest.qmp_spare).connect(10) as g:
            text = await g.hmp("info mtree -f")
            return await ram_ranges(text, g.hmp), await g.hmp("info registers -a")

    return asyncio.run(ask())


def test_swapped_out_pages_are_read_from_swap(lab: Lab, tmp_path: Path) -> None:
    """Guest pages the kernel pushed out to swap (a swap file, ``MADV_PAGEOUT`` on QEMU's guest
    RAM) read back as the guest wrote them, equal to QEMU's dump made after."""
    guest = lab.up("panic", "-swap", memory_mb=512, fill_mb=128)
    ranges, _ = layout(guest)
    with swap_file(512 << 20):
        page_out(guest.pid, ranges)
        swapped = swapped_pages(guest.pid, ranges)
        assert swapped * PAGE >= 128 << 20, swapped  # the guest's data really is in swap
        direct = capture_now(guest, tmp_path / "b")
        assert swapped_pages(guest.pid, ranges) <= swapped  # read, never written back out
        qemu = capture_now(guest, tmp_path / "b", "dump")
        assert_same_memory(direct, qemu)
        assert _mib(step_detail(direct, "memory"), "non-zero") >= 128
        assert runstate(guest.qmp_spare) == "guest-panicked"
        lab.down(guest)
    shutil.rmtree(tmp_path / "b")  # two dumps of a 512 MB guest: the disk is shared


@pytest.mark.parametrize("share", ["on", "off"])
def test_hugetlb_guest_ram(lab: Lab, tmp_path: Path, share: str) -> None:
    """Guest RAM on 2 MiB hugetlbfs pages (``memory-backend-memfd,hugetlb=on``), shared or
    private: read from the hugetlbfs file (and private copies from QEMU), equal to QEMU's dump."""
    with hugepages(160):
        args = ("-object", f"memory-backend-memfd,id=m0,size=256M,hugetlb=on,hugetlbsize=2M,"
                f"share={share}", "-machine", "memory-backend=m0")  # fmt: skip
        guest = lab.up("panic", f"-hugetlb-{share}", memory_mb=256, qemu_args=args, fill_mb=64)
        maps = Path(f"/proc/{guest.pid}/smaps").read_text()
        assert "KernelPageSize:     2048 kB" in maps  # the guest's RAM really is on hugepages
        direct = capture_now(guest, tmp_path / "b")
        assert step_detail(direct, "memory-source").startswith("direct: ")
        qemu = capture_now(guest, tmp_path / "b", "dump")
        assert_same_memory(direct, qemu)
        assert _mib(step_detail(direct, "memory"), "non-zero") >= 64
        assert runstate(guest.qmp_spare) == "guest-panicked"
        lab.down(guest)
    shutil.rmtree(tmp_path / "b")


def _mib(detail: str, word: str) -> int:
    """The MiB figure before ``word`` in the memory step's detail."""
    before = detail.split(f" MiB {word}")[0].split()[-1]
    return int(before)


def _kernel_release(dump: Path) -> str:
    prog = drgn.Program()
    prog.set_core_dump(str(dump))
    prog.load_debug_info([str(assets.kernel().vmlinux)])
    return prog["init_uts_ns"].name.release.string_().decode()


def test_direct_core_opens_in_pyelftools_with_zero_segments(lab: Lab) -> None:
    dump = dump_file(lab.bundle("panic"))
    with dump.open("rb") as f:
        elf = ELFFile(f)
        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        assert any(s["p_filesz"] == 0 < s["p_memsz"] for s in loads)  # zero runs, not in the file
        end = max(s["p_offset"] + s["p_filesz"] for s in loads)
        assert end == dump.stat().st_size
        kinds = [(n["n_name"], n["n_type"]) for s in elf.iter_segments()
                 if s["p_type"] == "PT_NOTE" for n in s.iter_notes()]  # fmt: skip
    assert kinds == [("CORE", "NT_PRSTATUS"), ("QEMU", 0), ("VMCOREINFO", 0)]


def test_direct_core_carries_vmcoreinfo_even_without_the_device(lab: Lab, tmp_path: Path) -> None:
    """With no vmcoreinfo device QEMU's dump has no note (capture recovers the text into
    vmcoreinfo.txt); the direct read finds the kernel's note in guest memory and drgn opens
    the core alone."""
    guest = lab.up("panic", "-novmcoreinfo-direct", vmcoreinfo=False)
    bundle = capture_now(guest, tmp_path)
    assert step_detail(bundle, "vmcoreinfo") == "in the dump's VMCOREINFO note"
    assert _kernel_release(dump_file(bundle)) == assets.kernel().release
    lab.down(guest)


def test_live_direct_capture_pauses_and_resumes(lab: Lab, tmp_path: Path) -> None:
    guest = lab.frozen("running")
    opts = CaptureOptions(Endpoint(path=guest.qmp), tmp_path, live=True)
    result = asyncio.run(capture(opts))
    assert result.manifest.status == "complete", result.manifest.reasons
    assert "paused for it: --live" in step_detail(result.bundle, "memory-source")
    events = [e["event"] for e in Bundle.open(result.bundle).read_json("events")]  # type: ignore[union-attr]
    assert events == ["STOP", "RESUME"]
    assert runstate(guest.qmp_spare) == "running"


def test_nothing_stays_attached_to_qemu(lab: Lab) -> None:
    guest = lab.frozen("panic")
    lab.bundle("panic")
    status = Path(f"/proc/{guest.pid}/status").read_text()
    assert "TracerPid:\t0" in status
    ours = [
        Path(f"/proc/self/fd/{fd}") for fd in range(1024) if Path(f"/proc/self/fd/{fd}").exists()
    ]
    held = {str(p.readlink()) for p in ours if p.is_symlink()}
    assert not any(f"/proc/{guest.pid}/" in h for h in held)


def test_forcing_direct_over_tcp_says_why_it_cannot(tmp_path: Path) -> None:
    """Over QMP on TCP QEMU's process is unknown: a forced direct read leaves the memory out
    and says why (the dump path over TCP is tested in test_capture.py)."""
    with triple_fault_on_tcp(tmp_path) as (port, _sockets):
        done = subprocess.run(
            [*CLI, "capture", "--qmp", f"127.0.0.1:{port}", "--out", str(tmp_path / "b"),
             "--memory-source", "direct", "--json", "--live"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["status"] == "incomplete"
        assert any("QMP over TCP" in r for r in result["reasons"]), result["reasons"]
        assert Bundle.open(Path(result["bundle"])).file("memory-elf") is None


def test_prstatus_layout_matches_qemus_for_a_32_bit_guest(lab: Lab) -> None:
    """The triple-fault guest is in protected mode: 32-bit NT_PRSTATUS notes, as QEMU's."""
    ours = notes(dump_file(lab.bundle("triple-fault")))
    prstatus = [n for n in ours if n.name == "CORE"]
    assert [len(n.desc) for n in prstatus] == [144]
    (pid,) = struct.unpack_from("<I", prstatus[0].desc, 24)
    assert pid == 1


def test_a_deadline_ends_the_direct_read(lab: Lab, tmp_path: Path) -> None:
    """The deadline is asked at every chunk (a stopping watcher shortens it)."""
    guest = lab.frozen("panic")
    ranges, registers = layout(guest)
    asked: list[int] = []

    def expired() -> bool:
        asked.append(1)
        return len(asked) > 2

    fd = os.open(tmp_path / "core.elf", os.O_WRONLY | os.O_CREAT, 0o600)
    with pytest.raises(OperationTimeout):
        write_core(guest.pid, ranges, parse_register_dumps(registers), fd, lambda d, t: None,
                   expired)  # fmt: skip
    os.close(fd)
    assert len(asked) == 3
    assert runstate(guest.qmp_spare) == "guest-panicked"


@pytest.mark.parametrize("name", ["panic", "smp-panic"])
def test_crash_reads_both_cores_alike(lab: Lab, name: str, tmp_path: Path) -> None:
    """Debian's crash (installed by ./run setup): its log and bt on the direct core are what
    they are on QEMU's dump of the same guest."""
    commands = tmp_path / "commands"
    commands.write_text("log\nbt -a\nquit\n")
    shown = []
    for bundle in (lab.bundle(name), lab.bundle(name, source="dump")):
        argv = ["crash", "-s", str(assets.kernel().vmlinux), str(dump_file(bundle)),
                "-i", str(commands)]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        shown.append(done.stdout)
    assert "Kernel panic - not syncing" in shown[0] and "PID: " in shown[0]
    assert shown[0] == shown[1]


def test_direct_kdump_holds_every_page_of_the_direct_core(lab: Lab) -> None:
    """kdump-zlib from the direct read (plain diskdump, not QEMU's flattened stream): drgn
    reads every guest-physical page as the direct ELF core has it (itself QEMU's, above),
    and the bundle verifies."""
    bundle = lab.bundle("panic", "kdump-zlib")
    assert step_detail(bundle, "memory-source").startswith("direct: ")
    assert "compressed into a" in step_detail(bundle, "memory")
    opened = Bundle.open(bundle)
    assert opened.verify() == []
    kdump, elf = opened.file("memory-kdump"), dump_file(lab.bundle("panic"))
    assert kdump is not None and kdump.read_bytes()[:8] == b"KDUMP   "
    program = drgn.Program()
    program.set_core_dump(str(kdump))
    memory = ElfMemory(elf)
    try:
        for start, end in covered(elf):
            for at in range(start, end, 8 << 20):
                size = min(8 << 20, end - at)
                assert program.read(at, size, True) == memory.read(at, size), hex(at)
    finally:
        memory.close()
    assert opened.file("vmcoreinfo") is not None


def test_crash_reads_the_direct_kdump_as_qemus(lab: Lab, tmp_path: Path) -> None:
    """crash's log and bt on the direct kdump file are what they are on QEMU's kdump-zlib of
    the same guest (rearranged by capture)."""
    commands = tmp_path / "commands"
    commands.write_text("log\nbt -a\nquit\n")
    shown = []
    for source in ("auto", "dump"):
        dump = Bundle.open(lab.bundle("panic", "kdump-zlib", source)).file("memory-kdump")
        assert dump is not None
        argv = ["crash", "-s", str(assets.kernel().vmlinux), str(dump), "-i", str(commands)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        shown.append(done.stdout)
    assert "Kernel panic - not syncing" in shown[0] and "PID: " in shown[0]
    assert shown[0] == shown[1]
