"""The vCPU state QEMU writes into an ELF dump beside NT_PRSTATUS: one ``QEMU`` note per vCPU.

``QEMUCPUState`` (target/i386/arch_dump.c): version, size, the 16 general registers, RIP,
RFLAGS, the segments CS DS ES FS GS SS LDT TR GDT IDT (``QEMUCPUSegment``: selector, limit,
flags, pad, base) and CR0-CR4, the same layout whatever the guest's mode. It has no EFER: a
dump read without the monitor (libvirt's dump API) gets EFER.LME|LMA from CS.L, the only
long-mode hint it carries (a compatibility-mode vCPU reads as protected mode).
"""

from __future__ import annotations

import struct
from pathlib import Path

from ..sources.elfcore import ElfError, read_core
from ..sources.registers import DescriptorTable, Segment, VcpuRegisters

GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        *(f"r{i}" for i in range(8, 16)))  # fmt: skip
SEGMENTS = ("CS", "DS", "ES", "FS", "GS", "SS", "LDT", "TR", "GDT", "IDT")
HEAD, SEGMENT = "II18Q", "IIIIQ"
EFER_LONG = 0x500  # LME | LMA
CS_L = 1 << 21


def vcpu_states(dump: Path) -> list[VcpuRegisters]:
    """Each vCPU's registers from an ELF dump's ``QEMU`` notes, in vCPU order; empty when
    the dump has none (or is not ELF)."""
    try:
        with dump.open("rb") as f:
            core = read_core(f)
            notes = [n.desc for n in core.notes(f) if n.name == "QEMU"]
    except (ElfError, OSError):
        return []
    head = struct.calcsize(core.order + HEAD)
    seg = struct.calcsize(core.order + SEGMENT)
    need = head + len(SEGMENTS) * seg + 5 * 8
    found = []
    for cpu, desc in enumerate(notes):
        if len(desc) < need:
            continue
        words = struct.unpack_from(core.order + HEAD, desc)
        regs = words[2:18]
        rip, rflags = words[18], words[19]
        segs = {}
        for i, name in enumerate(SEGMENTS):
            selector, limit, flags, _pad, base = struct.unpack_from(
                core.order + SEGMENT, desc, head + i * seg
            )
            segs[name] = (selector, limit, flags, base)
        cr = struct.unpack_from(core.order + "5Q", desc, head + len(SEGMENTS) * seg)
        long_mode = bool(segs["CS"][2] & CS_L)
        found.append(
            VcpuRegisters(
                cpu=cpu,
                width=64 if long_mode else 32,
                gprs=_gprs(regs, long_mode),
                rip=rip,
                rflags=rflags,
                segments={
                    name: Segment(s[0], s[3], s[1], s[2] & 0x00FFFF00, (s[2] >> 13) & 3)
                    for name, s in segs.items()
                    if name not in ("GDT", "IDT")
                },
                cr={n: cr[n] for n in (0, 2, 3, 4)},
                dr={},
                efer=EFER_LONG if long_mode else 0,
                gdt=DescriptorTable(segs["GDT"][3], segs["GDT"][1]),
                idt=DescriptorTable(segs["IDT"][3], segs["IDT"][1]),
                cpl=(segs["CS"][0] & 3),
            )
        )
    return found


def _gprs(values: tuple[int, ...], long_mode: bool) -> dict[str, int]:
    """As ``info registers`` names them: ``rax``…``r15`` in long mode, else ``eax``…``ebp``."""
    if long_mode:
        return dict(zip(GPRS, values, strict=True))
    pairs = zip(GPRS[:8], values[:8], strict=True)
    return {"e" + name[1:]: value & 0xFFFFFFFF for name, value in pairs}
