"""Instruction: the instruction KVM failed on, in the vCPU's mode, and the region it touched.

The vCPU is the one whose register dump QEMU printed with the failure (see
:func:`kvmha_forensics.kvm_failure.failing_dump`); its mode comes from CR0, EFER and CS. The
bytes are the ones KVM's emulator fetched (suberror 1 on Linux >= 5.14) or else the ``Code=``
line's bytes from the ``<..>`` marker on; capstone decodes them (:mod:`kvmha_forensics.x86.disasm`).

The target is the memory operand's address, or RIP when the vCPU fetched from non-RAM; its
region comes from the bundle's ``mtree.txt`` (``info mtree -f``). Without one the region is
unknown, except for a few fixed x86 PC device addresses, which are named "probably". With
paging on the address is linear; with no page-table walk it is looked up as if
identity-mapped, and the facts say so.

It reports a finding only for emulation failures (suberror 1), where the instruction is the
culprit; for other failures the decoded instruction is a fact. It refines ``kvm-exit``: when
both explain an emulation failure, its more specific summary is the verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from kvmha_forensics.analysis import Confidence, Context, Evidence, Finding, Outcome, Requirement
from kvmha_forensics.kvm_failure import failing_cpu, failing_dump, log_evidence, primary_failure
from kvmha_forensics.serial import to_json
from kvmha_forensics.sources.registers import CodeBytes, VcpuRegisters
from kvmha_forensics.vocabulary import JSON
from kvmha_forensics.x86 import disasm
from kvmha_forensics.x86.disasm import (
    FaultingInstruction,
    InstructionClass,
    decode_faulting_instruction,
)
from kvmha_forensics.x86.kvm_internal import EMULATION_FLAG_INSTRUCTION_BYTES, Suberror
from kvmha_forensics.x86.modes import CR0_PG, CpuMode, mode_of, rip_linear

if TYPE_CHECKING:
    from kvmha_forensics.sources.mtree import MemoryMap
    from kvmha_forensics.x86.decode import DecodedInternalError


@dataclass(frozen=True, slots=True)
class WellKnown:
    """A fixed device address range of the x86 PC machine (used only without an mtree)."""

    start: int
    end: int
    name: str


#: QEMU ``pc``/``q35`` machines put these devices here unless the guest moves them.
WELL_KNOWN: tuple[WellKnown, ...] = (
    WellKnown(0xFED00000, 0xFED003FF, "hpet"),
    WellKnown(0xFEC00000, 0xFEC00FFF, "ioapic"),
    WellKnown(0xFEE00000, 0xFEEFFFFF, "lapic"),  # and the MSI window
    WellKnown(0x000A0000, 0x000BFFFF, "vga"),  # legacy VGA window
)

_FAMILY_GROUPS = (
    ("avx", "AVX"),
    ("fma", "AVX"),
    ("sse", "SSE"),
    ("ssse", "SSE"),
    ("mmx", "MMX"),
    ("3dnow", "MMX"),
)
_CLASS_WORDS = {
    InstructionClass.FPU_MEMORY: "x87",
    InstructionClass.STRING_IO: "string I/O",
    InstructionClass.PRIVILEGED: "privileged",
    InstructionClass.MEMORY: "memory access",
    InstructionClass.OTHER: "no memory operand",
}
_ACCESS_WORDS = {"read": "load", "write": "store", "read-write": "read-modify-write"}
_REG_SHAPE = re.compile(r"^(xmm|ymm|zmm|mm|st|k|cr|dr|bnd)\(?\d+\)?$")
_GPR_NAMES = {
    64: ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip"),
    32: ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip"),
    16: ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip", "cs", "ds", "es", "fs", "gs", "ss"),
    8: ("al", "bl", "cl", "dl", "ah", "bh", "ch", "dh", "sil", "dil", "bpl", "spl"),
}
_GPR_BITS = {name: bits for bits, names in _GPR_NAMES.items() for name in names}
_NUMBERED_GPR = re.compile(r"^r(\d+)([dwb]?)$")


@dataclass(frozen=True, slots=True)
class RegionFact:
    """Where an address falls. ``source``: ``mtree`` (certain), ``well-known`` (probably) or
    ``None`` (unknown); ``kind`` is the mtree kind, ``unassigned``, or ``None`` when unknown."""

    address: str
    source: Literal["mtree", "well-known"] | None
    kind: str | None
    name: str | None
    mmio: bool | None
    translation: str
    range: str | None = None


@dataclass(frozen=True, slots=True)
class InstructionFacts:
    """What this analyzer adds to the report (``docs/analyze-kvm.md``)."""

    vcpu: int | None
    cpu_mode: str | None
    rip: str | None
    bytes_source: Literal["kvm-emulation-data", "code-line"] | None
    decode: str
    text: str | None
    mnemonic: str | None
    bytes: str | None
    operands: str | None
    classification: str
    family: str | None
    access: str | None
    memory: dict[str, JSON] | None  # x86.disasm.MemoryOperand.to_json
    fetch_from_non_ram: bool
    fetch_evidence: str | None
    target: RegionFact | None
    rip_region: RegionFact | None
    notes: list[str]


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value:#x}"


def _translation(regs: VcpuRegisters | None) -> str:
    cr0 = regs.cr.get(0) if regs else None
    if cr0 is None:
        return "unknown (no CR0): looked up as a physical address"
    if cr0 & CR0_PG:
        return "linear (paging on, no page-table walk): looked up as if identity-mapped"
    return "physical (paging off)"


def locate(address: int, mmap: MemoryMap | None, translation: str) -> RegionFact:
    """The region of ``address``: from the mtree, else a well-known PC device, else unknown."""
    if mmap is not None and mmap.view() is not None:
        region = mmap.region_at(address)
        if region is None:
            return RegionFact(f"{address:#x}", "mtree", "unassigned", None, True, translation)
        span = f"{region.start:#x}-{region.end:#x}"
        return RegionFact(
            f"{address:#x}",
            "mtree",
            region.kind,
            region.name,
            not region.is_memory,
            translation,
            span,
        )
    for known in WELL_KNOWN:
        if known.start <= address <= known.end:
            span = f"{known.start:#x}-{known.end:#x}"
            return RegionFact(
                f"{address:#x}", "well-known", "i/o", known.name, True, translation, span
            )
    return RegionFact(f"{address:#x}", None, None, None, None, translation)


def where(region: RegionFact) -> str:
    """The region in words, e.g. ``MMIO 0xfed00000 (hpet)``; "probably" when guessed."""
    if region.source == "mtree":
        if region.kind == "unassigned":
            return f"unassigned memory at {region.address}"
        if region.mmio:
            return f"MMIO {region.address} ({region.name})"
        return f"{region.kind} {region.address} ({region.name})"
    if region.source == "well-known":
        return (
            f"{region.address} (probably {region.name} MMIO: a fixed PC address; "
            "no memory map to confirm)"
        )
    return f"{region.address} (region unknown: no memory map)"


def region_token(region: RegionFact | None) -> str:
    """The region as it appears in a signature: no address."""
    if region is None or region.kind is None:
        return "unknown region"
    if region.kind == "unassigned":
        return "unassigned memory"
    kind = "MMIO" if region.mmio else region.kind
    return f"{kind} {region.name}"


def _family(insn: disasm.Instruction) -> str:
    if insn.classification == InstructionClass.VECTOR_MEMORY:
        for prefix, family in _FAMILY_GROUPS:
            if any(g.startswith(prefix) for g in insn.groups):
                return family
        return "vector"
    return _CLASS_WORDS.get(insn.classification, str(insn.classification))


def _operand_shape(operand: str, insn: disasm.Instruction) -> str:
    operand = operand.strip()
    if "[" in operand:
        return f"m{insn.memory.size * 8}" if insn.memory is not None else "m"
    if m := _REG_SHAPE.match(operand):
        return m.group(1)
    if operand in _GPR_BITS:
        return f"r{_GPR_BITS[operand]}"
    if m := _NUMBERED_GPR.match(operand):
        return f"r{ {'d': 32, 'w': 16, 'b': 8}.get(m.group(2), 64) }"
    return "imm"


def operand_shapes(insn: disasm.Instruction) -> str:
    """Operands without register numbers or values: ``xmm, m128``."""
    if not insn.op_str:
        return ""
    return ", ".join(_operand_shape(op, insn) for op in insn.op_str.split(","))


def _fetch_evidence(
    decoded: DecodedInternalError | None,
    regs: VcpuRegisters | None,
    rip_region: RegionFact | None,
) -> str | None:
    """Why RIP is taken to be in non-RAM, or ``None`` when it is not."""
    if rip_region is not None and rip_region.source == "mtree":
        if rip_region.mmio:
            return f"RIP is in {region_token(rip_region)} (mtree)"
        return None
    if decoded is not None and decoded.suberror == Suberror.EMULATION and decoded.words:
        no_bytes = not decoded.words[0].value & EMULATION_FLAG_INSTRUCTION_BYTES
        code = regs.code if regs else None
        if no_bytes and code is not None and code.rip_index is not None and not code.rip_readable:
            return "KVM fetched no instruction bytes and QEMU could not read the byte at RIP (??)"
    if rip_region is not None and rip_region.source == "well-known":
        return f"RIP is in the fixed PC {rip_region.name} window {rip_region.range}"
    return None


def _decode(
    kvm_bytes: bytes | None, regs: VcpuRegisters | None, mode: CpuMode | None, fetch: bool
) -> tuple[FaultingInstruction, Literal["kvm-emulation-data", "code-line"] | None]:
    """The emulator's bytes first (exactly what KVM failed on), else the ``Code=`` line."""
    attempts: list[tuple[CodeBytes | None, Literal["kvm-emulation-data", "code-line"] | None]]
    attempts = []
    if kvm_bytes:
        attempts.append((CodeBytes(tuple(kvm_bytes), 0), "kvm-emulation-data"))
    if regs is not None and regs.code is not None:
        attempts.append((regs.code, "code-line"))
    first: tuple[FaultingInstruction, Literal["kvm-emulation-data", "code-line"] | None] | None
    first = None
    for code, source in attempts or [(None, None)]:
        result = decode_faulting_instruction(code, mode, registers=regs, fetch_from_non_ram=fetch)
        if result.instruction is not None:
            return result, source
        if mode is None and code is not None:
            same = _mode_independent(code, regs, fetch)
            if same is not None:
                return same, source
        first = first or (result, source)
    assert first is not None
    return first


