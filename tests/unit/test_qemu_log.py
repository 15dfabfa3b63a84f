"""kvmha_forensics.sources.qemu_log on recorded stderr, synthetic variants and a huge log."""

from __future__ import annotations

from pathlib import Path

from kvmha_forensics.sources.qemu_log import (
    KvmInternalError,
    QemuLog,
    parse_qemu_log,
    parse_qemu_log_file,
)
from tests.unit.qemu_logs import LOGS, comparable

RECORDED_WORDS = (1, 0xFDEBF400EF0F660F, 0, 0x1000, 0, 0, 0, 0)


def _log(name: str) -> QemuLog:
    return parse_qemu_log_file(LOGS / name)


def test_recorded_emulation_failure() -> None:
    log = _log("emulation-failure-kvm.stderr.log")
    [err] = log.internal_errors
    assert err.suberror == 1
    assert err.data == RECORDED_WORDS
    assert err.emulation_failure
    assert err.data_style == "0x%016"
    assert err.register_dump == 0
    assert err.line == 1
    [dump] = log.register_dumps
    assert dump.rip == 0x7CC5
    assert log.code is not None and log.code.rip_index == 20
    assert log.entry_failures == () and log.run_failures == ()
    assert log.notes == ()
    assert log.internal_errors_total == 1 and log.register_dumps_total == 1


def test_recorded_mmio_fetch() -> None:
    log = _log("mmio-fetch-kvm.stderr.log")
    [err] = log.internal_errors
    assert err.suberror == 1
    assert err.data == (0, 0x1000, 0, 0, 0, 0)
    assert log.register_dumps[0].rip == 0xFED00000


def test_triple_fault_stderr_has_no_errors() -> None:
    log = _log("triple-fault-kvm.stderr.log")
    assert log.internal_errors == () and log.register_dumps == ()


def test_mail_wrapped_agrees_with_original() -> None:
    original = _log("emulation-failure-kvm.stderr.log")
    mangled = _log("synthetic-mail-wrapped.log")
    assert comparable(mangled) == comparable(original)


def test_old_spelling_bare_hex() -> None:
    [err] = _log("synthetic-old-spelling-bare-hex.log").internal_errors
    assert err.suberror == 3
    assert err.data == (0x80000B0E, 0x31, 0, 0xFEE00300)
    assert err.data_style == "bare"
    assert not err.emulation_failure


def test_entry_failure_with_intel_hint() -> None:
    log = _log("synthetic-entry-failure-vmx.log")
    [entry] = log.entry_failures
    assert entry.hardware_error == 0x80000021 and entry.intel_hint
    assert log.internal_errors == ()
    [dump] = log.register_dumps
    assert dump.rip == 0xFFF0 and dump.segments["DS"].limit == 0xFFFFFFFF


def test_two_vcpus_each_error_gets_its_dump() -> None:
    log = _log("synthetic-two-vcpus.log")
    first, second = log.internal_errors
    assert (first.suberror, second.suberror) == (1, 4)
    assert second.data == (0xA5, 3)
    assert (first.register_dump, second.register_dump) == (0, 1)
    assert log.register_dumps[1].rip == 0xFD09A and log.register_dumps[1].width == 32
    assert log.register_dumps[1].code is not None
    assert log.register_dumps[1].code.from_rip()[:2] == b"\xf4\xeb"


def test_cut_off_log_keeps_what_is_there() -> None:
    log = _log("synthetic-cut-off.log")
    [err] = log.internal_errors
    assert err.data == RECORDED_WORDS
    code = log.code
    assert code is not None and code.rip_index == 20
    assert code.from_rip() == bytes.fromhex("660f")
    assert any("cut off" in note for note in log.notes)


def test_run_failed() -> None:
    log = _log("synthetic-run-failed.log")
    assert [r.message for r in log.run_failures] == ["Bad address"]
    assert log.register_dumps[0].rip == 0x7CC5


