"""KVM exit: what KVM could not do, from the failure QEMU printed on stderr.

Reads ``KVM internal error`` blocks (suberror and ``extra data`` words), ``KVM: entry failed,
hardware error`` lines (and other VMMs' KVM_EXIT_FAIL_ENTRY), ``kvm run failed`` lines and
QEMU's traced KVM_EXIT_SHUTDOWN (a triple fault); decodes them with
:mod:`kvmha_forensics.x86.decode` for the CPU vendor of the host that ran the guest. The vendor
comes from the inputs (``--cpu-vendor``, or the capture host's in a bundle); for an entry
failure QEMU's "running a guest on an Intel machine" hint also tells it. Otherwise every
vendor-specific word is given both readings, marked "vendor unknown".

The first failure in the log (by line) is the one that stopped the guest; the finding is
about it, the facts list them all. ``docs/analyze-kvm.md`` documents the facts and the
signature rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from kvmha_forensics.analysis import Confidence, Context, Finding, Outcome, Requirement
from kvmha_forensics.kvm_failure import failing_cpu, failing_dump, log_evidence, primary_failure
from kvmha_forensics.serial import to_json
from kvmha_forensics.sources.qemu_log import EntryFailure, KvmInternalError, RunFailure, Shutdown
from kvmha_forensics.vocabulary import JSON, Cause, Vendor
from kvmha_forensics.x86.modes import mode_of

if TYPE_CHECKING:
    from kvmha_forensics.x86.decode import DecodedEntryFailure, DecodedInternalError

#: What KVM could not do, per suberror (``include/uapi/linux/kvm.h``).
COULD_NOT: dict[int, str] = {
    1: "KVM could not emulate an instruction",
    2: "KVM could not deliver an event: an exception occurred while another was being delivered",
    3: "KVM could not handle a VM exit that happened while delivering an event through the "
    "guest IDT",
    4: "KVM has no handler for the VM exit reason the CPU reported",
}
#: Suberrors whose signature carries the exit reason (it is what tells two of them apart).
SIGNATURE_EXIT_REASON = frozenset({3, 4})
#: Data words that describe an event (IDT-vectoring / EXITINTINFO layout).
EVENT_FIELDS = frozenset({"vectoring_info", "intr_info", "info2"})
ALL_ONES = 0xFFFF_FFFF_FFFF_FFFF
MAX_VCPU_NUMBER = 0xFFFF
VENDOR_NAMES: dict[Vendor, str] = {"intel": "Intel", "amd": "AMD"}


@dataclass(frozen=True, slots=True)
class WordFact:
    """One ``extra data[index]`` word; ``value`` in hex (64-bit words overflow JSON numbers)."""

    index: int
    value: str
    field: str
    title: str
    meaning: str
    decoded: str | None


@dataclass(frozen=True, slots=True)
class InternalErrorFact:
    """A decoded ``KVM internal error`` block (``line`` is 1-based)."""

    line: int
    suberror: int | None
    name: str | None
    meaning: str
    could_not: str
    emulation_failure: bool
    data_style: str | None
    complete: bool
    layout: str | None
    exit_reason: str | None
    exit_reason_text: str | None
    instruction_bytes: str | None
    words: list[WordFact]
    notes: list[str]


@dataclass(frozen=True, slots=True)
class EntryFailureFact:
    """A decoded ``KVM: entry failed, hardware error`` line (``line`` is 1-based);
    ``hardware_error`` is None when the VMM did not print the reason."""

    line: int
    hardware_error: str | None
    vendor: Vendor | None
    name: str | None
    meaning: str
    entry_failure: bool
    basic_reason: int | None
    alternatives: list[str]
    intel_hint: bool


@dataclass(frozen=True, slots=True)
class RunFailureFact:
    """A failed KVM vCPU ioctl: ``what`` failed with ``message`` (``line`` is 1-based)."""

    line: int
    message: str
    what: str


def _could_not(decoded: DecodedInternalError) -> str:
    if decoded.suberror in COULD_NOT:
        return COULD_NOT[decoded.suberror]
    return "KVM stopped the guest with an internal error it did not name"


def _internal_fact(err: KvmInternalError, decoded: DecodedInternalError) -> InternalErrorFact:
    insn = decoded.instruction_bytes
    return InternalErrorFact(
        line=err.line + 1,
        suberror=decoded.suberror,
        name=decoded.name,
        meaning=decoded.meaning,
        could_not=_could_not(decoded),
        emulation_failure=err.emulation_failure,
        data_style=err.data_style,
        complete=err.complete,
        layout=decoded.layout,
        exit_reason=None if decoded.exit_reason is None else f"{decoded.exit_reason:#x}",
        exit_reason_text=decoded.exit_reason_text,
        instruction_bytes=insn.hex(" ") if insn is not None else None,
        words=[
            WordFact(w.index, f"{w.value:#x}", w.field, w.title, w.meaning, w.decoded)
            for w in decoded.words
        ],
        notes=list(decoded.notes),
    )


def _entry_fact(entry: EntryFailure, decoded: DecodedEntryFailure | None) -> EntryFailureFact:
    if decoded is None or entry.hardware_error is None:
        return EntryFailureFact(
            entry.line + 1, None, None, None, "reason not printed", True, None, [], False
        )
    return EntryFailureFact(
        line=entry.line + 1,
        hardware_error=f"{entry.hardware_error:#x}",
        vendor=decoded.vendor,
        name=decoded.name,
        meaning=decoded.meaning,
        entry_failure=decoded.entry_failure,
        basic_reason=decoded.basic_reason,
        alternatives=list(decoded.alternatives),
        intel_hint=entry.intel_hint,
    )


def entry_vendor(entry: EntryFailure, vendor: Vendor | None) -> Vendor | None:
    """The inputs' vendor, else Intel when QEMU printed its VMX-only hint."""
    if vendor is not None:
        return vendor
    return "intel" if entry.intel_hint else None


