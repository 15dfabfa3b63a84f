"""The code bytes around each vCPU's RIP, read from the memory dump through its page tables.

The QEMU log's ``Code=`` line exists only for KVM failures; for every other freeze (a triple
fault, a guest panic) these bytes come from guest RAM as the dump holds it — never from the
live guest, where an address may be a device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..serial import to_json
from ..sources.registers import VcpuRegisters
from ..vocabulary import JSONObject
from .modes import mode_of, rip_linear
from .paging import ElfMemory, read_virtual, translate

BEFORE = 16
AFTER = 16


@dataclass(frozen=True, slots=True)
class CodeAtRip:
    """One vCPU's code bytes: ``before`` ends just before RIP, ``at_rip`` starts at it."""

    cpu: int | None
    mode: str | None
    rip: int
    linear: int
    physical: int | None
    before: bytes | None
    at_rip: bytes | None

    def to_json(self) -> JSONObject:
        """Addresses as ``0x…`` strings, bytes as hex (``None`` when unknown)."""
        return to_json(
            self,
            rip=hex(self.rip),
            linear=hex(self.linear),
            physical=None if self.physical is None else hex(self.physical),
            before=self.before.hex() if self.before is not None else None,
            at_rip=self.at_rip.hex() if self.at_rip is not None else None,
        )


def code_at_rip(dump: Path, vcpus: list[VcpuRegisters]) -> list[CodeAtRip]:
    """For each vCPU whose registers are known, the bytes around CS.base + RIP."""
    found = []
    mem = ElfMemory(dump)
    try:
        for regs in vcpus:
            if regs.rip is None or "CS" not in regs.segments:
                continue
            mode = mode_of(regs)
            linear = rip_linear(regs, mode)
            assert linear is not None  # RIP is known
            control = (regs.cr.get(0, 0), regs.cr.get(3, 0), regs.cr.get(4, 0), regs.efer or 0)
            found.append(
                CodeAtRip(
                    regs.cpu,
                    str(mode) if mode else None,
                    regs.rip,
                    linear,
                    translate(mem, *control, linear),
                    read_virtual(mem, *control, linear - BEFORE, BEFORE),
                    read_virtual(mem, *control, linear, AFTER),
                )
            )
    finally:
        mem.close()
    return found