def test_refused_vcpu_state_is_a_failed_ioctl() -> None:
    """QEMU's words when KVM refuses the state it loads (accel/kvm/kvm-all.c,
    target/i386/kvm/kvm.c), with the program-name prefix error_report adds."""
    text = (
        "qemu-system-aarch64: Failed to put registers after init: Invalid argument\n"
        "qemu: Failed to put registers after reset: No such file or directory\n"
        "qemu-system-x86_64: error: failed to set MSR 0x38D to 0x0\n"
        "qemu-system-x86_64: target/i386/kvm/kvm.c:3838: kvm_buf_set_msrs: Assertion "
        "`ret == cpu->kvm_msr_buf->nmsrs' failed.\n"
    )
    runs = parse_qemu_log(text).run_failures
    assert [(r.what, r.message, r.line) for r in runs] == [
        ("put registers after init", "Invalid argument", 0),
        ("put registers after reset", "No such file or directory", 1),
        ("KVM_SET_MSRS", "MSR 0x38d", 2),
        ("KVM_SET_MSRS", "kvm_buf_set_msrs assertion", 3),
    ]


def test_error_without_suberror_and_gaps() -> None:
    text = "KVM internal error.\nextra data[0]: 5\nextra data[2]: 7\nemulation failure\n"
    log = parse_qemu_log(text)
    [err] = log.internal_errors
    assert err.suberror is None and err.emulation_failure
    assert err.data == (5, 7) and not err.complete
    assert len(log.notes) == 2


def test_stray_lines_are_noted_not_fatal() -> None:
    log = parse_qemu_log(b"extra data[0]: 0x1\nemulation failure\n\xff\xfe garbage\n")
    assert log.internal_errors == ()
    assert len(log.notes) == 2


def test_version_line() -> None:
    log = parse_qemu_log("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n")
    assert log.qemu_version == "7.2.22"


def test_huge_log_is_bounded(tmp_path: Path) -> None:
    block = (LOGS / "emulation-failure-kvm.stderr.log").read_bytes()
    path = tmp_path / "huge.log"
    with path.open("wb") as handle:
        for _ in range(3000):
            handle.write(block)
        handle.write(b"x" * 300_000 + b"\n")  # one absurdly long line
    log = parse_qemu_log_file(path, max_records=5, max_line=4096)
    assert len(log.internal_errors) == 5 and log.internal_errors_total == 3000
    assert len(log.register_dumps) == 5 and log.register_dumps_total == 3000
    assert all(isinstance(e, KvmInternalError) for e in log.internal_errors)
    assert all(e.data == RECORDED_WORDS for e in log.internal_errors)
    assert [e.register_dump for e in log.internal_errors] == [0, 1, 2, 3, 4]
    assert not log.truncated
    limited = parse_qemu_log_file(path, max_bytes=len(block) * 10 + 5, max_records=5)
    assert limited.truncated and limited.internal_errors_total == 10
    assert limited.bytes_read <= len(block) * 10 + 5


def test_other_vmms_entry_and_run_failures() -> None:
    """dosemu2 and libkrun print KVM's exits their own way (fixtures/real/qemu-logs 040, 042)."""
    log = parse_qemu_log(
        "ERROR: KVM_EXIT_FAIL_ENTRY: hardware_entry_failure_reason = 0x80000021\n"
        "ERROR krun_vmm::linux::vstate] Failure during vcpu run: Bad address (os error 14)\n"
    )
    assert [e.hardware_error for e in log.entry_failures] == [0x80000021]
    assert [(r.what, r.message) for r in log.run_failures] == [("KVM_RUN", "Bad address")]


def test_rust_vmm_fail_entry_is_decimal_and_bare_exit_has_no_reason() -> None:
    """rust-vmm's Debug form prints the reason in decimal (cloud-hypervisor, uhyve); kontain
    names the exit alone (fixtures/real/qemu-logs 048, 044, 039)."""
    log = parse_qemu_log(
        "VcpuRun(Failed to run vcpu: Unexpected exit reason on vcpu run: FailEntry(33, 2)\n"
        "This would be `VcpuExitFailEntry { hardware_entry_failure_reason: 7, cpu: 2 }`.\n"
        "km: KVM_EXIT_FAIL_ENTRY\n"
    )
    assert [e.hardware_error for e in log.entry_failures] == [33, 7, None]


