"""The direct read's pure parts: zero-page test, segments, the ELF core and its notes.

(The whole path is checked against QEMU's own dump of real guests in tests/capture/test_direct.py.)
"""

from __future__ import annotations

import os
from pathlib import Path

from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmha_forensics.capture.direct import nonzero_pages, segments
from kvmha_forensics.capture.elfwrite import CoreWriter, Load
from kvmha_forensics.capture.guestram import RamRange
from kvmha_forensics.capture.hostpages import PAGE, runs
from kvmha_forensics.capture.kdumpwrite import bitmap
from kvmha_forensics.sources.elfcore import read_core
from kvmha_forensics.sources.registers import parse_register_dumps
from kvmha_forensics.x86.cpunotes import cpu_notes
from kvmha_forensics.x86.paging import ElfMemory
from kvmha_forensics.x86.prstatus import vcpu_registers


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, PAGE - 1), st.integers(0, 255)), max_size=40),
       st.integers(1, 16))  # fmt: skip
def test_nonzero_pages_is_any_nonzero_byte(pokes: list[tuple[int, int]], pages: int) -> None:
    buffer = bytearray(pages * PAGE)
    for i, (offset, value) in enumerate(pokes):
        buffer[(i % pages) * PAGE + offset] = value
    want = bytearray(any(buffer[p * PAGE : (p + 1) * PAGE]) for p in range(pages))
    assert nonzero_pages(buffer, pages) == want


@given(st.lists(st.integers(0, 1), max_size=200))
def test_runs_are_the_ones(bits: list[int]) -> None:
    mask = bytearray(bits)
    rebuilt = bytearray(len(mask))
    for a, b in runs(mask):
        assert a < b and all(mask[a:b])
        rebuilt[a:b] = b"\1" * (b - a)
    assert rebuilt == mask


