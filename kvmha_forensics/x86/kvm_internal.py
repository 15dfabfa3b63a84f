"""KVM_EXIT_INTERNAL_ERROR suberrors and the layout of ``run->internal.data[]`` per suberror.

Pure data. Sources (Linux): ``include/uapi/linux/kvm.h`` (suberror numbers, the
``emulation_failure`` overlay and KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES),
``arch/x86/kvm/x86.c`` (``prepare_emulation_failure_exit()``,
``kvm_prepare_event_vectoring_exit()``), ``arch/x86/kvm/vmx/vmx.c`` (``handle_exception_nmi()``,
``__vmx_handle_exit()``), ``arch/x86/kvm/svm/svm.c``. The layouts changed across kernel
versions; ``docs/kvm-errors.md`` tells the history. The ``extra data[N]`` lines that QEMU
prints are these words, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from ..vocabulary import Vendor

__all__ = [
    "EMULATION_EXIT_INFO",
    "EMULATION_FLAG_INSTRUCTION_BYTES",
    "FIELDS",
    "INVALID_GPA",
    "LAYOUTS",
    "SUBERRORS",
    "DataLayout",
    "FieldInfo",
    "Suberror",
    "SuberrorInfo",
]

Kind = Literal["exit_reason", "event_info", "gpa", "cpu", "raw", "flags", "insn"]

#: ``emulation_failure.flags`` bit: ``insn_size`` and ``insn_bytes[15]`` are valid.
EMULATION_FLAG_INSTRUCTION_BYTES = 1 << 0
#: Words that Linux >= 5.16 appends to an emulation failure (``get_exit_info()`` output).
EMULATION_EXIT_INFO = ("exit_reason", "exit_info1", "exit_info2", "exit_intr_info", "exit_error")
#: ``INVALID_GPA`` (all ones) in the unified delivery-event layout means "no GPA".
INVALID_GPA = 0xFFFFFFFFFFFFFFFF


class Suberror(IntEnum):
    """``KVM_INTERNAL_ERROR_*`` (include/uapi/linux/kvm.h)."""

    EMULATION = 1
    SIMUL_EX = 2
    DELIVERY_EV = 3
    UNEXPECTED_EXIT_REASON = 4


@dataclass(frozen=True, slots=True)
class SuberrorInfo:
    """Name and meaning of one suberror."""

    number: int
    name: str
    meaning: str


SUBERRORS: dict[int, SuberrorInfo] = {
    1: SuberrorInfo(
        1,
        "KVM_INTERNAL_ERROR_EMULATION",
        "KVM's instruction emulator failed: an instruction it does not implement reached it, "
        "typically a guest access to MMIO or unassigned memory with an instruction the emulator "
        "cannot do (SSE/AVX/x87 memory operands), or an instruction fetch from non-RAM",
    ),
    2: SuberrorInfo(
        2,
        "KVM_INTERNAL_ERROR_SIMUL_EX",
        "an exception occurred while KVM was delivering another event (simultaneous "
        "exceptions it cannot resolve); VMX only",
    ),
    3: SuberrorInfo(
        3,
        "KVM_INTERNAL_ERROR_DELIVERY_EV",
        "a VM exit that KVM cannot handle happened while an event (interrupt/exception) was "
        "being delivered through the guest IDT, e.g. an MMIO access during delivery",
    ),
    4: SuberrorInfo(
        4,
        "KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON",
        "the hardware (or PVM) reported an exit reason KVM has no handler for",
    ),
}


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """What one data word holds, per vendor (``None``: vendor unknown or both alike)."""

    title: str
    intel: str
    amd: str
    kind: Kind

    def describe(self, vendor: Vendor | None) -> str:
        """Meaning of the word for a vendor; both readings when the vendor is unknown."""
        if vendor == "intel" or self.intel == self.amd:
            return self.intel
        if vendor == "amd":
            return self.amd
        return f"vendor unknown: Intel {self.intel} / AMD {self.amd}"


def _both(title: str, text: str, kind: Kind) -> FieldInfo:
    return FieldInfo(title, text, text, kind)


FIELDS: dict[str, FieldInfo] = {
    "flags": _both("flags", "emulation_failure.flags (bit 0: instruction bytes follow)", "flags"),
    "insn_lo": _both(
        "insn_size + bytes 0-6", "insn_size (low byte) and instruction bytes 0-6", "insn"
    ),
    "insn_hi": _both("bytes 7-14", "instruction bytes 7-14", "insn"),
    "exit_reason": FieldInfo("exit reason", "VMX exit-reason field", "SVM EXITCODE", "exit_reason"),
    "exit_info1": FieldInfo("exit info 1", "exit qualification", "EXITINFO1", "raw"),
    "exit_info2": FieldInfo("exit info 2", "IDT-vectoring information", "EXITINFO2", "raw"),
    "exit_intr_info": FieldInfo(
        "exit interruption info", "VM-exit interruption information", "EXITINTINFO", "event_info"
    ),
    "exit_error": FieldInfo(
        "exit error code",
        "VM-exit interruption error code",
        "EXITINTINFO error code",
        "raw",
    ),
    "vectoring_info": FieldInfo(
        "vectoring info", "IDT-vectoring information", "EXITINTINFO", "event_info"
    ),
    "intr_info": FieldInfo(
        "interruption info", "VM-exit interruption information", "EXITINTINFO", "event_info"
    ),
    "error_code": _both("error code", "exception error code", "raw"),
    "exit_qualification": FieldInfo("exit qualification", "exit qualification", "EXITINFO1", "raw"),
    "gpa": FieldInfo(
        "GPA",
        "guest-physical address of the EPT misconfig (MMIO); all ones: none",
        "guest-physical address of the NPF (MMIO); all ones: none",
        "gpa",
    ),
    "gpa_or_cpu": _both(
        "GPA or CPU",
        "GPA (older layout, EPT misconfig) or host CPU of the last VM entry (newer layout, "
        "other exits): the two cannot be told apart without knowing the exit reason",
        "raw",
    ),
    "info2": FieldInfo("exit info 2", "IDT-vectoring information", "EXITINFO2", "raw"),
    "last_vmentry_cpu": _both("last VM-entry CPU", "host CPU of the last VM entry", "cpu"),
    "caller_data": _both(
        "caller data", "data added by the KVM code that reported the failure", "raw"
    ),
}


@dataclass(frozen=True, slots=True)
class DataLayout:
    """One known layout of ``internal.data[]`` for a suberror and word count.

    ``when`` tells which kernels produce it; ``ept_misconfig`` is True/False when the
    layout is only produced for (or never for) a VMX EPT-misconfig exit, which is how two
    layouts of the same length are told apart.
    """

    suberror: int
    words: tuple[str, ...]
    when: str
    ept_misconfig: bool | None = None


LAYOUTS: tuple[DataLayout, ...] = (
    DataLayout(2, ("vectoring_info", "intr_info"), "oldest kernels (VMX)"),
    DataLayout(2, ("vectoring_info", "intr_info", "error_code"), "kernels before ~5.11 (VMX)"),
    DataLayout(
        2,
        ("vectoring_info", "intr_info", "error_code", "last_vmentry_cpu"),
        "kernels since ~5.11 (VMX)",
    ),
    DataLayout(
        3,
        ("vectoring_info", "exit_reason", "exit_qualification"),
        "kernels before ~5.11 (VMX)",
        ept_misconfig=False,
    ),
    DataLayout(
        3,
        ("vectoring_info", "exit_reason", "exit_qualification", "gpa"),
        "kernels before ~5.11 (VMX, EPT misconfig)",
        ept_misconfig=True,
    ),
    DataLayout(
        3,
        ("vectoring_info", "exit_reason", "exit_qualification", "last_vmentry_cpu"),
        "kernels ~5.11 until the unified delivery-event exit (VMX)",
        ept_misconfig=False,
    ),
    DataLayout(
        3,
        ("info2", "exit_reason", "exit_qualification", "gpa", "last_vmentry_cpu"),
        "kernels since ~5.11 (VMX, EPT misconfig); with kvm_prepare_event_vectoring_exit() "
        "(2024/25) always, VMX and SVM, GPA all ones when not MMIO",
    ),
    DataLayout(4, ("exit_reason",), "kernels before ~5.11"),
    DataLayout(4, ("exit_reason", "last_vmentry_cpu"), "kernels since ~5.11"),
)