def _is_gpa(field: str, value: int) -> bool:
    """A GPA word; one only the vendor would name (GPA or vCPU number) counts when its value
    is too large for a vCPU number, so the signature is the same with or without the vendor."""
    return field == "gpa" or (field == "gpa_or_cpu" and value > MAX_VCPU_NUMBER)


def failure_key(decoded: DecodedInternalError) -> list[str]:
    """What tells two internal errors of one suberror apart, in stable words: the exit
    reason, the event(s) being delivered and the region class of the GPA (docs/kvm-errors.md).
    """
    from kvmha_forensics.x86.failure_keys import event_name, region_class

    parts: list[str] = []
    if decoded.suberror in SIGNATURE_EXIT_REASON and decoded.exit_reason is not None:
        parts.append(f"exit {decoded.exit_reason:#x}")
    events = [
        name
        for w in decoded.words
        if w.field in EVENT_FIELDS and (name := event_name(w.value)) is not None
    ]
    if events:
        parts.append("delivering " + events[0])
    if len(events) > 1:
        parts.append("then " + events[1])
    gpa = next((w.value for w in decoded.words if _is_gpa(w.field, w.value)), None)
    if gpa is not None and gpa != ALL_ONES:
        parts.append(f"GPA in {region_class(gpa)}")
    return parts


def _internal_finding(
    ctx: Context,
    err: KvmInternalError,
    decoded: DecodedInternalError,
    cpu: int | None,
    mode: str | None,
) -> Finding:
    suberror = decoded.suberror
    cause: Cause = "kvm-emulation-failure" if suberror == 1 else "kvm-internal-error"
    label = decoded.name or (f"suberror {suberror}" if suberror is not None else "no suberror")
    details = []
    if decoded.instruction_bytes:
        details.append(f"instruction bytes {decoded.instruction_bytes.hex(' ')}")
    if decoded.exit_reason is not None:
        details.append(f"exit reason {decoded.exit_reason:#x}: {decoded.exit_reason_text}")
    event = next((w.decoded for w in decoded.words if w.field == "vectoring_info"), None)
    if event:
        details.append(f"event being delivered: {event}")
    number = f", suberror {suberror}" if suberror is not None and decoded.name else ""
    tail = f"; {'; '.join(details)}" if details else ""
    signature = " ".join([f"{cause}: {label}", *failure_key(decoded)])
    if mode is not None:
        signature += f" in {mode}"
    return Finding(
        cause=cause,
        summary=f"{_could_not(decoded)} ({label}{number}){tail}.",
        signature=signature,
        confidence=Confidence.RECORDED,
        culprit=label,
        crashed_cpu=cpu,
        evidence=(log_evidence(ctx, err.line, f"KVM internal error. Suberror: {suberror}"),),
    )


