"""Decode the faulting instruction with capstone, in the vCPU's mode, and classify it.

Decoding starts exactly at the byte QEMU marked ``<..>`` on the ``Code=`` line (the byte
at RIP) and stops at the first unknown ``??`` byte. The classification says why KVM may
have failed on it: an SSE/AVX/MMX or x87 memory operand (the emulator does not do those on
MMIO), a fetch from non-RAM (the caller knows RIP is MMIO/unassigned), a privileged
instruction, string I/O, or a plain memory access.

capstone 5 decodes ``66 0f ..`` SSE instructions in 16-bit mode as if ``66`` were only an
operand-size prefix (``66 0f ef c1`` -> ``pxor mm0, mm1``). Such instructions are decoded
again in 32-bit mode with the address-size prefix ``67`` toggled, which keeps 16-bit
addressing and gives the SSE form (``pxor xmm0, xmm1``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cache, lru_cache
from types import ModuleType
from typing import Any

from kvmha_forensics.serial import to_json
from kvmha_forensics.sources.registers import CodeBytes, VcpuRegisters
from kvmha_forensics.vocabulary import JSONObject
from kvmha_forensics.x86.modes import CpuMode, address_bits, capstone_mode, mode_of

__all__ = [
    "FaultingInstruction",
    "Instruction",
    "InstructionClass",
    "MemoryOperand",
    "decode_faulting_instruction",
    "disassemble",
]

_LEGACY_PREFIXES = frozenset({0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65})
_VECTOR_GROUPS = re.compile(r"^(sse|ssse|avx|mmx|3dnow|fma|f16c|aes|sha|pclmul|xop|vaes|vpclmul)")
_VECTOR_REGS = re.compile(r"\b([xyz]mm\d+|mm\d)\b")
_CONTROL_REGS = re.compile(r"\b(cr\d+|dr\d+)\b")
_STRING_IO = frozenset({"insb", "insw", "insd", "outsb", "outsw", "outsd"})
_PRIVILEGED = frozenset(
    {
        "in", "out", "hlt", "lgdt", "lidt", "lldt", "ltr", "lmsw", "clts", "invd", "wbinvd",
        "wbnoinvd", "invlpg", "invlpga", "invpcid", "rdmsr", "wrmsr", "rdpmc", "cli", "sti",
        "swapgs", "sysret", "sysretq", "sysexit", "xsetbv", "monitor", "mwait", "vmcall",
        "vmmcall", "vmlaunch", "vmresume", "vmxon", "vmxoff", "smsw", "sgdt", "sidt", "iret",
        "iretd", "iretq", "rsm", "wrpkru", "xrstors", "xsaves",
    }
)  # fmt: skip
_STACK_BASES = frozenset({"bp", "ebp", "rbp", "sp", "esp", "rsp"})


class InstructionClass(StrEnum):
    """Why an instruction may defeat KVM's emulator (first matching class wins)."""

    FETCH_FROM_NON_RAM = "fetch-from-non-ram"
    STRING_IO = "string-io"
    VECTOR_MEMORY = "vector-memory"
    FPU_MEMORY = "fpu-memory"
    PRIVILEGED = "privileged"
    MEMORY = "memory"
    OTHER = "other"
    UNDECODABLE = "undecodable"


@cache
def _capstone() -> ModuleType:
    """capstone, imported on first use: most analyses never decode an instruction."""
    import capstone  # type: ignore[import-untyped, unused-ignore]
    import capstone.x86  # type: ignore[import-untyped, unused-ignore]

    module: ModuleType = capstone
    return module


@dataclass(frozen=True, slots=True)
class MemoryOperand:
    """A memory operand: its parts, size in bytes, and addresses when registers allow.

    ``effective_address`` is the offset (base + index*scale + disp, or next-RIP + disp
    when RIP-relative) wrapped to the address size; ``linear_address`` adds the segment
    base from the dump (in 64-bit mode only FS/GS have a base).
    """

    segment: str
    base: str | None
    index: str | None
    scale: int
    disp: int
    size: int
    access: str
    effective_address: int | None
    linear_address: int | None

    def to_json(self) -> JSONObject:
        """As a report holds it: the addresses in hex (``None`` when unknown)."""
        ea, linear = self.effective_address, self.linear_address
        return to_json(
            self,
            effective_address=None if ea is None else f"{ea:#x}",
            linear_address=None if linear is None else f"{linear:#x}",
        )


