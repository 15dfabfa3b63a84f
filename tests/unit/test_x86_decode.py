"""kvmha_forensics.x86: modes, VMX/SVM tables and the internal-error / entry-failure decoders."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmha_forensics.sources.qemu_log import KvmInternalError, parse_qemu_log_file
from kvmha_forensics.sources.registers import parse_register_dumps
from kvmha_forensics.x86 import svm, vmx
from kvmha_forensics.x86.decode import decode_entry_failure, decode_internal_error
from kvmha_forensics.x86.kvm_internal import LAYOUTS, SUBERRORS
from kvmha_forensics.x86.modes import CpuMode, cpu_mode, mode_of

LOGS = Path(__file__).resolve().parents[2] / "fixtures" / "logs"


def _error(name: str) -> KvmInternalError:
    return parse_qemu_log_file(LOGS / name).internal_errors[0]


@pytest.mark.parametrize(
    ("name", "index", "mode"),
    [
        ("emulation-failure-kvm.info-registers.txt", 0, CpuMode.LONG_64),
        ("emulation-failure-kvm-smp2.info-registers.txt", 1, CpuMode.PROTECTED_32),
        ("triple-fault-kvm.info-registers.txt", 0, CpuMode.PROTECTED_32),
        ("prelaunch-tcg.info-registers.txt", 0, CpuMode.REAL),
    ],
)
def test_mode_of_recorded_dumps(name: str, index: int, mode: CpuMode) -> None:
    assert mode_of(parse_register_dumps((LOGS / name).read_text())[index]) == mode


@pytest.mark.parametrize(
    ("cr0", "efer", "cs_flags", "rflags", "mode"),
    [
        (0x10, 0, 0x9B00, 0, CpuMode.REAL),
        (0x11, 0, 0x9B00, 0, CpuMode.PROTECTED_16),
        (0x11, 0, 0xC09B00, 0, CpuMode.PROTECTED_32),
        (0x11, 0, 0xC09B00, 1 << 17, CpuMode.VM86),
        (0x80000011, 0x500, 0xA09B00, 0, CpuMode.LONG_64),
        (0x80000011, 0x500, 0xC09B00, 0, CpuMode.COMPAT_32),
        (0x80000011, 0x500, 0x809B00, 0, CpuMode.COMPAT_16),
        (0x80000011, 0x100, 0xA09B00, 0, CpuMode.PROTECTED_16),  # LME, no LMA: L ignored
    ],
)
def test_cpu_mode_table(cr0: int, efer: int, cs_flags: int, rflags: int, mode: CpuMode) -> None:
    assert cpu_mode(cr0, efer, cs_flags, rflags) == mode


def test_unreadable_state_has_no_mode() -> None:
    """QEMU prints zeros for registers it cannot read (an SEV-SNP guest, fixtures/real
    qemu-logs 033): protected mode with a CS that is not even present is no mode at all,
    while a real-mode reset state with a zero selector keeps its mode."""
    zeros = "\n".join(f"{s:<3}=0000 00000000 00000000 00000000" for s in ("ES", "CS", "SS"))
    dump = f"EIP=00000000 EFL=00000002 [-------] CPL=0\n{zeros}\nCR0=80000001 CR2=0 CR3=0"
    assert mode_of(parse_register_dumps(dump)[0]) is None
    real = dump.replace(
        "CS =0000 00000000 00000000 00000000", "CS =0000 00000000 0000ffff 00009b00"
    )
    assert mode_of(parse_register_dumps(real.replace("CR0=80000001", "CR0=00000010"))[0]) == (
        CpuMode.REAL
    )


def test_mode_without_cr0_read_from_segment_descriptions() -> None:
    """A dump cut before CR0= (fixtures/real qemu-logs 043, 047): QEMU describes present
    segments (DPL=, kind) only in protected mode, so a present CS with no described segment
    is real mode (a reset or SMM entry state), a described one protected mode, and a CS that
    is not present tells nothing."""
    segs = ("ES =0000 00000000 ffffffff 00809300", "CS =c000 7ffc0000 ffffffff 00809300")
    real = "EIP=00008000 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=1 HLT=0\n" + "\n".join(segs)
    assert mode_of(parse_register_dumps(real)[0]) == CpuMode.REAL
    described = real.replace("00809300", "00c09300 DPL=0 DS   [-WA]").replace(
        "c000 7ffc", "0008 0000"
    )
    assert mode_of(parse_register_dumps(described)[0]) == CpuMode.PROTECTED_32
    absent = real.replace("ffffffff 00809300", "00000000 00000000")
    assert mode_of(parse_register_dumps(absent)[0]) is None


def test_recorded_emulation_failure_decoded() -> None:
    decoded = decode_internal_error(_error("emulation-failure-kvm.stderr.log"), None)
    assert decoded.name == "KVM_INTERNAL_ERROR_EMULATION"
    assert decoded.instruction_bytes is not None
    assert len(decoded.instruction_bytes) == 15
    assert decoded.instruction_bytes[:7] == bytes.fromhex("660fef00f4ebfd")
    fields = [w.field for w in decoded.words]
    assert fields == [
        "flags",
        "insn_lo",
        "insn_hi",
        "exit_reason",
        "exit_info1",
        "exit_info2",
        "exit_intr_info",
        "exit_error",
    ]
    assert decoded.exit_reason == 0x1000
    assert decoded.exit_reason_text is not None
    assert decoded.exit_reason_text.startswith("vendor unknown")
    assert "5.16" in (decoded.layout or "")


def test_recorded_mmio_fetch_has_no_instruction_bytes() -> None:
    decoded = decode_internal_error(_error("mmio-fetch-kvm.stderr.log"), None)
    assert decoded.instruction_bytes is None
    assert [w.field for w in decoded.words][:2] == ["flags", "exit_reason"]
    assert decoded.exit_reason == 0x1000


def test_vmx_emulation_failure_names_ept_misconfig() -> None:
    decoded = decode_internal_error(_error("synthetic-vmx-emulation-failure.log"), "intel")
    assert decoded.exit_reason == 0x31
    assert decoded.exit_reason_text is not None
    assert decoded.exit_reason_text.startswith("EPT_MISCONFIG")
    assert decoded.words[4].meaning == "exit qualification"


def test_vendor_unknown_does_not_guess() -> None:
    decoded = decode_internal_error(_error("synthetic-vmx-emulation-failure.log"), None)
    assert decoded.exit_reason_text is not None
    assert decoded.exit_reason_text.startswith("vendor unknown")
    assert "EPT_MISCONFIG" in decoded.exit_reason_text
    assert "as SVM" in decoded.exit_reason_text


def test_old_delivery_ev_layout_needs_vendor() -> None:
    err = _error("synthetic-old-spelling-bare-hex.log")
    intel = decode_internal_error(err, "intel")
    assert [w.field for w in intel.words] == [
        "vectoring_info",
        "exit_reason",
        "exit_qualification",
        "gpa",
    ]
    assert intel.words[3].decoded == "GPA 0xfee00300"
    assert intel.words[0].decoded == "hardware exception #PF, error code valid"
    unknown = decode_internal_error(err, None)
    assert unknown.words[3].field == "gpa_or_cpu"
    assert unknown.notes


def test_unexpected_exit_reason_amd() -> None:
    log = parse_qemu_log_file(LOGS / "synthetic-two-vcpus.log")
    decoded = decode_internal_error(log.internal_errors[1], "amd")
    assert decoded.name == "KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON"
    assert decoded.exit_reason_text == "BUS_LOCK (bus lock)"
    assert decoded.words[1].decoded == "host CPU 3"


def test_unknown_suberror_and_unknown_length() -> None:
    odd = decode_internal_error(KvmInternalError(9, (1, 2), False, 0), "intel")
    assert odd.name is None and "not one Linux defines" in odd.meaning
    assert [w.field for w in odd.words] == ["caller_data", "caller_data"]
    weird = decode_internal_error(KvmInternalError(4, (1, 2, 3), False, 0), "intel")
    assert weird.layout is None and weird.notes


def test_pre_5_14_emulation_failure_has_no_data() -> None:
    decoded = decode_internal_error(KvmInternalError(1, (), True, 0), "intel")
    assert decoded.words == () and decoded.instruction_bytes is None
    assert "5.14" in (decoded.layout or "")


@pytest.mark.parametrize(
    ("value", "vendor", "name", "basic", "failed"),
    [
        (0x80000021, "intel", "INVALID_STATE", 33, True),
        (0x80000022, "intel", "MSR_LOAD_FAIL", 34, True),
        (0x80000029, "intel", "MCE_DURING_VMENTRY", 41, True),
        (0xFFFFFFFFFFFFFFFF, "amd", "ERR", None, False),
    ],
)
def test_entry_failures(
    value: int, vendor: str, name: str, basic: int | None, failed: bool
) -> None:
    decoded = decode_entry_failure(value, vendor)  # type: ignore[arg-type]
    assert (decoded.name, decoded.basic_reason, decoded.entry_failure) == (name, basic, failed)


def test_entry_failure_instruction_error_and_unknown_vendor() -> None:
    assert "invalid control field" in decode_entry_failure(7, "intel").meaning
    unknown = decode_entry_failure(0x80000021, None)
    assert unknown.meaning == "vendor unknown" and unknown.name is None
    assert "INVALID_STATE" in unknown.alternatives[0]
    assert unknown.alternatives[1].startswith("AMD: unknown")


def test_tables_are_consistent() -> None:
    assert set(SUBERRORS) == {1, 2, 3, 4}
    assert vmx.VMX_EXIT_REASONS[48][0] == "EPT_VIOLATION"
    assert vmx.VMX_EXIT_REASONS[49][0] == "EPT_MISCONFIG"
    assert svm.SVM_EXIT_CODES[0x7F][0] == "SHUTDOWN"
    assert svm.SVM_EXIT_CODES[0x400][0] == "NPF"
    assert svm.SVM_EXIT_CODES[0x4E][0] == "EXCP_PF"
    assert svm.describe_exit_code(svm.SVM_EXIT_ERR).startswith("ERR")
    for layout in LAYOUTS:
        assert layout.suberror in SUBERRORS
    split = vmx.split_exit_reason(0x80000021)
    assert split.entry_failure and split.basic == 33 and split.name == "INVALID_STATE"
