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

    @classmethod
    def from_json(cls, doc: object) -> CodeAtRip:
        """Read back what :meth:`to_json` wrote; ValueError on another shape."""
        if not isinstance(doc, dict):
            raise ValueError(f"not an object: {doc!r:.60}")

        def number(key: str) -> int | None:
            value = doc.get(key)
            return None if value is None else int(_text(value, key), 16)

        def raw(key: str) -> bytes | None:
            value = doc.get(key)
            return None if value is None else bytes.fromhex(_text(value, key))

        cpu, mode = doc.get("cpu"), doc.get("mode")
        if not (cpu is None or type(cpu) is int) or not (mode is None or isinstance(mode, str)):
            raise ValueError(f"bad cpu or mode: {cpu!r:.20}, {mode!r:.20}")
        rip, linear = number("rip"), number("linear")
        if rip is None or linear is None:
            raise ValueError("no rip or linear address")
        return cls(cpu, mode, rip, linear, number("physical"), raw("before"), raw("at_rip"))


def _text(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a hex string: {value!r:.40}")
    return value


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