def _entry_finding(
    ctx: Context,
    entry: EntryFailure,
    decoded: DecodedEntryFailure | None,
    cpu: int | None,
    mode: str | None,
) -> Finding:
    if decoded is None or entry.hardware_error is None:  # the VMM named the exit, not its reason
        return Finding(
            cause="kvm-entry-failure",
            summary="The CPU refused to enter the guest: KVM_EXIT_FAIL_ENTRY, reason not printed.",
            signature="kvm-entry-failure: KVM_EXIT_FAIL_ENTRY" + (f" in {mode}" if mode else ""),
            confidence=Confidence.RECORDED,
            culprit="KVM_EXIT_FAIL_ENTRY",
            crashed_cpu=cpu,
            evidence=(log_evidence(ctx, entry.line, "KVM_EXIT_FAIL_ENTRY"),),
        )
    value = f"{entry.hardware_error:#x}"
    if decoded.vendor is None:
        reading = f"vendor unknown: {'; '.join(decoded.alternatives)}"
    else:
        reading = f"{VENDOR_NAMES[decoded.vendor]}: {decoded.meaning}"
    return Finding(
        cause="kvm-entry-failure",
        summary=f"The CPU refused to enter the guest: VM entry failed with hardware error "
        f"{value} ({reading}).",
        signature=f"kvm-entry-failure: hardware error {value}" + (f" in {mode}" if mode else ""),
        confidence=Confidence.RECORDED,
        culprit=decoded.name or f"hardware error {value}",
        crashed_cpu=cpu,
        evidence=(log_evidence(ctx, entry.line, f"KVM: entry failed, hardware error {value}"),),
    )


#: What a failed vCPU ioctl (:attr:`RunFailure.what`) means; any other is QEMU putting the state.
_RUN_MEANS = {
    "KVM_RUN": "The KVM_RUN ioctl failed",
    "KVM_SET_MSRS": "KVM refused an MSR QEMU set",
    "get registers": "QEMU could not read the vCPU state from KVM",
    "init vcpu": "KVM would not create or set up a vCPU at start-up",
}
#: How QEMU words a failure, where it is not "failed to <what> <message>".
_RUN_SAID = {"KVM_RUN": "kvm run failed", "KVM_SET_MSRS": "KVM_SET_MSRS refused"}


def _run_finding(ctx: Context, run: RunFailure, cpu: int | None, mode: str | None) -> Finding:
    said = f"{_RUN_SAID.get(run.what, f'failed to {run.what}')} {run.message}"
    means = _RUN_MEANS.get(run.what)
    summary = (
        f"{means} ({run.message})"
        if means
        else f"QEMU could not load the vCPU state into KVM ({run.what}: {run.message})"
    )
    return Finding(
        cause="kvm-internal-error",
        summary=f"{summary}; QEMU stopped the guest.",
        signature=f"kvm-internal-error: {said}" + (f" in {mode}" if mode else ""),
        confidence=Confidence.DAMAGED,
        culprit=f"{run.what}: {run.message}",
        crashed_cpu=cpu,
        evidence=(log_evidence(ctx, run.line, said),),
    )


def _shutdown_finding(ctx: Context, down: Shutdown) -> Finding:
    return Finding(
        cause="triple-fault",
        summary=f"KVM exited with KVM_EXIT_SHUTDOWN on vCPU {down.vcpu}: the guest triple-faulted "
        "(QEMU resets it).",
        signature="triple-fault: KVM_EXIT_SHUTDOWN",
        confidence=Confidence.RECORDED,
        culprit="KVM_EXIT_SHUTDOWN",
        crashed_cpu=down.vcpu,
        evidence=(log_evidence(ctx, down.line, f"kvm_run_exit cpu_index {down.vcpu}, reason 8"),),
    )