#: Modes tried when the dump does not tell the vCPU's mode (no CS/CR0 printed).
_ANY_MODE = (CpuMode.LONG_64, CpuMode.PROTECTED_32, CpuMode.PROTECTED_16)


def _mode_independent(
    code: CodeBytes, regs: VcpuRegisters | None, fetch: bool
) -> FaultingInstruction | None:
    """The decoding of ``code`` when it reads the same in 64-, 32- and 16-bit code (e.g.
    ``0f 30`` is ``wrmsr`` in all three), else ``None``: the mode stays unknown."""
    results = [
        decode_faulting_instruction(code, m, registers=regs, fetch_from_non_ram=fetch)
        for m in _ANY_MODE
    ]
    texts = {r.instruction.text if r.instruction else None for r in results}
    return results[0] if len(texts) == 1 and None not in texts else None


def _finding(
    ctx: Context, facts: InstructionFacts, line: int, mmap_region: Evidence | None
) -> Finding | None:
    target = facts.target
    evidence = [log_evidence(ctx, line, "emulation failure")]
    if mmap_region is not None:
        evidence.append(mmap_region)
    in_mode = f" in {facts.cpu_mode}" if facts.cpu_mode else ""
    if facts.fetch_from_non_ram and target is not None:
        return Finding(
            cause="kvm-emulation-failure",
            summary=f"KVM could not emulate an instruction: the vCPU fetched instructions "
            f"from {where(target)}.",
            signature=f"kvm-emulation-failure: instruction fetch from {region_token(target)}"
            + in_mode,
            confidence=Confidence.DECODED,
            culprit=_device(target),
            crashed_cpu=facts.vcpu,
            evidence=tuple(evidence),
        )
    if facts.text is None:
        return _unknown_instruction(facts, evidence, in_mode)
    kind = facts.family or facts.classification
    if facts.access and facts.memory is not None:
        kind += f" {facts.access}"
    summary = f"KVM could not emulate `{facts.text}` ({kind})"
    signature = f"kvm-emulation-failure: {facts.mnemonic} {facts.operands} ({facts.family})"
    if target is not None:
        summary += f" against {where(target)}"
        signature += f" on {region_token(target)}"
    else:
        summary += f" at RIP {facts.rip} in {facts.cpu_mode} mode"
    signature += in_mode
    return Finding(
        cause="kvm-emulation-failure",
        summary=summary + ".",
        signature=re.sub(r"\s+", " ", signature),
        confidence=Confidence.DECODED,
        culprit=facts.text,
        crashed_cpu=facts.vcpu,
        evidence=tuple(evidence),
    )


