"""The per-vCPU notes of QEMU's ELF dump, built from ``info registers``.

QEMU writes, for each vCPU, an ``NT_PRSTATUS`` note (owner ``CORE``) and then, for each vCPU,
its ``QEMUCPUState`` (owner ``QEMU``, type 0), as ``target/i386/arch_dump.c`` does: the
64-bit ``elf_prstatus`` when the vCPU is in long mode (EFER.LMA), else the 32-bit one (the
layouts :mod:`.prstatus` reads); ``pr_pid`` is the vCPU index + 1. ``info registers`` does not
print ``MSR_KERNEL_GS_BASE``: its field in ``QEMUCPUState`` is written as 0. ``orig_rax`` is 0,
as QEMU writes it.
"""

from __future__ import annotations

import struct

from ..sources.registers import Segment, VcpuRegisters
from .prstatus import NT_PRSTATUS, PRSTATUS64

EFER_LMA = 1 << 10
QEMU_NOTE_TYPE = 0
QEMUCPUSTATE_VERSION = 1
_GPR64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
          *(f"r{i}" for i in range(8, 16)))  # fmt: skip
_USER64 = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
           "rdx", "rsi", "rdi")  # fmt: skip
_NO_SEGMENT = Segment(0, 0, 0, 0)
_QEMU_STATE = struct.Struct("<II18Q" + "IIIIQ" * 10 + "5QQ")
PRSTATUS32 = 144


def note(owner: str, kind: int, desc: bytes) -> bytes:
    """One ELF note: header, owner name and description, each padded to 4 bytes."""
    name = owner.encode() + b"\0"
    pad = (-len(name)) % 4, (-len(desc)) % 4
    return (struct.pack("<III", len(name), len(desc), kind) + name + bytes(pad[0])
            + desc + bytes(pad[1]))  # fmt: skip


def _gpr(regs: VcpuRegisters, name: str) -> int:
    """A register by its 64-bit name, or its 32-bit half when only that was printed."""
    value = regs.gpr(name)
    if value is None and name.startswith("r") and not name[1:].isdigit():
        value = regs.gpr("e" + name[1:])
    return value or 0


def _segment(regs: VcpuRegisters, name: str) -> Segment:
    return regs.segments.get(name, _NO_SEGMENT)


def long_mode(regs: VcpuRegisters) -> bool:
    return bool((regs.efer or 0) & EFER_LMA)


def prstatus(regs: VcpuRegisters, index: int) -> bytes:
    """The ``NT_PRSTATUS`` description QEMU writes for vCPU ``index``."""
    sel = {s: _segment(regs, s.upper()).selector for s in ("cs", "ss", "ds", "es", "fs", "gs")}
    rip, flags = regs.rip or 0, regs.rflags or 0
    if long_mode(regs):
        user = [_gpr(regs, r) for r in _USER64]
        user += [0, rip, sel["cs"], flags, _gpr(regs, "rsp"), sel["ss"],
                 _segment(regs, "FS").base, _segment(regs, "GS").base,
                 sel["ds"], sel["es"], sel["fs"], sel["gs"]]  # fmt: skip
        desc = bytearray(PRSTATUS64 + 8)  # then pr_fpvalid and padding
        struct.pack_into("<I", desc, 32, index + 1)
        struct.pack_into("<27Q", desc, 112, *user)
        return bytes(desc)
    m = 0xFFFFFFFF
    words = [_gpr(regs, r) & m for r in ("ebx", "ecx", "edx", "esi", "edi", "ebp", "eax")]
    desc = bytearray(PRSTATUS32)
    struct.pack_into("<I", desc, 24, index + 1)
    struct.pack_into("<7I", desc, 72, *words)
    struct.pack_into("<4I", desc, 100, sel["ds"], sel["es"], sel["fs"], sel["gs"])
    struct.pack_into("<IIIIII", desc, 116, 0, rip & m, sel["cs"],
                     flags & m, _gpr(regs, "esp") & m, sel["ss"])  # fmt: skip
    return bytes(desc)


def qemu_cpu_state(regs: VcpuRegisters) -> bytes:
    """The ``QEMUCPUState`` description (``target/i386/arch_dump.c``, version 1)."""
    values: list[int] = [QEMUCPUSTATE_VERSION, _QEMU_STATE.size]
    values += [_gpr(regs, r) for r in _GPR64]
    values += [regs.rip or 0, regs.rflags or 0]
    for name in ("CS", "DS", "ES", "FS", "GS", "SS", "LDT", "TR"):
        s = _segment(regs, name)
        values += [s.selector, s.limit, s.flags, 0, s.base]
    for table in (regs.gdt, regs.idt):
        values += [0, table.limit if table else 0, 0, 0, table.base if table else 0]
    values += [regs.cr.get(n, 0) for n in range(5)]
    values.append(0)  # kernel_gs_base: not in info registers
    return _QEMU_STATE.pack(*values)


def cpu_notes(vcpus: list[VcpuRegisters]) -> bytes:
    """Every vCPU's ``NT_PRSTATUS`` note, then every vCPU's ``QEMU`` note, as QEMU orders them."""
    ordered = sorted(vcpus, key=lambda r: r.cpu or 0)
    out = [note("CORE", NT_PRSTATUS, prstatus(r, r.cpu or i)) for i, r in enumerate(ordered)]
    out += [note("QEMU", QEMU_NOTE_TYPE, qemu_cpu_state(r)) for r in ordered]
    return b"".join(out)
