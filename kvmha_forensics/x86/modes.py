"""CPU operating mode from control registers and the CS descriptor, and capstone's mode.

Intel SDM vol. 3A 2.2 (modes of operation) and 5.2.1 (code-segment descriptor L and D
bits): long mode is active when EFER.LMA is set; then CS.L selects 64-bit mode, otherwise
compatibility mode with CS.D choosing 32/16-bit. Without LMA, CR0.PE off is real mode,
RFLAGS.VM is virtual-8086 mode, and CS.D chooses 32/16-bit protected mode.
"""

from __future__ import annotations

from enum import StrEnum

from kvmha_forensics.sources.registers import Segment, VcpuRegisters

__all__ = ["CpuMode", "address_bits", "capstone_mode", "cpu_mode", "mode_of"]

CR0_PE = 1 << 0
CR0_PG = 1 << 31
EFER_LME = 1 << 8
EFER_LMA = 1 << 10
RFLAGS_VM = 1 << 17
DESC_L = 1 << 21
DESC_B = 1 << 22


class CpuMode(StrEnum):
    """x86 operating mode of a vCPU at the moment of the dump."""

    REAL = "real"
    VM86 = "vm86"
    PROTECTED_16 = "protected-16"
    PROTECTED_32 = "protected-32"
    COMPAT_16 = "compat-16"
    COMPAT_32 = "compat-32"
    LONG_64 = "long-64"


_BITS = {
    CpuMode.REAL: 16,
    CpuMode.VM86: 16,
    CpuMode.PROTECTED_16: 16,
    CpuMode.COMPAT_16: 16,
    CpuMode.PROTECTED_32: 32,
    CpuMode.COMPAT_32: 32,
    CpuMode.LONG_64: 64,
}


def cpu_mode(cr0: int, efer: int, cs_flags: int, rflags: int = 0) -> CpuMode:
    """The mode selected by CR0, EFER, CS's descriptor flags (QEMU layout) and RFLAGS."""
    if efer & EFER_LMA:
        if cs_flags & DESC_L:
            return CpuMode.LONG_64
        return CpuMode.COMPAT_32 if cs_flags & DESC_B else CpuMode.COMPAT_16
    if not cr0 & CR0_PE:
        return CpuMode.REAL
    if rflags & RFLAGS_VM:
        return CpuMode.VM86
    return CpuMode.PROTECTED_32 if cs_flags & DESC_B else CpuMode.PROTECTED_16


DESC_P = 1 << 15


def _present(cs: Segment) -> bool:
    return bool(cs.selector or cs.base or cs.limit or cs.flags & DESC_P)


def _pe_from_descriptions(regs: VcpuRegisters, cs: Segment) -> int | None:
    """CR0.PE as QEMU's segment lines show it (target/i386/cpu-dump.c prints ``DPL=`` after
    a present segment only in protected mode), or ``None`` when they cannot tell."""
    if cs.dpl is not None:
        return CR0_PE
    if cs.flags & DESC_P and all(seg.dpl is None for seg in regs.segments.values()):
        return 0
    return None


def mode_of(regs: VcpuRegisters) -> CpuMode | None:
    """The mode of a parsed dump, or ``None`` when CR0 or CS is missing. A dump cut before
    ``CR0=`` is read from its segment lines: QEMU describes a present segment (``DPL=n
    KIND [flags]``) exactly when CR0.PE is set, so a described CS means protected mode and a
    present CS with no segment described at all (a reset or SMM entry state) real mode.

    A dump without ``EFER=`` (very old QEMU, or cut off) counts as LMA clear unless it was
    printed with 64-bit register names, which QEMU does only when CS.L is set in long mode.
    With CR0.PE set and CS all zero (selector, base, limit, flags: not even present) the dump
    is no state a vCPU can run in: QEMU could not read the registers (an SEV-ES/SNP guest's
    are encrypted) and printed zeros, so the mode is unknown.
    """
    cs = regs.segments.get("CS")
    cr0 = regs.cr.get(0)
    if cs is not None and cr0 is not None and cr0 & CR0_PE and not _present(cs):
        return None
    if cs is not None and cr0 is None and regs.width != 64:
        cr0 = _pe_from_descriptions(regs, cs)
    if cs is None or cr0 is None:
        return CpuMode.LONG_64 if regs.width == 64 else None
    efer = regs.efer
    if efer is None:
        efer = EFER_LMA | EFER_LME if regs.width == 64 else 0
    return cpu_mode(cr0, efer, cs.flags, regs.rflags or 0)


def address_bits(mode: CpuMode) -> int:
    """Default operand/address size of the mode: 16, 32 or 64."""
    return _BITS[mode]


def capstone_mode(mode: CpuMode) -> int:
    """capstone's ``CS_MODE_16/32/64`` for decoding code in this mode (imported on use)."""
    import capstone  # type: ignore[import-untyped, unused-ignore]

    modes = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}
    return int(modes[_BITS[mode]])


def rip_linear(regs: VcpuRegisters, mode: CpuMode | None) -> int | None:
    """The linear address of the instruction at RIP: CS.base + RIP wrapped to 32 bits, or RIP
    alone in 64-bit mode (where CS has no base)."""
    if regs.rip is None:
        return None
    if mode == CpuMode.LONG_64:
        return regs.rip
    cs = regs.segments.get("CS")
    return ((cs.base if cs else 0) + regs.rip) & 0xFFFF_FFFF