def _unknown_instruction(
    facts: InstructionFacts, evidence: list[Evidence], in_mode: str
) -> Finding | None:
    """No instruction to name (no ``Code=`` bytes, or unreadable ones): what is left to tell
    failures apart is the class of RIP's region and the CPU mode."""
    region = facts.rip_region
    if region is None:
        return None
    from kvmha_forensics.x86.failure_keys import region_class

    linear = region.translation.startswith("linear")
    where_rip = region_class(int(region.address, 16), linear=linear)
    return Finding(
        cause="kvm-emulation-failure",
        summary=f"KVM could not emulate an instruction at RIP {facts.rip} ({where_rip})"
        f"{in_mode} mode; the instruction is not known ({facts.decode}).",
        signature=f"kvm-emulation-failure: unknown instruction at RIP in {where_rip}{in_mode}",
        confidence=Confidence.DECODED,
        culprit=None,
        crashed_cpu=facts.vcpu,
        evidence=tuple(evidence),
    )


def _device(region: RegionFact) -> str:
    if region.kind == "unassigned":
        return "unassigned memory"
    if region.name is None:
        return f"non-RAM at {region.address}"
    return region.name if region.source == "mtree" else f"{region.name} (probably)"


def _mtree_evidence(region: RegionFact | None) -> Evidence | None:
    if region is None or region.source != "mtree":
        return None
    what = f"{region.kind} {region.name}" if region.name else "unassigned"
    return Evidence("mtree.txt", region.range or region.address, what)


