"""Intel VMX exit reasons and VM-instruction errors (Intel SDM vol. 3C, appendix C and 31.4).

Names follow Linux ``arch/x86/include/uapi/asm/vmx.h`` (``EXIT_REASON_*``). The exit-reason
field: bits 15:0 basic reason, bit 27 from enclave mode, bit 28 pending MTF, bit 29 from
VMX root operation, bit 31 VM-entry failure. KVM puts the whole field into
``fail_entry.hardware_entry_failure_reason`` (VM-entry failure, e.g. 0x80000021) or the
VM-instruction error number when VMLAUNCH/VMRESUME itself failed (``vmx->fail``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "VMX_EXIT_REASONS",
    "VMX_INSTRUCTION_ERRORS",
    "VmxExitReason",
    "split_exit_reason",
]

ENTRY_FAILURE_BIT = 1 << 31
FROM_ROOT_BIT = 1 << 29
PENDING_MTF_BIT = 1 << 28
FROM_ENCLAVE_BIT = 1 << 27

#: basic exit reason -> (KVM name, meaning)
VMX_EXIT_REASONS: dict[int, tuple[str, str]] = {
    0: ("EXCEPTION_NMI", "exception or NMI"),
    1: ("EXTERNAL_INTERRUPT", "external interrupt"),
    2: ("TRIPLE_FAULT", "triple fault"),
    3: ("INIT_SIGNAL", "INIT signal"),
    4: ("SIPI_SIGNAL", "start-up IPI"),
    5: ("IO_SMI", "I/O system-management interrupt"),
    6: ("OTHER_SMI", "other SMI"),
    7: ("INTERRUPT_WINDOW", "interrupt window"),
    8: ("NMI_WINDOW", "NMI window"),
    9: ("TASK_SWITCH", "task switch"),
    10: ("CPUID", "CPUID"),
    11: ("GETSEC", "GETSEC"),
    12: ("HLT", "HLT"),
    13: ("INVD", "INVD"),
    14: ("INVLPG", "INVLPG"),
    15: ("RDPMC", "RDPMC"),
    16: ("RDTSC", "RDTSC"),
    17: ("RSM", "RSM"),
    18: ("VMCALL", "VMCALL"),
    19: ("VMCLEAR", "VMCLEAR"),
    20: ("VMLAUNCH", "VMLAUNCH"),
    21: ("VMPTRLD", "VMPTRLD"),
    22: ("VMPTRST", "VMPTRST"),
    23: ("VMREAD", "VMREAD"),
    24: ("VMRESUME", "VMRESUME"),
    25: ("VMWRITE", "VMWRITE"),
    26: ("VMOFF", "VMXOFF"),
    27: ("VMON", "VMXON"),
    28: ("CR_ACCESS", "control-register access"),
    29: ("DR_ACCESS", "MOV DR"),
    30: ("IO_INSTRUCTION", "I/O instruction"),
    31: ("MSR_READ", "RDMSR"),
    32: ("MSR_WRITE", "WRMSR"),
    33: ("INVALID_STATE", "VM-entry failure due to invalid guest state"),
    34: ("MSR_LOAD_FAIL", "VM-entry failure due to MSR loading"),
    36: ("MWAIT_INSTRUCTION", "MWAIT"),
    37: ("MONITOR_TRAP_FLAG", "monitor trap flag"),
    39: ("MONITOR_INSTRUCTION", "MONITOR"),
    40: ("PAUSE_INSTRUCTION", "PAUSE"),
    41: ("MCE_DURING_VMENTRY", "VM-entry failure due to machine-check event"),
    43: ("TPR_BELOW_THRESHOLD", "TPR below threshold"),
    44: ("APIC_ACCESS", "APIC access"),
    45: ("EOI_INDUCED", "virtualized EOI"),
    46: ("GDTR_IDTR", "access to GDTR or IDTR"),
    47: ("LDTR_TR", "access to LDTR or TR"),
    48: ("EPT_VIOLATION", "EPT violation"),
    49: ("EPT_MISCONFIG", "EPT misconfiguration (KVM uses it for MMIO)"),
    50: ("INVEPT", "INVEPT"),
    51: ("RDTSCP", "RDTSCP"),
    52: ("PREEMPTION_TIMER", "VMX-preemption timer expired"),
    53: ("INVVPID", "INVVPID"),
    54: ("WBINVD", "WBINVD or WBNOINVD"),
    55: ("XSETBV", "XSETBV"),
    56: ("APIC_WRITE", "APIC write"),
    57: ("RDRAND", "RDRAND"),
    58: ("INVPCID", "INVPCID"),
    59: ("VMFUNC", "VMFUNC"),
    60: ("ENCLS", "ENCLS"),
    61: ("RDSEED", "RDSEED"),
    62: ("PML_FULL", "page-modification log full"),
    63: ("XSAVES", "XSAVES"),
    64: ("XRSTORS", "XRSTORS"),
    67: ("UMWAIT", "UMWAIT"),
    68: ("TPAUSE", "TPAUSE"),
    74: ("BUS_LOCK", "bus lock"),
    75: ("NOTIFY", "instruction timeout (notify VM exit)"),
}

#: VM-instruction error number (VM_INSTRUCTION_ERROR field) -> meaning
VMX_INSTRUCTION_ERRORS: dict[int, str] = {
    1: "VMCALL executed in VMX root operation",
    2: "VMCLEAR with invalid physical address",
    3: "VMCLEAR with VMXON pointer",
    4: "VMLAUNCH with non-clear VMCS",
    5: "VMRESUME with non-launched VMCS",
    6: "VMRESUME after VMXOFF",
    7: "VM entry with invalid control field(s)",
    8: "VM entry with invalid host-state field(s)",
    9: "VMPTRLD with invalid physical address",
    10: "VMPTRLD with VMXON pointer",
    11: "VMPTRLD with incorrect VMCS revision identifier",
    12: "VMREAD/VMWRITE from/to unsupported VMCS component",
    13: "VMWRITE to read-only VMCS component",
    15: "VMXON executed in VMX root operation",
    16: "VM entry with invalid executive-VMCS pointer",
    17: "VM entry with non-launched executive VMCS",
    18: "VM entry with executive-VMCS pointer not VMXON pointer",
    19: "VMCALL with non-clear VMCS",
    20: "VMCALL with invalid VM-exit control fields",
    22: "VMCALL with incorrect MSEG revision identifier",
    23: "VMXOFF under dual-monitor treatment of SMIs and SMM",
    24: "VMCALL with invalid SMM-monitor features",
    25: "VM entry with invalid VM-execution control fields in executive VMCS",
    26: "VM entry with events blocked by MOV SS",
    28: "invalid operand to INVEPT/INVVPID",
}


@dataclass(frozen=True, slots=True)
class VmxExitReason:
    """A VMX exit-reason field split into its parts."""

    value: int
    basic: int
    entry_failure: bool
    from_root: bool
    pending_mtf: bool
    from_enclave: bool

    @property
    def name(self) -> str | None:
        """KVM's name of the basic reason (``EXIT_REASON_<name>``), if known."""
        entry = VMX_EXIT_REASONS.get(self.basic)
        return entry[0] if entry else None

    def describe(self) -> str:
        """One line: basic reason name and meaning, plus the flag bits that are set."""
        entry = VMX_EXIT_REASONS.get(self.basic)
        text = (
            f"{entry[0]} ({entry[1]})" if entry else f"unknown VMX basic exit reason {self.basic}"
        )
        flags = [
            label
            for label, on in (
                ("VM-entry failure", self.entry_failure),
                ("from VMX root", self.from_root),
                ("pending MTF", self.pending_mtf),
                ("from enclave", self.from_enclave),
            )
            if on
        ]
        return f"{text} [{', '.join(flags)}]" if flags else text


def split_exit_reason(value: int) -> VmxExitReason:
    """Split a 32-bit VMX exit-reason field (higher bits of a wider word are ignored)."""
    value &= 0xFFFFFFFF
    return VmxExitReason(
        value=value,
        basic=value & 0xFFFF,
        entry_failure=bool(value & ENTRY_FAILURE_BIT),
        from_root=bool(value & FROM_ROOT_BIT),
        pending_mtf=bool(value & PENDING_MTF_BIT),
        from_enclave=bool(value & FROM_ENCLAVE_BIT),
    )
