"""The vCPU registers QEMU writes into an ELF dump: one NT_PRSTATUS note per vCPU.

QEMU fills the kernel's ``elf_prstatus`` layout (target/i386/arch_dump.c): ``pr_pid`` is the
vCPU index + 1, and ``pr_reg`` is ``user_regs_struct``: 27 64-bit words when the guest was in
long mode, else 17 32-bit words, whatever the ELF class of the file (a 64-bit QEMU writes ELF64
with 32-bit notes for a guest outside long mode). A bare vmcore has no ``info registers``:
these notes are how its vCPUs are told apart.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..input_files import opened
from ..sources.elfcore import ElfError, read_core

NT_PRSTATUS = 1
PRSTATUS64 = 112 + 27 * 8  # pr_reg's offset and size in the 64-bit layout
# Per layout, by its word ("Q" 64-bit, "I" 32-bit): byte offsets of pr_pid and pr_reg, the
# number of words in pr_reg, and the indexes there of rip, rsp and rax (eip, esp, eax).
_LAYOUT = {
    "Q": (32, 112, 27, (16, 19, 10)),
    "I": (24, 72, 17, (12, 15, 6)),
}


@dataclass(frozen=True, slots=True)
class NoteRegisters:
    """One vCPU's index and the registers that tell it apart from a QEMU log's dump."""

    cpu: int
    rip: int
    rsp: int
    rax: int


def vcpu_registers(dump: Path) -> list[NoteRegisters]:
    """Each vCPU's RIP, RSP and RAX from an ELF dump's notes; empty when it has none."""
    try:
        with opened(dump) as f:
            core = read_core(f)
            notes = [n for n in core.notes(f) if n.name == "CORE" and n.type == NT_PRSTATUS]
    except (ElfError, OSError, InputError):
        return []
    found = []
    for note in notes:
        word = "Q" if len(note.desc) >= PRSTATUS64 else "I"
        pid_at, regs_at, count, (rip, rsp, rax) = _LAYOUT[word]
        if len(note.desc) < regs_at + count * struct.calcsize(word):
            continue
        (pid,) = struct.unpack_from(core.order + "I", note.desc, pid_at)
        regs = struct.unpack_from(f"{core.order}{count}{word}", note.desc, regs_at)
        found.append(NoteRegisters(pid - 1, regs[rip], regs[rsp], regs[rax]))
    return found
