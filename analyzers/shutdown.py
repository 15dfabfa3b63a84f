"""Shutdown: a guest-initiated reset kept by ``-action reboot=shutdown,shutdown=pause``.

KVM reports a triple fault as KVM_EXIT_SHUTDOWN and QEMU turns it into a guest reset; with
the HA actions the guest stays in runstate ``shutdown`` with its CPU state intact. An IDT that
cannot deliver an exception (limit 0 or too small for the mode) makes a triple fault certain.
"""

from __future__ import annotations

from typing import ClassVar

from kvmha_forensics.analysis import Confidence, Context, Evidence, Finding, Outcome, Requirement
from kvmha_forensics.x86.disasm import Instruction, disassemble
from kvmha_forensics.x86.modes import CpuMode, mode_of

GATE_SIZE = {"real": 4, "long-64": 16}
# Instructions whose only job is to raise an exception, and the exception.
EXCEPTION_OF = {"ud2": "#UD", "ud1": "#UD", "ud0": "#UD", "int3": "#BP", "into": "#OF"}


def instruction_at_rip(ctx: Context, mode: CpuMode | None) -> Instruction | None:
    """vCPU 0's instruction at RIP, from the bytes capture read through the page tables."""
    first = ctx.code[0] if ctx.code else None
    if mode is None or first is None or first.at_rip is None:
        return None
    return disassemble(first.at_rip, mode, first.rip)


class Shutdown:
    """Triple faults and other guest-initiated resets, with the CPU state that explains them."""

    name: ClassVar[str] = "shutdown"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "triple faults and guest-initiated resets"
    requires: ClassVar[frozenset[Requirement]] = frozenset({"freeze", "registers"})
    refines: ClassVar[frozenset[str]] = frozenset()

    def run(self, ctx: Context) -> Outcome:
        runstate = ctx.freeze.runstate if ctx.freeze else None
        if runstate != "shutdown":
            return Outcome((), {"runstate": runstate})
        regs = ctx.registers[0] if ctx.registers else None
        mode = mode_of(regs) if regs else None
        idt = regs.idt if regs else None
        mode_name = str(mode) if mode is not None else "unknown"
        gate = GATE_SIZE.get(mode_name, 8)
        broken_idt = idt is not None and idt.limit < gate * 32 - 1
        insn = instruction_at_rip(ctx, mode)
        facts = {
            "runstate": "shutdown",
            "cpu_mode": mode_name,
            "rip": regs.rip if regs else None,
            "idt": {"base": idt.base, "limit": idt.limit} if idt else None,
            "instruction_at_rip": insn.text if insn else None,
        }
        raised = EXCEPTION_OF.get(insn.mnemonic) if insn else None
        what = f"the {raised} raised by `{insn.text}`" if insn and raised else "an exception"
        if broken_idt and idt is not None:
            summary = (
                f"The guest triple-faulted: {what} in {mode_name} mode could not be "
                f"delivered through an IDT of limit {idt.limit:#x}."
            )
            confidence = Confidence.CONFIRMED
            culprit = (
                f"{insn.text} with IDT limit {idt.limit:#x}"
                if insn
                else f"IDT limit {idt.limit:#x}"
            )
        else:
            summary = "The guest reset itself (triple fault or reboot request); kept in shutdown."
            confidence, culprit = Confidence.GUESS, None
        kind = "empty IDT" if broken_idt else "guest reset"
        rip = f"RIP={regs.rip:#x}" if regs and regs.rip is not None else "registers"
        evidence = [Evidence("registers.txt", "vCPU 0", rip)]
        if insn:
            evidence.append(Evidence("code.json", "vCPU 0, bytes at RIP", insn.text))
        finding = Finding(
            cause="triple-fault",
            summary=summary,
            signature=f"triple-fault: {kind} in {mode_name}",
            confidence=confidence,
            culprit=culprit,
            crashed_cpu=regs.cpu if regs else None,
            evidence=tuple(evidence),
        )
        return Outcome((finding,), facts)
