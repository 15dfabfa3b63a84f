"""kvmha_forensics.sources.registers on recorded HMP `info registers -a` output and stderr dumps."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmha_forensics.sources.registers import VcpuRegisters, parse_register_dumps

LOGS = Path(__file__).resolve().parents[2] / "fixtures" / "logs"


def _dumps(name: str) -> list[VcpuRegisters]:
    return parse_register_dumps((LOGS / name).read_text())


def test_long_mode_dump_values() -> None:
    [regs] = _dumps("emulation-failure-kvm.info-registers.txt")
    assert regs.cpu == 0
    assert regs.width == 64
    assert regs.gprs["rax"] == 0xFED00000
    assert regs.gprs["rcx"] == 0xC0000080
    assert regs.gprs["rdi"] == 0x5000
    assert regs.gprs["rsp"] == 0x7C00
    assert regs.gprs["r8"] == 0 and regs.gprs["r15"] == 0
    assert len(regs.gprs) == 16
    assert regs.rip == 0x7CC5
    assert regs.rflags == 0x82
    assert regs.cpl == 0 and regs.hlt is False and regs.smm is False and regs.a20 is True
    cs = regs.segments["CS"]
    assert (cs.selector, cs.base, cs.limit, cs.flags) == (8, 0, 0xFFFFFFFF, 0x00A09B00)
    assert cs.dpl == 0 and cs.kind == "CS64" and cs.long_mode and not cs.default_big
    assert regs.segments["TR"].kind == "TSS64-busy"
    assert regs.segments["LDT"].kind == "LDT"
    assert regs.cr == {0: 0x80000013, 2: 0, 3: 0x1000, 4: 0x620}
    assert regs.efer == 0x500
    assert regs.gdt is not None and (regs.gdt.base, regs.gdt.limit) == (0x7C98, 0x17)
    assert regs.idt is not None and (regs.idt.base, regs.idt.limit) == (0, 0x3FF)
    assert regs.dr[7] == 0x400 and regs.dr[6] == 0xFFFF0FF0
    assert regs.fpu["mxcsr"] == 0x1F80 and regs.fpu["fcw"] == 0x37F
    assert regs.vector_regs["xmm15"] == (0, 0)
    assert regs.vector_regs["fpr7"] == (0, 0)
    assert regs.code is None


def test_gpr_aliases_slice_the_full_register() -> None:
    [regs] = _dumps("emulation-failure-kvm.info-registers.txt")
    assert regs.gpr("eax") == 0xFED00000
    assert regs.gpr("ax") == 0
    assert regs.gpr("ecx") == 0xC0000080
    assert regs.gpr("cx") == 0x0080
    assert regs.gpr("cl") == 0x80 and regs.gpr("ch") == 0
    assert regs.gpr("di") == 0x5000 and regs.gpr("dil") == 0
    assert regs.gpr("r8d") == 0
    assert regs.gpr("rip") == 0x7CC5 and regs.gpr("ip") == 0x7CC5
    assert regs.gpr("xmm0") is None


def test_32bit_gpr_does_not_invent_upper_half() -> None:
    [regs] = _dumps("triple-fault-kvm.info-registers.txt")
    assert regs.gpr("eax") == 0x10
    assert regs.gpr("rax") is None


def test_several_vcpus_with_headers() -> None:
    cpu0, cpu1 = _dumps("emulation-failure-kvm-smp2.info-registers.txt")
    assert (cpu0.cpu, cpu1.cpu) == (0, 1)
    assert cpu0.width == 64 and cpu1.width == 32
    assert cpu1.rip == 0xFD09A and cpu1.hlt is True
    assert cpu1.gprs["eax"] == 0x000F49F6 and cpu1.gprs["esp"] == 0x6C5C
    assert cpu1.segments["CS"].kind == "CS32" and cpu1.segments["CS"].default_big
    assert cpu1.idt is not None and (cpu1.idt.base, cpu1.idt.limit) == (0xF61BE, 0)
    assert "xmm08" not in cpu1.vector_regs and "xmm07" in cpu1.vector_regs


def test_real_mode_dump_without_segment_suffixes() -> None:
    for name in ("prelaunch-kvm.info-registers.txt", "prelaunch-tcg.info-registers.txt"):
        [regs] = _dumps(name)
        assert regs.rip == 0xFFF0
        cs = regs.segments["CS"]
        assert (cs.selector, cs.base, cs.limit) == (0xF000, 0xFFFF0000, 0xFFFF)
        assert cs.dpl is None and cs.kind is None
        assert regs.cr[0] == 0x60000010
        assert regs.gprs["edx"] == 0x00060FB1


@pytest.mark.parametrize(
    ("name", "rflags"),
    [("triple-fault-kvm.info-registers.txt", 0x10006), ("triple-fault-tcg.info-registers.txt", 6)],
)
def test_triple_fault_dumps(name: str, rflags: int) -> None:
    [regs] = _dumps(name)
    assert regs.rip == 0x7C2D
    assert regs.rflags == rflags
    assert regs.idt is not None and regs.idt.limit == 0
    assert regs.segments["FS"].kind == "DS16"


def test_stderr_dump_has_code_bytes() -> None:
    [regs] = _dumps("emulation-failure-kvm.stderr.log")
    assert regs.cpu is None
    assert regs.code is not None
    assert len(regs.code.values) == 50
    assert regs.code.rip_index == 20
    assert regs.code.from_rip()[:4] == bytes.fromhex("660fef00")
    assert regs.code.values[:3] == (0x00, 0x98, 0x7C)


def test_unreadable_code_bytes() -> None:
    [regs] = _dumps("mmio-fetch-kvm.stderr.log")
    assert regs.rip == 0xFED00000
    assert regs.code is not None
    assert regs.code.values == (None,) * 50
    assert regs.code.rip_index == 20 and not regs.code.rip_readable
    assert regs.code.from_rip() == b""


def test_partial_dump_gives_partial_record() -> None:
    [regs] = parse_register_dumps("RAX=0000000000000001 RBX=0000000000000002\nRIP=00000000000")
    assert regs.gprs == {"rax": 1, "rbx": 2}
    assert regs.rip is None
    assert regs.segments == {} and regs.efer is None


def test_no_dump_in_plain_text() -> None:
    assert parse_register_dumps("hello world\nfoo=bar CR=1 [x]") == []


REAL = Path(__file__).resolve().parents[2] / "fixtures" / "real" / "qemu-logs"


def test_old_qemu_kvm_dump_wrapped_as_posted() -> None:
    """qemu-kvm 0.12's ``kvm_show_regs()`` layout (RHEL 6), lines wrapped by the reporter:
    the same values and descriptor flags as the modern dump would carry."""
    (dump,) = parse_register_dumps(
        (REAL / "014-osv-qemu-kvm-0.12-simul-ex-old-dump.log").read_text()
    )
    assert dump.gpr("rdx") == 0x6A3C8A and dump.gpr("r15") == 0x40
    assert dump.rip == 0x3D721C and dump.rflags == 0x6
    cs = dump.segments["CS"]
    assert (cs.selector, cs.base, cs.limit, cs.dpl) == (8, 0, 0xFFFFFFFF, 0)
    assert cs.flags == 0x00A09B00 and cs.long_mode  # as "CS =0008 ... 00a09b00 CS64"
    assert dump.segments["TR"].flags == 0x00008B00
    assert dump.cr == {0: 0x80010011, 2: 0, 3: 0xEAE000, 4: 0x7B8, 8: 0}
    assert dump.efer == 0xD00 and dump.gdt is not None and dump.gdt.limit == 0x1F


def test_old_names_in_prose_are_not_a_dump() -> None:
    assert parse_register_dumps("the rip 0x10 and cs ok (fine)\nrax is zero\n") == []
