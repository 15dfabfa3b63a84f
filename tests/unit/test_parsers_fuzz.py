"""Property tests: the parsers never raise, and mangled logs parse like the originals.

Agreement in the manner of syzkaller ``pkg/report/fuzz.go``: a recorded log re-wrapped by a
mail client, tab-indented, or with a ``(qemu)`` prompt glued on must give the same records.
"""

from __future__ import annotations

import io
import textwrap

from hypothesis import given, settings
from hypothesis import strategies as st

from kvmha_forensics.sources.elfcore import ElfError, read_core
from kvmha_forensics.sources.qemu_log import parse_qemu_log
from kvmha_forensics.sources.registers import parse_register_dumps
from kvmha_forensics.x86.decode import decode_internal_error
from kvmha_forensics.x86.disasm import decode_faulting_instruction
from kvmha_forensics.x86.modes import mode_of
from tests.unit.qemu_logs import LOGS, comparable

RECORDED = [
    (LOGS / name).read_text()
    for name in (
        "emulation-failure-kvm.stderr.log",
        "mmio-fetch-kvm.stderr.log",
        "emulation-failure-kvm-smp2.info-registers.txt",
        "triple-fault-kvm.info-registers.txt",
        "prelaunch-tcg.info-registers.txt",
        "synthetic-two-vcpus.log",
        "synthetic-old-spelling-bare-hex.log",
        "synthetic-entry-failure-vmx.log",
    )
]
NOISE = (
    "qemu-system-x86_64: warning: TSC frequency mismatch between VM and host",
    "[   12.345678] guest: random: crng init done",
    "",
)
TOKENS = st.sampled_from(
    [
        "RAX=", "EAX=", "RIP=", "ES =", "CS", "=0008", "DPL=0", "CS64", "[-WA]", "GDT=",
        "Code=", "<66>", "??", "<??>", "00", "ffffffff", "0000000000000000", "CPU#1",
        "KVM internal error. Suberror: 1", "extra data[0]: 0x1", "emulation failure",
        "KVM: entry failed, hardware error 0x80000021", "kvm run failed x", "XMM00=",
        "(qemu) ", "\t", " ", "\n", "R8", "=", "EFER=", "CR0=", "0x", "[ST=0]",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_never_raises_on_text(text: str) -> None:
    log = parse_qemu_log(text)
    parse_register_dumps(text)
    for err in log.internal_errors:
        decode_internal_error(err, None)
        decode_internal_error(err, "intel")
    for dump in log.register_dumps:
        decode_faulting_instruction(dump.code, mode_of(dump), registers=dump)


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, max_size=200).map("".join))
def test_never_raises_on_token_soup(text: str) -> None:
    log = parse_qemu_log(text)
    for err in log.internal_errors:
        decode_internal_error(err, "amd")
    for dump in log.register_dumps:
        decode_faulting_instruction(dump.code, mode_of(dump), registers=dump)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_never_raises_on_bytes(data: bytes) -> None:
    parse_qemu_log(data)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(RECORDED), st.integers(min_value=0, max_value=3000))
def test_truncation_never_raises(text: str, cut: int) -> None:
    log = parse_qemu_log(text[:cut])
    assert len(log.register_dumps) <= len(parse_qemu_log(text).register_dumps) + 1


def _mangle(text: str, width: int, tabs: list[bool], prompts: list[bool], noise: list[int]) -> str:
    out: list[str] = []
    for number, line in enumerate(text.splitlines()):
        if noise and noise[number % len(noise)] < len(NOISE):
            out.append(NOISE[noise[number % len(noise)]])
        pieces = textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False)
        for piece_number, piece in enumerate(pieces or [""]):
            if tabs and tabs[(number + piece_number) % len(tabs)]:
                piece = "\t" + piece.replace(" ", "\t", 1)
            if prompts and prompts[(number + piece_number) % len(prompts)]:
                piece = "(qemu) " + piece
            out.append(piece)
    return "\n".join(out) + "\n"


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(RECORDED),
    st.integers(min_value=40, max_value=100),
    st.lists(st.booleans(), max_size=7),
    st.lists(st.booleans(), max_size=5),
    st.lists(st.integers(min_value=0, max_value=12), max_size=6),
)
def test_mangled_logs_agree(
    text: str, width: int, tabs: list[bool], prompts: list[bool], noise: list[int]
) -> None:
    original = parse_qemu_log(text)
    mangled = parse_qemu_log(_mangle(text, width, tabs, prompts, noise))
    assert comparable(mangled) == comparable(original)


def test_wrap_at_72_agrees_exactly() -> None:
    text = (LOGS / "emulation-failure-kvm.stderr.log").read_text()
    mangled = _mangle(text, 72, [False], [True, False], [])
    assert mangled != text
    original = parse_qemu_log(text)
    assert comparable(parse_qemu_log(mangled)) == comparable(original)
    assert original.register_dumps[0].code is not None


ELF64_CORE_HEAD = bytes.fromhex("7f454c46020101000000000000000000") + (4).to_bytes(2, "little")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512), st.sampled_from([b"", b"\x7fELF", ELF64_CORE_HEAD]))
def test_elfcore_reads_or_refuses_any_bytes(tail: bytes, head: bytes) -> None:
    f = io.BytesIO(head + tail)
    try:
        core = read_core(f)
    except ElfError:
        return
    for note in core.notes(f):
        assert isinstance(note.desc, bytes)