class KvmExit:
    """Names the KVM failure QEMU printed and decodes its data words for the host's vendor."""

    name: ClassVar[str] = "kvm-exit"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "KVM internal errors, VM-entry failures and KVM_RUN failures"
    requires: ClassVar[frozenset[Requirement]] = frozenset({"qemu-log"})
    refines: ClassVar[frozenset[str]] = frozenset()

    def run(self, ctx: Context) -> Outcome:
        log = ctx.qemu_log
        if log is None:
            return Outcome()
        vendor = ctx.inputs.cpu_vendor
        decoded_errors: list[DecodedInternalError] = []
        decoded_entries: list[DecodedEntryFailure | None] = []
        if log.internal_errors or log.entry_failures:  # the tables load only when needed
            from kvmha_forensics.x86.decode import decode_entry_failure, decode_internal_error

            decoded_errors = [decode_internal_error(e, vendor) for e in log.internal_errors]
            decoded_entries = [
                None
                if e.hardware_error is None
                else decode_entry_failure(e.hardware_error, entry_vendor(e, vendor))
                for e in log.entry_failures
            ]
        primary = primary_failure(log)
        facts: dict[str, JSON] = {
            "vendor": vendor,
            "vendor_source": "inputs" if vendor else None,
            "failure": primary.kind if primary else None,
            "suberror": None,
            "exit_reason": None,
            "could_not": None,
            "internal_errors": [
                to_json(_internal_fact(e, d))
                for e, d in zip(log.internal_errors, decoded_errors, strict=True)
            ],
            "internal_errors_total": log.internal_errors_total,
            "entry_failures": [
                to_json(_entry_fact(e, d))
                for e, d in zip(log.entry_failures, decoded_entries, strict=True)
            ],
            "run_failures": [
                to_json(RunFailureFact(r.line + 1, r.message, r.what)) for r in log.run_failures
            ],
            "shutdowns": [{"line": d.line + 1, "vcpu": d.vcpu} for d in log.shutdowns],
            "qemu_version": log.qemu_version,
            "log_notes": list(log.notes),
        }
        if primary is None:
            return Outcome((), facts, ("no KVM failure in the QEMU log",))
        regs = failing_dump(log, primary)
        cpu = failing_cpu(ctx, regs)
        mode_value = mode_of(regs) if regs is not None else None
        mode = str(mode_value) if mode_value is not None else None
        notes: tuple[str, ...] = ()
        if primary.internal is not None:
            decoded = decoded_errors[0]
            finding = _internal_finding(ctx, primary.internal, decoded, cpu, mode)
            facts["suberror"] = {
                "number": decoded.suberror,
                "name": decoded.name,
                "meaning": decoded.meaning,
            }
            if decoded.exit_reason is not None:
                facts["exit_reason"] = {
                    "value": f"{decoded.exit_reason:#x}",
                    "text": decoded.exit_reason_text,
                }
            facts["could_not"] = _could_not(decoded)
            notes = decoded.notes
        elif primary.entry is not None:
            decoded_entry = decoded_entries[0]
            finding = _entry_finding(ctx, primary.entry, decoded_entry, cpu, mode)
            if vendor is None and decoded_entry is not None and decoded_entry.vendor is not None:
                facts["vendor"] = decoded_entry.vendor
                facts["vendor_source"] = "qemu-intel-hint"
            facts["could_not"] = "the CPU refused to enter the guest (VM entry failed)"
        elif primary.shutdown is not None:
            finding = _shutdown_finding(ctx, primary.shutdown)
            facts["could_not"] = "the guest triple-faulted (KVM_EXIT_SHUTDOWN)"
        else:
            assert primary.run is not None
            finding = _run_finding(ctx, primary.run, cpu, mode)
            facts["could_not"] = "the KVM_RUN ioctl failed"
        if facts["vendor"] is None:
            notes += (
                "vendor unknown: exit reasons are given as both VMX and SVM readings; "
                "pass --cpu-vendor intel|amd to name them",
            )
        return Outcome((finding,), facts, notes)