def test_traced_shutdown_and_joined_dump() -> None:
    """QEMU's kvm_run_exit trace names KVM_EXIT_SHUTDOWN (8); a register dump joined onto the
    failure's line is not part of its message (fixtures/real/qemu-logs 050, 047)."""
    log = parse_qemu_log(
        "15268@1647341556.924605:kvm_run_exit cpu_index 0, reason 2\n"
        "15268@1647341556.928341:kvm_run_exit cpu_index 1, reason 8\n"
        "error: kvm run failed Invalid argument EAX=00000000 EBX=00000000 ECX=00000000\n"
    )
    assert [(s.vcpu, s.line) for s in log.shutdowns] == [(1, 1)]
    assert [r.message for r in log.run_failures] == ["Invalid argument"]


def test_dump_joined_onto_a_message_is_read() -> None:
    """A paste that lost its line breaks: the message is read, then the dump from its first
    register on, for any message (fixtures/real/qemu-logs 047)."""
    joined = (
        "EAX=00000000 EBX=00000000 EIP=0000fff0 EFL=00000002 CS =f000 ffff0000 0000ffff 00009b00"
    )
    for head in ("error: kvm run failed Invalid argument", "KVM: entry failed, hardware error 0x7"):
        log = parse_qemu_log(f"{head} {joined}\n")
        assert len(log.run_failures) + len(log.entry_failures) == 1
        assert [(d.rip, d.segments["CS"].selector) for d in log.register_dumps] == [
            (0xFFF0, 0xF000)
        ]
        assert log.register_dump_lines == ((0, 0),)


def test_registers_qemu_could_not_read_are_a_refused_ioctl() -> None:
    """QEMU's do_kvm_cpu_synchronize_state(): 'Failed to get registers' (fixtures/real
    qemu-logs 051), like the state it could not put."""
    log = parse_qemu_log(
        "qemu-system-x86_64: Failed to get registers: Input/output error\n"
        "qemu-system-x86_64: Failed to put registers after reset: Invalid argument\n"
    )
    assert [(r.what, r.message) for r in log.run_failures] == [
        ("get registers", "Input/output error"),
        ("put registers after reset", "Invalid argument"),
    ]


def test_vcpu_kvm_would_not_create_is_a_failed_ioctl() -> None:
    """QEMU's start-up failure when KVM will not create or set up a vCPU, in both of its
    forms (cpus.c before QEMU 5.2, accel/kvm/kvm-all.c since; fixtures/real qemu-logs 055,
    056, 063), and a reporter's closing quote is not part of the strerror."""
    log = parse_qemu_log(
        "qemu-system-aarch64: kvm_init_vcpu failed: Invalid argument\n"
        "2024-01-13T15:24:36.513851Z qemu-system-riscv64: kvm_init_vcpu: kvm_arch_init_vcpu "
        "failed (0): Bad address\n"
        'Error: "qemu-system-x86_64: kvm_init_vcpu: kvm_get_vcpu failed (3): Too many open '
        'files"\n'
        "qemu-system-x86_64: kvm_init_vcpu: KVM_GET_VCPU_MMAP_SIZE failed: Invalid argument\n"
    )
    assert [(r.what, r.message) for r in log.run_failures] == [
        ("init vcpu", "Invalid argument"),
        ("init vcpu", "Bad address"),
        ("init vcpu", "Too many open files"),
        ("init vcpu", "Invalid argument"),
    ]


def test_libvirt_disk_error_line_is_recorded() -> None:
    """libvirt's domain-log record of QEMU's BLOCK_IO_ERROR (fixtures/real qemu-logs 059),
    and the lines around it that say nothing failed: QEMU's SIGTERM from libvirtd, libvirt's
    shutdown line."""
    log = parse_qemu_log(
        "2026-04-27 15:13:00.598+0000: IO error device='sata0-0-0' "
        "node-name='libvirt-2-format' reason='No space left on device'\n"
        "2026-04-27T15:16:36.138757Z qemu-system-x86_64: terminating on signal 15 from pid "
        "55567 (/usr/bin/libvirtd)\n"
        "2026-04-27 15:16:36.338+0000: shutting down, reason=destroyed\n"
        "IO error device='virtio-disk0' reason='Input/output error'\n"
    )
    assert [(e.device, e.node, e.reason, e.line) for e in log.io_errors] == [
        ("sata0-0-0", "libvirt-2-format", "No space left on device", 0),
        ("virtio-disk0", None, "Input/output error", 3),
    ]
    assert not (log.run_failures or log.entry_failures or log.internal_errors)
