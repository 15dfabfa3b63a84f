"""AMD SVM exit codes (AMD APM vol. 2, appendix C; names from Linux ``uapi/asm/svm.h``).

KVM reports the VMCB ``EXITCODE`` (64-bit) as the exit reason on AMD hosts; a failed VMRUN
gives ``SVM_EXIT_ERR`` (-1, printed by QEMU as ``0xffffffffffffffff``) in
``fail_entry.hardware_entry_failure_reason``.
"""

from __future__ import annotations

__all__ = ["SVM_EXIT_CODES", "SVM_EXIT_ERR", "VECTOR_NAMES", "describe_exit_code"]

SVM_EXIT_ERR = 0xFFFFFFFFFFFFFFFF

_EXCEPTIONS = (
    "DE", "DB", "NMI", "BP", "OF", "BR", "UD", "NM", "DF", "09", "TS", "NP", "SS", "GP", "PF",
    "15", "MF", "AC", "MC", "XM", "VE", "CP",
)  # fmt: skip
#: x86 exception vectors by their names (``#DE``, ``NMI``...); reserved vectors are left out.
VECTOR_NAMES = {
    v: n if n == "NMI" else f"#{n}" for v, n in enumerate(_EXCEPTIONS) if not n.isdigit()
}

_NAMED: dict[int, tuple[str, str]] = {
    0x060: ("INTR", "physical interrupt"),
    0x061: ("NMI", "physical NMI"),
    0x062: ("SMI", "physical SMI"),
    0x063: ("INIT", "physical INIT"),
    0x064: ("VINTR", "virtual interrupt window"),
    0x065: ("CR0_SEL_WRITE", "write of CR0 changing bits other than TS/MP"),
    0x066: ("IDTR_READ", "read of IDTR"),
    0x067: ("GDTR_READ", "read of GDTR"),
    0x068: ("LDTR_READ", "read of LDTR"),
    0x069: ("TR_READ", "read of TR"),
    0x06A: ("IDTR_WRITE", "write of IDTR"),
    0x06B: ("GDTR_WRITE", "write of GDTR"),
    0x06C: ("LDTR_WRITE", "write of LDTR"),
    0x06D: ("TR_WRITE", "write of TR"),
    0x06E: ("RDTSC", "RDTSC"),
    0x06F: ("RDPMC", "RDPMC"),
    0x070: ("PUSHF", "PUSHF"),
    0x071: ("POPF", "POPF"),
    0x072: ("CPUID", "CPUID"),
    0x073: ("RSM", "RSM"),
    0x074: ("IRET", "IRET"),
    0x075: ("SWINT", "software interrupt (INTn)"),
    0x076: ("INVD", "INVD"),
    0x077: ("PAUSE", "PAUSE"),
    0x078: ("HLT", "HLT"),
    0x079: ("INVLPG", "INVLPG"),
    0x07A: ("INVLPGA", "INVLPGA"),
    0x07B: ("IOIO", "IN/OUT/INS/OUTS"),
    0x07C: ("MSR", "RDMSR or WRMSR"),
    0x07D: ("TASK_SWITCH", "task switch"),
    0x07E: ("FERR_FREEZE", "FERR freeze"),
    0x07F: ("SHUTDOWN", "shutdown (triple fault)"),
    0x080: ("VMRUN", "VMRUN"),
    0x081: ("VMMCALL", "VMMCALL"),
    0x082: ("VMLOAD", "VMLOAD"),
    0x083: ("VMSAVE", "VMSAVE"),
    0x084: ("STGI", "STGI"),
    0x085: ("CLGI", "CLGI"),
    0x086: ("SKINIT", "SKINIT"),
    0x087: ("RDTSCP", "RDTSCP"),
    0x088: ("ICEBP", "ICEBP (INT1)"),
    0x089: ("WBINVD", "WBINVD"),
    0x08A: ("MONITOR", "MONITOR"),
    0x08B: ("MWAIT", "MWAIT"),
    0x08C: ("MWAIT_COND", "MWAIT with armed monitor"),
    0x08D: ("XSETBV", "XSETBV"),
    0x08E: ("RDPRU", "RDPRU"),
    0x08F: ("EFER_WRITE_TRAP", "write of EFER (trap)"),
    0x0A0: ("INVLPGB", "INVLPGB"),
    0x0A1: ("INVLPGB_ILLEGAL", "illegal INVLPGB"),
    0x0A2: ("INVPCID", "INVPCID"),
    0x0A3: ("MCOMMIT", "MCOMMIT"),
    0x0A4: ("TLBSYNC", "TLBSYNC"),
    0x0A5: ("BUS_LOCK", "bus lock"),
    0x400: ("NPF", "nested page fault (KVM uses it for MMIO)"),
    0x401: ("AVIC_INCOMPLETE_IPI", "AVIC incomplete IPI"),
    0x402: ("AVIC_UNACCELERATED_ACCESS", "AVIC unaccelerated access"),
    0x403: ("VMGEXIT", "VMGEXIT (SEV-ES guest request)"),
    SVM_EXIT_ERR: ("ERR", "VMRUN failed: invalid guest state in the VMCB"),
}

#: exit code -> (KVM name without ``SVM_EXIT_``, meaning)
SVM_EXIT_CODES: dict[int, tuple[str, str]] = {
    **{n: (f"READ_CR{n}", f"read of CR{n}") for n in range(16)},
    **{0x10 + n: (f"WRITE_CR{n}", f"write of CR{n}") for n in range(16)},
    **{0x20 + n: (f"READ_DR{n}", f"read of DR{n}") for n in range(16)},
    **{0x30 + n: (f"WRITE_DR{n}", f"write of DR{n}") for n in range(16)},
    **{0x40 + v: (f"EXCP_{n}", f"exception vector {v} (#{n})") for v, n in enumerate(_EXCEPTIONS)},
    **{0x90 + n: (f"CR{n}_WRITE_TRAP", f"write of CR{n} (trap)") for n in range(16)},
    **_NAMED,
}  # fmt: skip


def describe_exit_code(code: int) -> str:
    """``NAME (meaning)`` of an SVM exit code, or says it is not a known one."""
    code &= 0xFFFFFFFFFFFFFFFF
    entry = SVM_EXIT_CODES.get(code)
    if entry is None and 0x40 <= code < 0x60:
        return f"EXCP_{code - 0x40} (exception vector {code - 0x40})"
    if entry is None:
        return f"unknown SVM exit code {code:#x}"
    return f"{entry[0]} ({entry[1]})"