@dataclass(frozen=True, slots=True)
class Instruction:
    """One decoded instruction. ``address`` is the RIP/EIP (offset in CS) it starts at."""

    address: int
    bytes: bytes
    mnemonic: str
    op_str: str
    text: str
    mode: CpuMode
    classification: InstructionClass
    memory: MemoryOperand | None
    groups: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FaultingInstruction:
    """The instruction at RIP (if decodable), its class, and why it could not be decoded."""

    instruction: Instruction | None
    classification: InstructionClass
    reason: str


@lru_cache(maxsize=4)
def _engine(cs_mode: int) -> Any:
    capstone = _capstone()
    engine = capstone.Cs(capstone.CS_ARCH_X86, cs_mode)
    engine.detail = True
    return engine


def _first(cs_mode: int, code: bytes, address: int) -> Any:
    for insn in _engine(cs_mode).disasm(code, address, 1):
        return insn
    return None


def _prefix_len(code: bytes) -> int:
    n = 0
    while n < len(code) and n < 14 and code[n] in _LEGACY_PREFIXES:
        n += 1
    return n


def _sse_in_16bit(code: bytes) -> bytes | None:
    """For ``66``-prefixed 0F-map code, the bytes to decode in 32-bit mode instead."""
    n = _prefix_len(code)
    if 0x66 not in code[:n] or n >= len(code) or code[n] != 0x0F:
        return None
    prefixes = code[:n]
    if 0x67 in prefixes:
        return prefixes.replace(b"\x67", b"", 1) + code[n:]
    return b"\x67" + code


def _is_vector(insn: Any) -> bool:
    groups = [insn.group_name(g) or "" for g in insn.groups]
    return any(_VECTOR_GROUPS.match(g) for g in groups) or bool(_VECTOR_REGS.search(insn.op_str))


def disassemble(
    code: bytes,
    mode: CpuMode,
    address: int = 0,
    registers: VcpuRegisters | None = None,
) -> Instruction | None:
    """Decode the first instruction of ``code`` at ``address`` in ``mode``; ``None`` if invalid."""
    insn = _first(capstone_mode(mode), code, address)
    size = insn.size if insn is not None else 0
    notes: tuple[str, ...] = ()
    if address_bits(mode) == 16:
        alt_code = _sse_in_16bit(code)
        alt = _first(_capstone().CS_MODE_32, alt_code, address) if alt_code else None
        if alt_code is not None and alt is not None and _is_vector(alt):
            redone = (alt.mnemonic, alt.op_str)
            if insn is None or (insn.mnemonic, insn.op_str) != redone:
                size = alt.size + len(code) - len(alt_code)
                insn = alt
                notes = ("re-decoded: capstone 16-bit mode misreads the SSE 66 prefix",)
    if insn is None and code[:1] == b"\xf0":
        # capstone rejects a LOCK prefix on an instruction that cannot take it; the CPU
        # raises #UD there, which is itself the finding: name the instruction after the prefix
        insn = _first(capstone_mode(mode), code[1:], address + 1)
        if insn is None:
            return None
        built = _build(insn, code[: insn.size + 1], mode, registers, notes)
        return replace(
            built,
            address=address,
            mnemonic="lock " + built.mnemonic,
            text="lock " + built.text,
            notes=(*notes, "invalid: a LOCK prefix on this instruction raises #UD"),
        )
    if insn is None:
        return None
    return _build(insn, code[:size], mode, registers, notes)


def _build(
    insn: Any,
    raw: bytes,
    mode: CpuMode,
    registers: VcpuRegisters | None,
    notes: tuple[str, ...],
) -> Instruction:
    memory = _memory_operand(insn, raw, mode, registers)
    groups = tuple(insn.group_name(g) or "" for g in insn.groups)
    text = f"{insn.mnemonic} {insn.op_str}".strip()
    return Instruction(
        address=insn.address,
        bytes=raw,
        mnemonic=insn.mnemonic,
        op_str=insn.op_str,
        text=text,
        mode=mode,
        classification=_classify(insn, memory, groups),
        memory=memory,
        groups=groups,
        notes=notes,
    )


