"""The kvm-exit and instruction analyzers on text: recorded and synthetic QEMU logs, mtree.

Text-only analysis goes through ``gather``/``analyze`` exactly as ``kvmha-forensics analyze
--qemu-log FILE`` does, so the report JSON checked here is the command's.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvmha_forensics.analysis import Context, Inputs
from kvmha_forensics.analyze import analyze, gather
from kvmha_forensics.analyzers.instruction import Instruction
from kvmha_forensics.analyzers.kvm_exit import KvmExit
from kvmha_forensics.sources.mtree import parse_mtree
from kvmha_forensics.vocabulary import Vendor
from tests import schemas

LOGS = Path(__file__).resolve().parents[2] / "fixtures" / "logs"
MTREE = LOGS / "mtree-emulation-failure-kvm.txt"
PXOR = "pxor xmm0, xmmword ptr [rax]"
EMULATION = "KVM_INTERNAL_ERROR_EMULATION"


def report(log: Path, vendor: Vendor | None = None) -> dict[str, Any]:
    inputs, problems = gather(None, qemu_log=log, cpu_vendor=vendor)
    doc: dict[str, Any] = json.loads(json.dumps(analyze(inputs, problems).to_json()))
    schemas.check_report(doc)
    return doc


def facts(doc: dict[str, Any], name: str) -> dict[str, Any]:
    (result,) = [a for a in doc["analyzers"] if a["name"] == name]
    assert result["status"] == "ok", result["reason"]
    return result["facts"]  # type: ignore[no-any-return]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# file, verdict cause, suberror name, instruction text, CPU mode
CASES = [
    ("emulation-failure-kvm.stderr.log", "kvm-emulation-failure", EMULATION, PXOR, "long-64"),
    ("emulation-failure-kvm-smp2.stderr.log", "kvm-emulation-failure", EMULATION, PXOR, "long-64"),
    ("mmio-fetch-kvm.stderr.log", "kvm-emulation-failure", EMULATION, None, "long-64"),
    ("synthetic-cut-off.log", "kvm-emulation-failure", EMULATION, PXOR, "long-64"),
    ("synthetic-mail-wrapped.log", "kvm-emulation-failure", EMULATION, PXOR, "long-64"),
    ("synthetic-two-vcpus.log", "kvm-emulation-failure", EMULATION, PXOR, "long-64"),
    ("synthetic-vmx-emulation-failure.log", "kvm-emulation-failure", EMULATION, PXOR, "long-64"),
    (
        "synthetic-old-spelling-bare-hex.log",
        "kvm-internal-error",
        "KVM_INTERNAL_ERROR_DELIVERY_EV",
        PXOR,
        "long-64",
    ),
    ("synthetic-run-failed.log", "kvm-internal-error", None, PXOR, "long-64"),
    ("synthetic-entry-failure-vmx.log", "kvm-entry-failure", None, "pxor xmm0, xmm1", "real"),
]


@pytest.mark.parametrize(("name", "cause", "suberror", "text", "mode"), CASES)
def test_text_only_log_decodes(
    name: str, cause: str, suberror: str | None, text: str | None, mode: str
) -> None:
    doc = report(LOGS / name)
    assert doc["verdict"]["cause"] == cause
    assert doc["target"]["kind"] == "text"
    exit_facts = facts(doc, "kvm-exit")
    assert (exit_facts["suberror"] or {}).get("name") == suberror
    insn = facts(doc, "instruction")
    assert insn["text"] == text
    assert insn["cpu_mode"] == mode
    assert insn["mnemonic"] == (text.split()[0] if text else None)
    signature = doc["verdict"]["signature"]
    assert not re.search(r"0x[0-9a-f]{5,}(?!\d)", signature.replace("0x80000021", ""))


def test_emulation_failure_summary_names_instruction_and_probable_device() -> None:
    verdict = report(LOGS / "emulation-failure-kvm.stderr.log")["verdict"]
    assert verdict["analyzer"] == "instruction"
    assert verdict["culprit"] == PXOR
    assert (
        verdict["signature"]
        == "kvm-emulation-failure: pxor xmm, m128 (SSE) on MMIO hpet in long-64"
    )
    assert verdict["summary"].startswith(f"KVM could not emulate `{PXOR}` (SSE load) against ")
    # no mtree: the HPET is only "probably", and the words say why
    assert "probably hpet" in verdict["summary"]
    assert "no memory map" in verdict["summary"]


def test_mmio_fetch_text_only_is_a_fetch_from_non_ram() -> None:
    doc = report(LOGS / "mmio-fetch-kvm.stderr.log")
    insn = facts(doc, "instruction")
    assert insn["classification"] == "fetch-from-non-ram"
    assert insn["fetch_from_non_ram"] is True
    assert "??" in insn["fetch_evidence"]
    assert insn["target"]["source"] == "well-known"
    assert (
        doc["verdict"]["signature"]
        == "kvm-emulation-failure: instruction fetch from MMIO hpet in long-64"
    )
    assert doc["verdict"]["culprit"] == "hpet (probably)"
    assert "fetched instructions from 0xfed00000" in doc["verdict"]["summary"]


def test_emulation_words_are_decoded_with_layout() -> None:
    exit_facts = facts(report(LOGS / "emulation-failure-kvm.stderr.log"), "kvm-exit")
    (err,) = exit_facts["internal_errors"]
    assert err["line"] == 2
    assert err["instruction_bytes"].startswith("66 0f ef 00")
    assert [w["field"] for w in err["words"]] == [
        "flags",
        "insn_lo",
        "insn_hi",
        "exit_reason",
        "exit_info1",
        "exit_info2",
        "exit_intr_info",
        "exit_error",
    ]
    assert err["words"][1]["value"] == "0xfdebf400ef0f660f"
    assert exit_facts["exit_reason"]["value"] == "0x1000"


def test_vendor_unknown_is_said_not_guessed() -> None:
    doc = report(LOGS / "synthetic-vmx-emulation-failure.log")
    exit_facts = facts(doc, "kvm-exit")
    assert exit_facts["vendor"] is None
    assert exit_facts["exit_reason"]["text"].startswith("vendor unknown")
    assert "EPT_MISCONFIG" in exit_facts["exit_reason"]["text"]  # both readings given
    assert any(
        "--cpu-vendor" in n
        for n in next(a["notes"] for a in doc["analyzers"] if a["name"] == "kvm-exit")
    )


@pytest.mark.parametrize(
    ("vendor", "reason", "name"),
    [("intel", "0x31", "EPT_MISCONFIG"), ("amd", "0x400", "NPF")],
)
def test_cpu_vendor_names_exit_reason(
    tmp_path: Path, vendor: Vendor, reason: str, name: str
) -> None:
    text = (LOGS / "synthetic-vmx-emulation-failure.log").read_text()
    log = write(
        tmp_path,
        "log",
        text.replace(
            "extra data[3]: 0x0000000000000031", f"extra data[3]: {int(reason, 16):#018x}"
        ),
    )
    exit_facts = facts(report(log, vendor), "kvm-exit")
    assert exit_facts["vendor"] == vendor
    assert exit_facts["exit_reason"]["value"] == reason
    assert exit_facts["exit_reason"]["text"].startswith(name)
    assert "vendor unknown" not in json.dumps(exit_facts)


def test_entry_failure_vendor_from_intel_hint_or_unknown(tmp_path: Path) -> None:
    doc = report(LOGS / "synthetic-entry-failure-vmx.log")
    exit_facts = facts(doc, "kvm-exit")
    assert exit_facts["vendor"] == "intel"
    assert exit_facts["vendor_source"] == "qemu-intel-hint"
    assert exit_facts["entry_failures"][0]["name"] == "INVALID_STATE"
    assert doc["verdict"]["signature"] == "kvm-entry-failure: hardware error 0x80000021 in real"
    text = (LOGS / "synthetic-entry-failure-vmx.log").read_text()
    bare = write(
        tmp_path, "bare.log", re.sub(r"If you're running.*?real mode\n.*?\n", "", text, flags=re.S)
    )
    unknown = report(bare)
    entry = facts(unknown, "kvm-exit")["entry_failures"][0]
    assert entry["intel_hint"] is False
    assert entry["meaning"] == "vendor unknown"
    assert "vendor unknown" in unknown["verdict"]["summary"]
    assert entry["alternatives"][0].startswith("Intel: INVALID_STATE")
    amd = facts(report(bare, "amd"), "kvm-exit")["entry_failures"][0]
    assert amd["vendor"] == "amd" and "SVM" in amd["meaning"]


def test_two_vcpus_all_errors_listed_first_one_decides() -> None:
    exit_facts = facts(report(LOGS / "synthetic-two-vcpus.log"), "kvm-exit")
    names = [e["name"] for e in exit_facts["internal_errors"]]
    assert names == [EMULATION, "KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON"]
    assert exit_facts["suberror"]["number"] == 1


def test_delivery_event_signature_carries_exit_reason_not_vendor() -> None:
    unknown = report(LOGS / "synthetic-old-spelling-bare-hex.log")["verdict"]
    intel = report(LOGS / "synthetic-old-spelling-bare-hex.log", "intel")["verdict"]
    expected = (
        "kvm-internal-error: KVM_INTERNAL_ERROR_DELIVERY_EV exit 0x31 delivering #PF "
        "GPA in LAPIC in long-64"
    )
    assert unknown["signature"] == intel["signature"] == expected
    assert "#PF" in intel["summary"] and "EPT_MISCONFIG" in intel["summary"]


def test_log_without_kvm_failure_gives_no_finding() -> None:
    doc = report(LOGS / "triple-fault-kvm.stderr.log")
    assert doc["verdict"]["cause"] == "unknown"
    assert facts(doc, "kvm-exit")["failure"] is None


def context(log: Path, mtree: Path | None = None, vendor: Vendor | None = None) -> Context:
    files = {"qemu-log": log} | ({"mtree": mtree} if mtree else {})
    return Context(Inputs("test", "text", files, cpu_vendor=vendor))


def test_mtree_names_the_region_for_sure() -> None:
    ctx = context(LOGS / "emulation-failure-kvm.stderr.log", MTREE)
    (finding,) = Instruction().run(ctx).findings
    assert finding.summary == (
        f"KVM could not emulate `{PXOR}` (SSE load) against MMIO 0xfed00000 (hpet)."
    )
    assert (
        finding.signature == "kvm-emulation-failure: pxor xmm, m128 (SSE) on MMIO hpet in long-64"
    )
    assert ("mtree.txt", "0xfed00000-0xfed003ff") in [
        (e.artifact, e.locator) for e in finding.evidence
    ]


def test_mtree_fetch_and_unassigned(tmp_path: Path) -> None:
    ctx = context(LOGS / "mmio-fetch-kvm.stderr.log", MTREE)
    (finding,) = Instruction().run(ctx).findings
    assert finding.summary.endswith("fetched instructions from MMIO 0xfed00000 (hpet).")
    assert finding.culprit == "hpet"
    no_hpet = write(
        tmp_path,
        "mtree.txt",
        "\n".join(x for x in MTREE.read_text().splitlines() if "hpet" not in x),
    )
    ctx = context(LOGS / "emulation-failure-kvm.stderr.log", no_hpet)
    (finding,) = Instruction().run(ctx).findings
    assert (
        finding.signature
        == "kvm-emulation-failure: pxor xmm, m128 (SSE) on unassigned memory in long-64"
    )


def test_text_and_mtree_agree_on_signature() -> None:
    text_only = Instruction().run(context(LOGS / "emulation-failure-kvm.stderr.log"))
    with_map = Instruction().run(context(LOGS / "emulation-failure-kvm.stderr.log", MTREE))
    assert text_only.findings[0].signature == with_map.findings[0].signature
    assert (
        text_only.findings[0].confidence
        > KvmExit().run(context(LOGS / "emulation-failure-kvm.stderr.log")).findings[0].confidence
    )


def test_unknown_address_is_not_guessed(tmp_path: Path) -> None:
    text = (LOGS / "emulation-failure-kvm.stderr.log").read_text()
    log = write(tmp_path, "log", text.replace("RAX=00000000fed00000", "RAX=00000000e0001000"))
    insn = Instruction().run(context(log)).facts
    assert insn["target"] == {
        "address": "0xe0001000",
        "source": None,
        "kind": None,
        "name": None,
        "mmio": None,
        "translation": "linear (paging on, no page-table walk): looked up as if identity-mapped",
        "range": None,
    }
    (finding,) = Instruction().run(context(log)).findings
    assert finding.signature.endswith("on unknown region in long-64")
    assert "region unknown" in finding.summary


def test_parse_recorded_mtree() -> None:
    mmap = parse_mtree(MTREE.read_text())
    assert mmap.skipped_lines == 0 and not mmap.hierarchical
    view = mmap.view("memory")
    assert view is not None and view.address_spaces == ("memory", "cpu-memory-0")
    hpet = mmap.region_at(0xFED00000)
    assert hpet is not None
    assert (hpet.start, hpet.end, hpet.kind, hpet.name, hpet.priority) == (
        0xFED00000,
        0xFED003FF,
        "i/o",
        "hpet",
        0,
    )
    assert mmap.region_at(0xFED003FF) == hpet  # end is inclusive
    assert mmap.region_at(0xFED00400) is None  # unassigned gap
    ram = mmap.region_at(0x7CC5)
    assert ram is not None and ram.is_memory and ram.name == "pc.ram" and ram.accel == "KVM"
    rom = mmap.region_at(0xC3000)
    assert rom is not None and (rom.kind, rom.offset) == ("rom", 0xC3000)
    apic = mmap.region_at(0xFEE00000)
    assert apic is not None and (apic.name, apic.priority) == ("kvm-apic-msi", 4096)
    serial = mmap.region_at(0x3F8, "I/O")
    assert serial is not None and serial.name == "serial"
    assert mmap.region_at(0x0, "no-such-space") is None


def test_parse_mtree_variants() -> None:
    text = (
        'FlatView #0\n AS "memory", root: system\n'
        "  00000000fd000000-00000000fdffffff (prio 1, ramd): 0000:01:00.0 BAR 0 mmaps[0]"
        " @0000000000001000 KVM owner:{dev id=gpu}\n"
        "  0000000000000000-000000000009ffff (prio 0, nv-ram): pc.ram\n"
        "  0000000000100000-000000000000ffff (prio 0, ram): backwards\n"
        "garbage line\n"
        "address-space: memory\n  0000000000000000-ffffffffffffffff (prio 0, i/o): system\n"
    )
    mmap = parse_mtree(text)
    assert mmap.hierarchical
    bar = mmap.region_at(0xFD000010)
    assert bar is not None
    assert (bar.name, bar.kind, bar.offset, bar.accel) == (
        "0000:01:00.0 BAR 0 mmaps[0]",
        "ramd",
        0x1000,
        "KVM",
    )
    low = mmap.region_at(0x10)
    assert low is not None and low.nonvolatile and low.kind == "ram"
    assert mmap.skipped_lines == 3  # the backwards range, the garbage, the tree's range


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(
        st.text(),
        st.lists(
            st.sampled_from(
                (LOGS / "emulation-failure-kvm.stderr.log").read_text().splitlines()
                + (LOGS / "synthetic-two-vcpus.log").read_text().splitlines()
                + (LOGS / "synthetic-entry-failure-vmx.log").read_text().splitlines()
                + ["error: kvm run failed", "Code=<??", "extra data[0]: zz"]
            )
        ).map("\n".join),
    ),
    st.sampled_from([None, "intel", "amd"]),
    st.booleans(),
)
def test_analyzers_never_raise_on_arbitrary_logs(
    text: str, vendor: Vendor | None, with_mtree: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = write(Path(tmp), "log", text)
        ctx = context(log, MTREE if with_mtree else None, vendor)
        for analyzer in (KvmExit(), Instruction()):
            outcome = analyzer.run(ctx)
            json.dumps(dict(outcome.facts))
            for finding in outcome.findings:
                assert finding.cause in (
                    "kvm-emulation-failure",
                    "kvm-internal-error",
                    "kvm-entry-failure",
                )


@given(st.text())
def test_parse_mtree_never_raises(text: str) -> None:
    parse_mtree(text)


@pytest.mark.parametrize(
    ("reason", "cause"),
    [("No space left on device", "storage-nospace"), ("Input/output error", "storage-io-error")],
)
def test_domain_log_disk_error_names_the_disk(tmp_path: Path, reason: str, cause: str) -> None:
    """A pasted libvirt domain log has no capture: its ``IO error`` line names the disk."""
    log = write(
        tmp_path,
        "guest.log",
        "char device redirected to /dev/pts/0 (label charserial0)\n"
        f"2026-04-27 15:13:00.598+0000: IO error device='sata0-0-0' "
        f"node-name='libvirt-2-format' reason='{reason}'\n"
        "2026-04-27 15:16:36.338+0000: shutting down, reason=destroyed\n",
    )
    verdict = report(log)["verdict"]
    assert (verdict["cause"], verdict["culprit"]) == (cause, "disk libvirt-2-format")
    assert verdict["evidence"][0]["artifact"] == "guest.log"
    # libvirt logs the event whatever QEMU's error policy did: the line proves no pause
    assert "paused the guest" not in verdict["summary"] and "domain log" in verdict["summary"]


def test_benign_domain_log_gives_no_finding(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        "guest.log",
        "char device redirected to /dev/pts/0 (label charserial0)\n"
        "2026-04-27T15:16:36.138757Z qemu-system-x86_64: terminating on signal 15 from pid "
        "55567 (/usr/bin/libvirtd)\n"
        "2026-04-27 15:16:36.338+0000: shutting down, reason=destroyed\n",
    )
    doc = report(log)
    assert doc["verdict"]["cause"] == "unknown"
    assert facts(doc, "storage")["disk_errors"] == []
