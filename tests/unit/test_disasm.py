"""kvmha_forensics.x86.disasm on recorded Code= bytes and hand-picked encodings."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmha_forensics.sources.qemu_log import parse_qemu_log_file
from kvmha_forensics.sources.registers import CodeBytes, parse_register_dumps
from kvmha_forensics.x86.disasm import (
    InstructionClass,
    decode_faulting_instruction,
    disassemble,
)
from kvmha_forensics.x86.modes import CpuMode, mode_of

LOGS = Path(__file__).resolve().parents[2] / "fixtures" / "logs"


def test_recorded_sse_load_from_hpet() -> None:
    dump = parse_qemu_log_file(LOGS / "emulation-failure-kvm.stderr.log").register_dumps[0]
    result = decode_faulting_instruction(dump.code, mode_of(dump), registers=dump)
    insn = result.instruction
    assert insn is not None
    assert insn.text == "pxor xmm0, xmmword ptr [rax]"
    assert insn.address == 0x7CC5
    assert insn.bytes == bytes.fromhex("660fef00")
    assert insn.mode == CpuMode.LONG_64
    assert result.classification == InstructionClass.VECTOR_MEMORY
    assert insn.memory is not None
    assert insn.memory.effective_address == 0xFED00000
    assert insn.memory.linear_address == 0xFED00000
    assert insn.memory.size == 16 and insn.memory.access == "read"
    assert insn.memory.to_json() == {
        "segment": "ds", "base": "rax", "index": None, "scale": 1, "disp": 0, "size": 16,
        "access": "read", "effective_address": "0xfed00000", "linear_address": "0xfed00000",
    }  # fmt: skip


def test_recorded_fetch_from_mmio() -> None:
    dump = parse_qemu_log_file(LOGS / "mmio-fetch-kvm.stderr.log").register_dumps[0]
    plain = decode_faulting_instruction(dump.code, None, registers=dump)
    assert plain.instruction is None and plain.classification == InstructionClass.UNDECODABLE
    told = decode_faulting_instruction(dump.code, None, registers=dump, fetch_from_non_ram=True)
    assert told.classification == InstructionClass.FETCH_FROM_NON_RAM
    assert "??" in told.reason


def test_realign_at_rip_marker() -> None:
    # Bytes before the marker would decode differently (mov ax, 0x10 ...): start at <..>.
    dump = parse_qemu_log_file(LOGS / "synthetic-two-vcpus.log").register_dumps[1]
    result = decode_faulting_instruction(dump.code, mode_of(dump), registers=dump)
    assert result.instruction is not None
    assert result.instruction.text == "hlt"
    assert result.instruction.address == 0xFD09A
    assert result.classification == InstructionClass.PRIVILEGED


def test_unknown_byte_stops_decoding() -> None:
    code = CodeBytes((0x66, 0x0F, None, 0x00), 0)
    result = decode_faulting_instruction(code, CpuMode.LONG_64)
    assert result.instruction is None and result.classification == InstructionClass.UNDECODABLE


@pytest.mark.parametrize(
    ("hexbytes", "text"),
    [
        ("660fefc1", "pxor xmm0, xmm1"),
        ("660fef00", "pxor xmm0, xmmword ptr [bx + si]"),
        ("67660fef00", "pxor xmm0, xmmword ptr [eax]"),
        ("660f2800", "movapd xmm0, xmmword ptr [bx + si]"),
        ("660fd600", "movq qword ptr [bx + si], xmm0"),
        ("0fefc1", "pxor mm0, mm1"),  # no 66: MMX is right
        ("660fb6c0", "movzx eax, al"),  # 66 as operand size: kept
    ],
)
def test_capstone_16bit_sse_quirk(hexbytes: str, text: str) -> None:
    insn = disassemble(bytes.fromhex(hexbytes), CpuMode.REAL, 0x7C00)
    assert insn is not None
    assert insn.text == text
    assert insn.bytes == bytes.fromhex(hexbytes)


def test_entry_failure_code_in_real_mode() -> None:
    log = parse_qemu_log_file(LOGS / "synthetic-entry-failure-vmx.log")
    dump = log.register_dumps[0]
    result = decode_faulting_instruction(dump.code, mode_of(dump), registers=dump)
    assert result.instruction is not None
    assert result.instruction.text == "pxor xmm0, xmm1"
    assert result.instruction.mode == CpuMode.REAL


@pytest.mark.parametrize(
    ("hexbytes", "mode", "cls"),
    [
        ("d900", CpuMode.LONG_64, InstructionClass.FPU_MEMORY),
        ("c5f9ef00", CpuMode.LONG_64, InstructionClass.VECTOR_MEMORY),
        ("f36c", CpuMode.PROTECTED_32, InstructionClass.STRING_IO),
        ("ec", CpuMode.PROTECTED_32, InstructionClass.PRIVILEGED),
        ("0f30", CpuMode.LONG_64, InstructionClass.PRIVILEGED),
        ("0f22d8", CpuMode.LONG_64, InstructionClass.PRIVILEGED),
        ("0f0115", CpuMode.REAL, InstructionClass.PRIVILEGED),
        ("8b4508", CpuMode.PROTECTED_32, InstructionClass.MEMORY),
        ("89c8", CpuMode.PROTECTED_32, InstructionClass.OTHER),
    ],
)
def test_classification(hexbytes: str, mode: CpuMode, cls: InstructionClass) -> None:
    insn = disassemble(bytes.fromhex(hexbytes), mode)
    assert insn is not None
    assert insn.classification == cls


def test_effective_addresses() -> None:
    [regs] = parse_register_dumps((LOGS / "emulation-failure-kvm.info-registers.txt").read_text())
    rip_rel = disassemble(bytes.fromhex("660fef0500100000"), CpuMode.LONG_64, 0x7CC5, regs)
    assert rip_rel is not None and rip_rel.memory is not None
    assert rip_rel.memory.effective_address == 0x7CC5 + 8 + 0x1000
    sib = disassemble(bytes.fromhex("8b448f10"), CpuMode.LONG_64, 0, regs)  # [rdi + rcx*4 + 0x10]
    assert sib is not None and sib.memory is not None
    assert sib.memory.effective_address == 0x5000 + 0xC0000080 * 4 + 0x10
    [real] = parse_register_dumps((LOGS / "prelaunch-kvm.info-registers.txt").read_text())
    wrap = disassemble(bytes.fromhex("8b46ff"), CpuMode.REAL, 0, real)  # [bp - 1], SS
    assert wrap is not None and wrap.memory is not None
    assert wrap.memory.segment == "ss"
    assert wrap.memory.effective_address == 0xFFFF  # 16-bit wrap-around
    no_regs = disassemble(bytes.fromhex("8b00"), CpuMode.PROTECTED_32)
    assert no_regs is not None and no_regs.memory is not None
    assert no_regs.memory.effective_address is None
    assert no_regs.memory.to_json()["linear_address"] is None


def test_a_lock_prefix_that_raises_ud_is_named() -> None:
    """capstone rejects ``f0 c3``; the CPU raises #UD there, so the instruction is named."""
    insn = disassemble(bytes.fromhex("f0c3e200f0"), CpuMode.PROTECTED_32, 7)
    assert insn is not None
    assert (insn.text, insn.bytes, insn.address) == ("lock ret", b"\xf0\xc3", 7)
    assert any("#UD" in note for note in insn.notes)
    assert disassemble(bytes.fromhex("f0ff"), CpuMode.PROTECTED_32) is None
