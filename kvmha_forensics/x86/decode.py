"""Decode a KVM internal error's data words and a VM-entry failure code into meanings.

The vendor (Intel VMX or AMD SVM) decides how exit reasons read; when it is not known
the decoders say "vendor unknown" and give both readings rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvmha_forensics.sources.qemu_log import KvmInternalError
from kvmha_forensics.vocabulary import Vendor
from kvmha_forensics.x86 import svm, vmx
from kvmha_forensics.x86.kvm_internal import (
    EMULATION_EXIT_INFO,
    EMULATION_FLAG_INSTRUCTION_BYTES,
    FIELDS,
    INVALID_GPA,
    LAYOUTS,
    SUBERRORS,
    DataLayout,
    Suberror,
)

__all__ = [
    "DecodedEntryFailure",
    "DecodedInternalError",
    "DecodedWord",
    "decode_entry_failure",
    "decode_internal_error",
    "describe_exit_reason",
]

_EVENT_TYPES = {
    0: "external interrupt",
    2: "NMI",
    3: "hardware exception",
    4: "software interrupt",
    5: "privileged software exception",
    6: "software exception",
    7: "other event",
}


@dataclass(frozen=True, slots=True)
class DecodedWord:
    """One ``extra data[index]`` word: which field it is and what its value means."""

    index: int
    value: int
    field: str
    title: str
    meaning: str
    decoded: str | None = None


@dataclass(frozen=True, slots=True)
class DecodedInternalError:
    """A KVM internal error made readable."""

    suberror: int | None
    name: str | None
    meaning: str
    vendor: Vendor | None
    words: tuple[DecodedWord, ...]
    instruction_bytes: bytes | None
    exit_reason: int | None
    exit_reason_text: str | None
    layout: str | None
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DecodedEntryFailure:
    """``KVM: entry failed, hardware error 0x...`` made readable.

    ``entry_failure`` is VMX bit 31 (a VM-entry failure exit); ``basic_reason`` its
    basic exit reason. ``alternatives`` holds each vendor's reading when the vendor is
    unknown.
    """

    value: int
    vendor: Vendor | None
    name: str | None
    meaning: str
    entry_failure: bool
    basic_reason: int | None
    alternatives: tuple[str, ...] = ()


def describe_exit_reason(value: int, vendor: Vendor | None) -> str:
    """An exit reason as VMX or SVM name; "vendor unknown" with both readings otherwise."""
    if vendor == "intel":
        return vmx.split_exit_reason(value).describe()
    if vendor == "amd":
        return svm.describe_exit_code(value)
    return (
        f"vendor unknown (as VMX: {vmx.split_exit_reason(value).describe()}; "
        f"as SVM: {svm.describe_exit_code(value)})"
    )


def _event_info(value: int) -> str:
    """VMX interruption/IDT-vectoring info; SVM EVENTINJ/EXITINTINFO share the layout."""
    if not value & (1 << 31):
        return "no event (valid bit clear)"
    vector = value & 0xFF
    kind = _EVENT_TYPES.get((value >> 8) & 7, "reserved type")
    name = svm.VECTOR_NAMES.get(vector) if (value >> 8) & 7 in (3, 6) else None
    text = f"{kind} {name or f'vector {vector}'}"
    return text + (", error code valid" if value & (1 << 11) else "")


def _decode_value(field: str, value: int, vendor: Vendor | None) -> str | None:
    kind = FIELDS[field].kind
    if kind == "exit_reason":
        return describe_exit_reason(value, vendor)
    if kind == "event_info":
        return _event_info(value)
    if kind == "gpa":
        return "none (INVALID_GPA)" if value == INVALID_GPA else f"GPA {value:#x}"
    if kind == "cpu":
        return f"host CPU {value}"
    if kind == "flags":
        known = "instruction bytes follow" if value & EMULATION_FLAG_INSTRUCTION_BYTES else None
        unknown = value & ~EMULATION_FLAG_INSTRUCTION_BYTES
        parts = [p for p in (known, f"unknown bits {unknown:#x}" if unknown else None) if p]
        return ", ".join(parts) or "no flags"
    return None


def _word(index: int, value: int, field: str, vendor: Vendor | None) -> DecodedWord:
    info = FIELDS[field]
    return DecodedWord(
        index, value, field, info.title, info.describe(vendor), _decode_value(field, value, vendor)
    )


def _emulation_words(
    data: tuple[int, ...], vendor: Vendor | None, notes: list[str]
) -> tuple[list[DecodedWord], bytes | None, str]:
    """Layout of ``prepare_emulation_failure_exit()``: flags, [insn], [exit info], [caller]."""
    if not data:
        return [], None, "no data: kernels before 5.14, or no instruction was fetched"
    words = [_word(0, data[0], "flags", vendor)]
    insn: bytes | None = None
    index = 1
    if data[0] & EMULATION_FLAG_INSTRUCTION_BYTES and len(data) >= 3:
        raw = data[1].to_bytes(8, "little") + data[2].to_bytes(8, "little")
        size = raw[0]
        if size > 15:
            notes.append(f"insn_size {size} exceeds 15: bytes not trusted")
        insn = raw[1 : 1 + min(size, 15)]
        words.append(_word(1, data[1], "insn_lo", vendor))
        words.append(_word(2, data[2], "insn_hi", vendor))
        index = 3
    elif data[0] & EMULATION_FLAG_INSTRUCTION_BYTES:
        notes.append("flags say instruction bytes follow but the words are missing (cut off?)")
    layout = "Linux 5.14/5.15: flags and instruction bytes only"
    if len(data) > index:
        layout = "Linux >= 5.16: flags, [instruction bytes], exit reason and exit info"
        for offset, field in enumerate(EMULATION_EXIT_INFO):
            if index + offset < len(data):
                words.append(_word(index + offset, data[index + offset], field, vendor))
        if len(data) < index + len(EMULATION_EXIT_INFO):
            notes.append("fewer exit-info words than Linux >= 5.16 writes (cut off?)")
        for extra in range(index + len(EMULATION_EXIT_INFO), len(data)):
            words.append(_word(extra, data[extra], "caller_data", vendor))
    return words, insn, layout


def _pick_layout(
    suberror: int, data: tuple[int, ...], vendor: Vendor | None, notes: list[str]
) -> tuple[tuple[str, ...], str | None]:
    candidates = [
        layout
        for layout in LAYOUTS
        if layout.suberror == suberror and len(layout.words) == len(data)
    ]
    if not candidates:
        notes.append(f"no known layout with {len(data)} words for suberror {suberror}")
        return ("caller_data",) * len(data), None
    if len(candidates) == 1:
        return candidates[0].words, candidates[0].when
    return _disambiguate(candidates, data, vendor, notes)


def _disambiguate(
    candidates: list[DataLayout],
    data: tuple[int, ...],
    vendor: Vendor | None,
    notes: list[str],
) -> tuple[tuple[str, ...], str | None]:
    """Same-length layouts differ by whether the exit was a VMX EPT misconfig."""
    reason_index = candidates[0].words.index("exit_reason")
    if vendor == "intel":
        misconfig = vmx.split_exit_reason(data[reason_index]).basic == 49
        for layout in candidates:
            if layout.ept_misconfig is misconfig:
                return layout.words, layout.when
    notes.append("two kernel layouts fit; without the vendor the ambiguous word is not named")
    words = tuple(
        field if all(c.words[i] == field for c in candidates) else "gpa_or_cpu"
        for i, field in enumerate(candidates[0].words)
    )
    return words, " or ".join(c.when for c in candidates)


def decode_internal_error(
    err: KvmInternalError, vendor: Vendor | None = None
) -> DecodedInternalError:
    """Name the suberror and decode each ``extra data`` word for ``vendor``.

    With ``vendor=None`` exit reasons and vendor-specific words are given both readings,
    marked "vendor unknown".
    """
    notes: list[str] = []
    suberror = err.suberror
    if suberror is None and err.emulation_failure:
        suberror = Suberror.EMULATION
        notes.append("suberror not printed; 'emulation failure' implies suberror 1")
    info = SUBERRORS.get(suberror) if suberror is not None else None
    if suberror is None:
        meaning = "suberror unknown (QEMU without KVM_CAP_INTERNAL_ERROR_DATA, or cut off)"
    elif info is None:
        meaning = f"suberror {suberror} is not one Linux defines (1-4)"
    else:
        meaning = info.meaning
    if not err.complete:
        notes.append("extra data indices had gaps: word positions may be shifted")
    insn: bytes | None = None
    layout: str | None = None
    if suberror == Suberror.EMULATION:
        words, insn, layout = _emulation_words(err.data, vendor, notes)
    elif suberror in SUBERRORS and err.data:
        fields, layout = _pick_layout(suberror, err.data, vendor, notes)
        words = [
            _word(i, v, f, vendor) for i, (v, f) in enumerate(zip(err.data, fields, strict=True))
        ]
    else:
        words = [_word(i, v, "caller_data", vendor) for i, v in enumerate(err.data)]
    reason = next((w.value for w in words if w.field == "exit_reason"), None)
    return DecodedInternalError(
        suberror=suberror,
        name=info.name if info else None,
        meaning=meaning,
        vendor=vendor,
        words=tuple(words),
        instruction_bytes=insn,
        exit_reason=reason,
        exit_reason_text=None if reason is None else describe_exit_reason(reason, vendor),
        layout=layout,
        notes=tuple(notes),
    )


def _entry_intel(value: int) -> tuple[str | None, str, bool, int | None]:
    reason = vmx.split_exit_reason(value)
    if value > 0xFFFFFFFF:
        return None, f"{value:#x} is wider than a VMX exit-reason field", False, None
    if reason.entry_failure:
        return reason.name, reason.describe(), True, reason.basic
    if value in vmx.VMX_INSTRUCTION_ERRORS:
        text = vmx.VMX_INSTRUCTION_ERRORS[value]
        return None, f"VMLAUNCH/VMRESUME failed, VM-instruction error {value}: {text}", False, None
    return reason.name, f"not a VM-entry failure: {reason.describe()}", False, reason.basic


def _entry_amd(value: int) -> tuple[str | None, str]:
    entry = svm.SVM_EXIT_CODES.get(value)
    return (entry[0] if entry else None), svm.describe_exit_code(value)


def decode_entry_failure(hw_error: int, vendor: Vendor | None = None) -> DecodedEntryFailure:
    """Decode ``fail_entry.hardware_entry_failure_reason`` (QEMU's "hardware error 0x...").

    Intel: the VMX exit-reason field with bit 31 set (e.g. 0x80000021: basic 33, invalid
    guest state), or a VM-instruction error number when VMLAUNCH/VMRESUME failed.
    AMD: the VMCB exit code, ``SVM_EXIT_ERR`` (-1) for a VMRUN with bad guest state.
    """
    hw_error &= 0xFFFFFFFFFFFFFFFF
    if vendor == "intel":
        name, meaning, failed, basic = _entry_intel(hw_error)
        return DecodedEntryFailure(hw_error, vendor, name, meaning, failed, basic)
    if vendor == "amd":
        name, meaning = _entry_amd(hw_error)
        return DecodedEntryFailure(hw_error, vendor, name, meaning, False, None)
    _, intel_text, _, _ = _entry_intel(hw_error)
    _, amd_text = _entry_amd(hw_error)
    return DecodedEntryFailure(
        hw_error,
        None,
        None,
        "vendor unknown",
        False,
        None,
        alternatives=(f"Intel: {intel_text}", f"AMD: {amd_text}"),
    )