class Instruction:
    """Decodes the faulting instruction at RIP, classifies it and names the region it hit."""

    name: ClassVar[str] = "instruction"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "the faulting instruction, its CPU mode and target region"
    requires: ClassVar[frozenset[Requirement]] = frozenset({"qemu-log"})
    refines: ClassVar[frozenset[str]] = frozenset({"kvm-exit"})

    def run(self, ctx: Context) -> Outcome:
        log = ctx.qemu_log
        primary = primary_failure(log) if log is not None else None
        if log is None or primary is None:
            return Outcome((), {}, ("no KVM failure in the QEMU log",))
        regs = failing_dump(log, primary)
        mode = mode_of(regs) if regs is not None else None
        from kvmha_forensics.sources.mtree import parse_mtree  # only for a KVM failure
        from kvmha_forensics.x86.decode import decode_internal_error

        decoded = None
        if primary.internal is not None:
            decoded = decode_internal_error(primary.internal, ctx.inputs.cpu_vendor)
        mtree_text = ctx.text("mtree") if ctx.has("mtree") else None
        mmap = parse_mtree(mtree_text) if mtree_text else None
        translation = _translation(regs)
        rip = rip_linear(regs, mode) if regs is not None else None
        rip_region = locate(rip, mmap, translation) if rip is not None else None
        fetch_why = _fetch_evidence(decoded, regs, rip_region)
        kvm_bytes = decoded.instruction_bytes if decoded is not None else None
        result, source = _decode(kvm_bytes, regs, mode, fetch_why is not None)
        insn = result.instruction
        target: RegionFact | None = rip_region if fetch_why else None
        if target is None and insn is not None and insn.memory is not None:
            address = insn.memory.linear_address
            if address is None:
                address = insn.memory.effective_address
            if address is not None:
                target = locate(address, mmap, translation)
        notes = list(insn.notes) if insn is not None else []
        if mmap is None:
            notes.append("no mtree.txt: regions are unknown except fixed PC device addresses")
        facts = InstructionFacts(
            vcpu=failing_cpu(ctx, regs),
            cpu_mode=str(mode) if mode is not None else None,
            rip=_hex(regs.rip) if regs is not None else None,
            bytes_source=source if insn is not None else None,
            decode=result.reason,
            text=insn.text if insn else None,
            mnemonic=insn.mnemonic if insn else None,
            bytes=insn.bytes.hex(" ") if insn else None,
            operands=operand_shapes(insn) if insn else None,
            classification=str(result.classification),
            family=_family(insn) if insn else None,
            access=_ACCESS_WORDS.get(insn.memory.access) if insn and insn.memory else None,
            memory=insn.memory.to_json() if insn and insn.memory else None,
            fetch_from_non_ram=fetch_why is not None,
            fetch_evidence=fetch_why,
            target=target,
            rip_region=rip_region,
            notes=notes,
        )
        findings: tuple[Finding, ...] = ()
        if decoded is not None and decoded.suberror == Suberror.EMULATION:
            found = _finding(ctx, facts, primary.line, _mtree_evidence(target))
            findings = (found,) if found is not None else ()
        as_json: dict[str, JSON] = to_json(facts)
        return Outcome(findings, as_json, tuple(notes))