def test_segments_cover_every_page_and_keep_short_holes_in_the_data() -> None:
    ram = RamRange(0x1000_0000, 64 * PAGE, 0x7F00_0000_0000, ("pc.ram",))
    mask = bytearray(64)
    mask[2:4] = b"\1\1"
    mask[10:12] = b"\1\1"  # a 6-page hole: kept in the data segment (< 16 pages)
    mask[40:41] = b"\1"  # a 28-page hole: a zero segment
    loads = segments([ram], [mask])
    assert [(x.paddr - ram.gpa) // PAGE for x in loads] == [0, 2, 12, 40, 41]
    assert [x.in_file for x in loads] == [False, True, False, True, False]
    assert sum(x.size for x in loads) == ram.size


REGISTERS = """CPU#0
RAX=0000000000000001 RBX=ffff8930c297d148 RCX=0000000000000000 RDX=0000000000010505
RSI=0000000000010505 RDI=0000000000000001 RBP=0000000000000001 RSP=ffffd11b00013a70
R8 =0000000000000000 R9 =ffffffffa0ebc5e0 R10=0000000000000003 R11=ffffffffa06d2328
R12=0000000000000000 R13=ffffffffa0eee8a0 R14=00000000ffffffff R15=0000000000000000
RIP=ffffffffc057e230 RFL=00000006 [-----P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
ES =0000 0000000000000000 00000000 00000000
CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]
SS =0018 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]
DS =0000 0000000000000000 00000000 00000000
FS =0000 0000000009c3c3c0 00000000 00000000
GS =0000 ffff8930cf600000 00000000 00000000
LDT=0000 0000000000000000 00000000 00008200 DPL=0 LDT
TR =0040 fffffe0000003000 00004087 00008900 DPL=0 TSS64-avl
GDT=     fffffe0000001000 0000007f
IDT=     fffffe0000000000 00000fff
CR0=80050033 CR2=0000000000559c5a CR3=000000000297e000 CR4=000006b0
EFER=0000000000000d01
"""  # recorded from the lab's panic guest (HMP info registers -a)


def test_core_round_trips_through_the_readers(tmp_path: Path) -> None:
    """Zero segments read as zeros, data where it was written, the vCPU from its notes."""
    vcpus = parse_register_dumps(REGISTERS)
    data = os.urandom(2 * PAGE)
    loads = [Load(0, 2 * PAGE, True), Load(2 * PAGE, 30 * PAGE, False)]
    path = tmp_path / "core.elf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    writer = CoreWriter(fd, loads, 4 * PAGE)
    writer.start(cpu_notes(vcpus))
    writer.buffer()[: len(data)] = data
    writer.submit(len(data))
    chunks = writer.finish()
    os.close(fd)
    raw = path.read_bytes()
    assert chunks.digests == (blake3(raw).hexdigest(),) and len(raw) % PAGE == 0
    with path.open("rb") as f:
        core = read_core(f)
        assert [(s.paddr, s.filesz, s.memsz) for s in core.loads] == [
            (0, 2 * PAGE, 2 * PAGE), (2 * PAGE, 0, 30 * PAGE)]  # fmt: skip
        assert [(n.name, len(n.desc)) for n in core.notes(f)] == [("CORE", 336), ("QEMU", 440)]
    memory = ElfMemory(path)
    assert memory.read(2 * PAGE - 8, 16) == data[-8:] + bytes(8)  # across data and zeros
    assert memory.read(32 * PAGE, 1) is None
    memory.close()
    (cpu,) = vcpu_registers(path)
    assert (cpu.cpu, cpu.rip, cpu.rsp, cpu.rax) == (0, 0xFFFFFFFFC057E230, 0xFFFFD11B00013A70, 1)


def test_zero_pages_are_holes_and_hashed_as_zeros(tmp_path: Path) -> None:
    """Pages the caller marks zero are not written (the file has holes there), yet the file
    reads, and hashes, as if they were."""
    data = bytearray(64 * PAGE)
    data[5 * PAGE] = 1
    path = tmp_path / "core.elf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    writer = CoreWriter(fd, [Load(0, len(data), True)], len(data))
    writer.start(b"")
    writer.buffer()[: len(data)] = data
    writer.submit(len(data), nonzero_pages(data, 64))
    chunks = writer.finish()
    os.close(fd)
    raw = path.read_bytes()
    assert raw.endswith(bytes(data)) and chunks.digests == (blake3(raw).hexdigest(),)
    assert writer.holes == 63 * PAGE
    assert path.stat().st_blocks * 512 < len(raw) - 32 * PAGE  # the zero pages take no space


def test_buffers_filled_before_the_notes_are_known_follow_the_header(tmp_path: Path) -> None:
    """The direct read fills the first buffers while it looks for VMCOREINFO, before the
    header (which holds the notes) is written: they land after it, in order, and hash so."""
    pieces = [os.urandom(2 * PAGE) for _ in range(3)]
    path = tmp_path / "core.elf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    writer = CoreWriter(fd, [Load(0, 6 * PAGE, True)], 2 * PAGE)
    for k, piece in enumerate(pieces[:2]):
        writer.ahead(k)[:] = piece
    notes = b"N" * 5000  # the header's size depends on them
    writer.start(notes)
    for k, piece in enumerate(pieces):
        buffer = writer.buffer()  # the buffers filled ahead come back first, unchanged
        if k == 2:
            buffer[:] = piece
        writer.submit(len(piece))
    chunks = writer.finish()
    os.close(fd)
    raw = path.read_bytes()
    assert raw.endswith(b"".join(pieces)) and notes in raw[: -6 * PAGE]
    assert chunks.digests == (blake3(raw).hexdigest(),)


def test_kdump_bitmap_sets_a_bit_per_ram_page_frame() -> None:
    ranges = [RamRange(0, 13 * PAGE, 0, ("a",)), RamRange(30 * PAGE, 3 * PAGE, 0, ("b",))]
    bits = bitmap(ranges)
    assert len(bits) == PAGE
    set_bits = [pfn for pfn in range(len(bits) * 8) if bits[pfn // 8] >> (pfn % 8) & 1]
    assert set_bits == [*range(13), 30, 31, 32]