def _classify(insn: Any, memory: MemoryOperand | None, groups: tuple[str, ...]) -> InstructionClass:
    mnemonic = insn.mnemonic.split()[-1]  # drop rep/lock
    if mnemonic in _STRING_IO:
        return InstructionClass.STRING_IO
    if memory is not None and _is_vector(insn):
        return InstructionClass.VECTOR_MEMORY
    if memory is not None and ("fpu" in groups or mnemonic.startswith("f")):
        return InstructionClass.FPU_MEMORY
    if (
        "privilege" in groups
        or mnemonic in _PRIVILEGED
        or (mnemonic == "mov" and _CONTROL_REGS.search(insn.op_str))
    ):
        return InstructionClass.PRIVILEGED
    if memory is not None:
        return InstructionClass.MEMORY
    return InstructionClass.OTHER


def _access(op: Any) -> str:
    capstone = _capstone()
    read = bool(op.access & capstone.CS_AC_READ)
    write = bool(op.access & capstone.CS_AC_WRITE)
    return {(True, True): "read-write", (True, False): "read", (False, True): "write"}.get(
        (read, write), "none"
    )


def _memory_operand(
    insn: Any, raw: bytes, mode: CpuMode, registers: VcpuRegisters | None
) -> MemoryOperand | None:
    op = next((o for o in insn.operands if o.type == _capstone().x86.X86_OP_MEM), None)
    if op is None or insn.mnemonic in ("lea", "nop"):
        return None
    mem = op.mem
    base = insn.reg_name(mem.base) if mem.base else None
    index = insn.reg_name(mem.index) if mem.index else None
    segment = insn.reg_name(mem.segment) if mem.segment else None
    if segment is None:
        segment = "ss" if base in _STACK_BASES else "ds"
    ea = _effective_address(insn, raw, mode, base, index, mem.scale, mem.disp, registers)
    linear = None
    if ea is not None and registers is not None:
        seg = registers.segments.get(segment.upper())
        if mode == CpuMode.LONG_64 and segment not in ("fs", "gs"):
            linear = ea
        elif seg is not None:
            linear = (seg.base + ea) & ((1 << (64 if mode == CpuMode.LONG_64 else 32)) - 1)
    return MemoryOperand(
        segment=segment,
        base=base,
        index=index,
        scale=mem.scale,
        disp=mem.disp,
        size=op.size,
        access=_access(op),
        effective_address=ea,
        linear_address=linear,
    )


def _address_size(raw: bytes, mode: CpuMode) -> int:
    bits = address_bits(mode)
    if 0x67 in raw[: _prefix_len(raw)]:
        return 32 if bits in (16, 64) else 16
    return bits


def _effective_address(
    insn: Any,
    raw: bytes,
    mode: CpuMode,
    base: str | None,
    index: str | None,
    scale: int,
    disp: int,
    registers: VcpuRegisters | None,
) -> int | None:
    bits = _address_size(raw, mode)
    if base in ("rip", "eip"):
        value = int(insn.address) + len(raw) + disp
    else:
        if (base or index) and registers is None:
            return None
        value = disp
        for name, factor in ((base, 1), (index, scale)):
            if name is None:
                continue
            reg = registers.gpr(name) if registers is not None else None
            if reg is None:
                return None
            value += reg * factor
    return value & ((1 << bits) - 1)


def decode_faulting_instruction(
    code: CodeBytes | None,
    mode: CpuMode | None,
    *,
    address: int | None = None,
    registers: VcpuRegisters | None = None,
    fetch_from_non_ram: bool = False,
) -> FaultingInstruction:
    """Decode the instruction at the ``<..>`` byte of a ``Code=`` line and classify it.

    ``address`` defaults to the dump's RIP. ``fetch_from_non_ram`` is the caller's finding
    that RIP itself points to MMIO or unassigned space; it decides the class even when the
    bytes (usually ``??``) cannot be decoded.
    """
    if mode is None and registers is not None:
        mode = mode_of(registers)
    if address is None and registers is not None:
        address = registers.rip
    insn: Instruction | None = None
    reason = "decoded"
    if mode is None:
        reason = "CPU mode unknown (no CR0/CS in the dump)"
    elif code is None or code.rip_index is None:
        reason = "no Code= bytes with a <..> marker at RIP"
    elif not code.rip_readable:
        reason = "the byte at RIP was not readable (??)"
    else:
        insn = disassemble(code.from_rip(), mode, address or 0, registers)
        if insn is None:
            reason = "capstone could not decode the bytes at RIP (invalid or cut off at ??)"
    if fetch_from_non_ram:
        return FaultingInstruction(insn, InstructionClass.FETCH_FROM_NON_RAM, reason)
    if insn is None:
        return FaultingInstruction(None, InstructionClass.UNDECODABLE, reason)
    return FaultingInstruction(insn, insn.classification, reason)
