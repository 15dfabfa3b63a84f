"""Parse x86 register dumps as printed by QEMU's ``x86_cpu_dump_state()``.

The same dump appears in HMP ``info registers [-a]`` (one block per vCPU, each after a
``CPU#N`` header) and on QEMU's stderr after a KVM internal error (no header, with a
``Code=`` line). Format strings: QEMU ``target/i386/cpu-dump.c``. 64-bit dumps (``RAX=``,
when CS.L is set) and 32-bit/16-bit ones (``EAX=``); real-mode dumps carry no ``DPL=``
suffix on segment lines.

The parser works on a token stream, not on lines, so that dumps re-wrapped by mail clients
(at spaces), indented with tabs, or with a ``(qemu)`` prompt glued on parse to the same
values. It never raises on arbitrary text: unknown tokens are skipped, partial dumps give
partial records.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

__all__ = [
    "CodeBytes",
    "DescriptorTable",
    "DumpBuilder",
    "Segment",
    "VcpuRegisters",
    "parse_register_dumps",
]

#: QEMU prints this many bytes on the ``Code=`` line (DUMP_CODE_BYTES_TOTAL).
CODE_BYTES_TOTAL = 50
_MAX_RAW_LINES = 200

# Sets: each token of a dump is looked up in several of them.
_SEGMENT_NAMES = frozenset(("ES", "CS", "SS", "DS", "FS", "GS", "LDT", "TR"))
_GPR64 = frozenset(
    ("RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "RSP", *(f"R{i}" for i in range(8, 32)))
)
_GPR32 = frozenset(("EAX", "EBX", "ECX", "EDX", "ESI", "EDI", "EBP", "ESP"))
_FLAG_FIELDS = {"CPL": "cpl", "II": "inhibit_irq", "A20": "a20", "SMM": "smm", "HLT": "hlt"}
_CR_KEYS = {f"CR{n}": n for n in (0, 2, 3, 4, 8)}
_DR_KEYS = {f"DR{n}": n for n in (0, 1, 2, 3, 6, 7)}
_FPU_KEYS = frozenset(("FCW", "FSW", "FTW", "MXCSR"))
_CC_KEYS = frozenset(("CCS", "CCD"))
# Keys whose value is the following N whitespace-separated hex words.
_MULTI_PREFIXES = {"XMM": 2, "YMM": 4, "ZMM": 8, "FPR": 2}

_KEY_VALUE = re.compile(r"^([A-Za-z][A-Za-z0-9]*)=(.*)$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_CODE_BYTE = re.compile(r"^(<)?([0-9a-fA-F]{2}|\?\?)(>)?$")
_CPU_HEADER = re.compile(r"^CPU#(\d+)$")
_MULTI_KEY = re.compile(r"^(XMM|YMM|ZMM|FPR)(\d{1,2})$")
_OPMASK_KEY = re.compile(r"^Opmask(\d{2})$")
_PROMPT = re.compile(r"\(qemu\)\s?")
# qemu-kvm 0.12-1.x (RHEL 6) ``kvm_show_regs()``: "rax 0000… rbx …", "cs 0008 (00000000/ffffffff
# p 1 dpl 0 db 0 s 1 type b l 1 g 1 avl 0)", "gdt a25000/1f", "cr0 80010011 … efer d00".
_OLD_GPRS = frozenset(
    ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", *(f"r{i}" for i in range(8, 16)))
)
_OLD_SCALARS = frozenset(("rip", "rflags", "cr0", "cr2", "cr3", "cr4", "cr8", "efer"))
_OLD_SEGMENTS = frozenset(("cs", "ds", "es", "ss", "fs", "gs", "tr", "ldt"))
_OLD_TABLE = re.compile(r"^([0-9a-f]+)/([0-9a-f]+)$")
_OLD_NAMES = _OLD_GPRS | _OLD_SCALARS | _OLD_SEGMENTS | {"gdt", "idt"}
#: Names QEMU pads to 3 columns (``R8 =``, ``ES =``, ``TR =``): the value follows after a space.
_PADDED_KEYS = frozenset(("R8", "R9", "ES", "CS", "SS", "DS", "FS", "GS", "TR"))
_OLD_SEG_BITS = {"type": 8, "s": 12, "dpl": 13, "p": 15, "avl": 20, "l": 21, "db": 22, "g": 23}
_OLD_SEG_TOKENS = 18  # selector, "(base/limit", 8 name/value pairs


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment register as QEMU shows it: selector, cached base, limit and flags.

    ``flags`` is QEMU's ``SegmentCache.flags & 0x00ffff00``: the descriptor's high dword
    layout (type at bits 8-11, S 12, DPL 13-14, P 15, AVL 20, L 21, D/B 22, G 23).
    ``kind`` is QEMU's label (``CS64``, ``DS16``, ``TSS64-busy``...) when printed.
    """

    selector: int
    base: int
    limit: int
    flags: int
    dpl: int | None = None
    kind: str | None = None

    @property
    def long_mode(self) -> bool:
        """CS.L: 64-bit code segment."""
        return bool(self.flags & (1 << 21))

    @property
    def default_big(self) -> bool:
        """D/B bit: 32-bit default operand/address size (CS) or stack size (SS)."""
        return bool(self.flags & (1 << 22))


@dataclass(frozen=True, slots=True)
class DescriptorTable:
    """GDTR or IDTR: base and limit."""

    base: int
    limit: int


@dataclass(frozen=True, slots=True)
class CodeBytes:
    """QEMU's ``Code=`` line: bytes around CS.base+RIP, ``None`` where QEMU printed ``??``.

    ``rip_index`` is the position of the byte QEMU marked ``<..>`` (the byte at RIP), or
    ``None`` if the marker was not seen (cut off).
    """

    values: tuple[int | None, ...]
    rip_index: int | None

    def from_rip(self) -> bytes:
        """The readable bytes starting exactly at RIP, up to the first unknown (``??``) one."""
        if self.rip_index is None:
            return b""
        out = bytearray()
        for value in self.values[self.rip_index :]:
            if value is None:
                break
            out.append(value)
        return bytes(out)

    @property
    def rip_readable(self) -> bool:
        """Whether the byte at RIP itself was readable."""
        return self.rip_index is not None and self.values[self.rip_index] is not None


@dataclass(frozen=True, slots=True)
class VcpuRegisters:
    """The register state of one vCPU from one dump. Absent fields are ``None``/empty.

    ``width`` is 64 for a dump printed with 64-bit names (``RAX=``; QEMU does so when CS.L
    is set), 32 for ``EAX=`` dumps (protected, real, compatibility mode).
    ``gprs`` maps lower-case names as printed (``rax``, ``r8`` or ``eax``) to values.
    """

    cpu: int | None
    width: int | None
    gprs: dict[str, int]
    rip: int | None
    rflags: int | None
    segments: dict[str, Segment]
    cr: dict[int, int]
    dr: dict[int, int]
    efer: int | None
    gdt: DescriptorTable | None
    idt: DescriptorTable | None
    cpl: int | None = None
    hlt: bool | None = None
    smm: bool | None = None
    a20: bool | None = None
    inhibit_irq: bool | None = None
    fpu: dict[str, int] = field(default_factory=dict)
    vector_regs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    code: CodeBytes | None = None
    raw: str = ""

    def gpr(self, name: str) -> int | None:
        """Value of a general register by any x86 name (``rax``, ``eax``, ``ax``, ``al``, ``r8d``,
        ``sil``, ``rip``, ``ip``...), sliced from the full register; ``None`` if not in the dump."""
        return _resolve_gpr(self, name.lower())


_IP_WIDTHS = {"rip": 64, "eip": 32, "ip": 16}
_LEGACY = ("a", "b", "c", "d")
_INDEX = ("si", "di", "bp", "sp")


def _resolve_gpr(regs: VcpuRegisters, name: str) -> int | None:
    if name in _IP_WIDTHS:
        bits = _IP_WIDTHS[name]
        return None if regs.rip is None else regs.rip & ((1 << bits) - 1)
    alias = _gpr_alias(name)
    if alias is None:
        return None
    base, bits, shift = alias
    if base.isdigit():
        full = regs.gprs.get("r" + base)
    elif "r" + base in regs.gprs:
        full = regs.gprs["r" + base]
    elif bits <= 32:
        full = regs.gprs.get("e" + base)
    else:
        full = None
    return None if full is None else (full >> shift) & ((1 << bits) - 1)


def _gpr_alias(name: str) -> tuple[str, int, int] | None:
    """(base such as 'ax', 'si' or '8'; width in bits; shift) for an x86 register name."""
    m = re.fullmatch(r"r(\d{1,2})([dwb]?)", name)
    if m:
        return m.group(1), {"": 64, "d": 32, "w": 16, "b": 8}[m.group(2)], 0
    for letter in _LEGACY:
        base = letter + "x"
        table = {"r" + base: 64, "e" + base: 32, base: 16, letter + "l": 8}
        if name in table:
            return base, table[name], 0
        if name == letter + "h":
            return base, 8, 8
    for base in _INDEX:
        table = {"r" + base: 64, "e" + base: 32, base: 16, base + "l": 8}
        if name in table:
            return base, table[name], 0
    return None


@dataclass(slots=True)
class _Draft:
    """Mutable record while tokens arrive."""

    cpu: int | None = None
    width: int | None = None
    gprs: dict[str, int] = field(default_factory=dict)
    rip: int | None = None
    rflags: int | None = None
    segments: dict[str, Segment] = field(default_factory=dict)
    cr: dict[int, int] = field(default_factory=dict)
    dr: dict[int, int] = field(default_factory=dict)
    efer: int | None = None
    gdt: DescriptorTable | None = None
    idt: DescriptorTable | None = None
    flags: dict[str, int] = field(default_factory=dict)
    fpu: dict[str, int] = field(default_factory=dict)
    vector_regs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    code_values: list[int | None] | None = None
    code_rip: int | None = None
    keys: set[str] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)
    first_line: int = -1
    last_line: int = -1

    def freeze(self) -> VcpuRegisters:
        code = None
        if self.code_values is not None:
            code = CodeBytes(tuple(self.code_values), self.code_rip)

        def flag(name: str) -> bool | None:
            return None if name not in self.flags else bool(self.flags[name])

        return VcpuRegisters(
            cpu=self.cpu,
            width=self.width,
            gprs=dict(self.gprs),
            rip=self.rip,
            rflags=self.rflags,
            segments=dict(self.segments),
            cr=dict(self.cr),
            dr=dict(self.dr),
            efer=self.efer,
            gdt=self.gdt,
            idt=self.idt,
            cpl=self.flags.get("cpl"),
            hlt=flag("hlt"),
            smm=flag("smm"),
            a20=flag("a20"),
            inhibit_irq=flag("inhibit_irq"),
            fpu=dict(self.fpu),
            vector_regs=dict(self.vector_regs),
            code=code,
            raw="\n".join(self.lines),
        )


@dataclass(slots=True)
class _Pending:
    """A key waiting for positional values that may arrive on the next (wrapped) line."""

    key: str
    need: int
    values: list[str] = field(default_factory=list)


def _starts_new_record(draft: _Draft, key: str) -> bool:
    if key in draft.keys:
        return True
    if key not in _GPR64 and key not in _GPR32 and key not in ("RIP", "EIP"):
        return False
    if "Code" in draft.keys:
        return True
    wide = key in _GPR64 or key == "RIP"
    return draft.width is not None and wide != (draft.width == 64)


class DumpBuilder:
    """Incremental parser: feed lines (any order of noise), collect ``VcpuRegisters``.

    Used by :func:`parse_register_dumps` and by the streaming QEMU log parser. Bounded:
    at most ``max_records`` records are kept, later ones are only counted.
    """

    def __init__(self, max_records: int = 64) -> None:
        self.records: list[VcpuRegisters] = []
        #: Line spans (first, last) of the kept records, in the same order.
        self.spans: list[tuple[int, int]] = []
        self.total = 0
        self.notes: list[str] = []
        self._max = max_records
        self._draft: _Draft | None = None
        self._pending: _Pending | None = None
        self._held_name: str | None = None
        self._old: tuple[str, list[str]] | None = None
        self._seg_tail: str | None = None
        self._in_code = False
        self._line_no = 0
        self._line = ""

    # -- public -----------------------------------------------------------------------
    def feed(self, line: str, line_no: int) -> None:
        """Consume one line of text (prompt and tabs are tolerated)."""
        self._line_no = line_no
        self._line = line
        if "(qemu)" in line:
            line = _PROMPT.sub(" ", line)
        for token in line.split():
            # Code= bytes (64 a line) take the short way; _token tries the same first.
            quick = self._in_code and self._old is None and self._held_name is None
            if not (quick and self._code_token(token)):
                self._token(token)

    def finish(self) -> None:
        """Close the record in progress: the last one, or one a new block of the log ends
        (e.g. a new ``KVM internal error``)."""
        self._close()

    # -- record management ------------------------------------------------------------------
    def _close(self) -> None:
        self._flush_pending()
        self._in_code = False
        self._seg_tail = None
        self._held_name = None
        self._old = None
        draft, self._draft = self._draft, None
        if draft is None or not draft.keys:
            return
        if draft.code_values is not None and len(draft.code_values) < CODE_BYTES_TOTAL:
            self.notes.append(
                f"line {draft.last_line + 1}: Code= has {len(draft.code_values)} bytes "
                f"(QEMU prints {CODE_BYTES_TOTAL}): cut off"
            )
        self.total += 1
        if len(self.records) < self._max:
            self.records.append(draft.freeze())
            self.spans.append((draft.first_line, draft.last_line))

    def _draft_for(self, key: str) -> _Draft:
        """The record a key belongs to; a repeated key starts a new record, and so does a
        general register after ``Code=`` (QEMU prints it last) or of the other width."""
        if self._draft is not None and _starts_new_record(self._draft, key):
            self._close()
        if self._draft is None:
            self._draft = _Draft()
        draft = self._draft
        draft.keys.add(key)
        if draft.first_line < 0:
            draft.first_line = self._line_no
        if draft.last_line != self._line_no:
            if len(draft.lines) < _MAX_RAW_LINES:
                draft.lines.append(self._line.rstrip("\n"))
            draft.last_line = self._line_no
        return draft

    # -- tokens -----------------------------------------------------------------------
    def _token(self, token: str) -> None:
        if self._old is not None and self._old_token(token):
            return
        if token in _OLD_NAMES:
            self._old = (token, [])
            return
        if self._held_name is not None:
            held, self._held_name = self._held_name, None
            if token.startswith("="):
                self._token(held + token)
                return
        if self._in_code and self._code_token(token):
            return
        self._in_code = False
        if self._pending is not None:
            if _HEX.match(token):
                self._pending.values.append(token)
                if len(self._pending.values) >= self._pending.need:
                    self._flush_pending()
                return
            self._flush_pending()
        if self._seg_tail is not None and self._segment_tail(token):
            return
        header = _CPU_HEADER.match(token) if token.startswith("CPU#") else None
        if header:
            self._close()
            self._draft_for("CPU#").cpu = int(header.group(1))
            return
        if token in _PADDED_KEYS:
            self._held_name = token
            return
        m = _KEY_VALUE.match(token) if "=" in token else None
        if m:
            self._key_value(m.group(1), m.group(2))

    def _key_value(self, key: str, value: str) -> None:
        if key == "Code":
            draft = self._draft_for("Code")
            draft.code_values = []
            self._in_code = True
            if value:
                self._code_token(value)
            return
        if key in _SEGMENT_NAMES or key in ("GDT", "IDT") or _MULTI_KEY.match(key):
            if value and not _HEX.match(value):
                return
            need = 4 if key in _SEGMENT_NAMES else _multi_count(key)
            self._draft_for(key)
            self._pending = _Pending(key, need, [value] if value else [])
            if len(self._pending.values) >= need:
                self._flush_pending()
            return
        if not _HEX.match(value):
            return
        self._scalar(key, value)

    def _scalar(self, key: str, value: str) -> None:
        number = int(value, 16)
        if key in _GPR64 or key in _GPR32:
            if len(value) != (16 if key in _GPR64 else 8):
                self.notes.append(f"line {self._line_no + 1}: {key}={value} is cut off")
                return
            draft = self._draft_for(key)
            draft.width = 64 if key in _GPR64 else 32
            draft.gprs[key.lower()] = number
        elif key in ("RIP", "EIP"):
            if len(value) != (16 if key == "RIP" else 8):
                self.notes.append(f"line {self._line_no + 1}: {key}={value} is cut off")
                return
            self._draft_for(key).rip = number
        elif key in ("RFL", "EFL"):
            self._draft_for(key).rflags = number
        elif key in _FLAG_FIELDS:
            self._draft_for(key).flags[_FLAG_FIELDS[key]] = number
        elif key in _CR_KEYS:
            self._draft_for(key).cr[_CR_KEYS[key]] = number
        elif key in _DR_KEYS:
            self._draft_for(key).dr[_DR_KEYS[key]] = number
        elif key == "EFER":
            self._draft_for(key).efer = number
        elif key in _FPU_KEYS or key in _CC_KEYS:
            self._draft_for(key).fpu[key.lower()] = number
        elif _OPMASK_KEY.match(key):
            self._draft_for(key).vector_regs[key.lower()] = (number,)

    def _old_token(self, token: str) -> bool:
        """A value of qemu-kvm's old dump (see ``_OLD_GPRS``); False when the token is not one
        (the name was ordinary text)."""
        assert self._old is not None
        name, values = self._old
        if name in _OLD_GPRS or name in _OLD_SCALARS:
            self._old = None
            if not _HEX.match(token) or (name in _OLD_GPRS and len(token) != 16):
                return False
            self._old_scalar(name, int(token, 16))
            return True
        if name in ("gdt", "idt"):
            self._old = None
            m = _OLD_TABLE.match(token)
            if m is None:
                return False
            table = DescriptorTable(int(m.group(1), 16), int(m.group(2), 16))
            draft = self._draft_for(name.upper())
            if name == "gdt":
                draft.gdt = table
            else:
                draft.idt = table
            return True
        values.append(token)
        if len(values) == 1 and not _HEX.match(token):
            self._old = None
            return False
        if len(values) == 2 and not _OLD_TABLE.match(token.lstrip("(")):
            self._old = None
            return False
        if token.endswith(")") or len(values) >= _OLD_SEG_TOKENS:
            self._old = None
            self._old_segment(name, values)
        return True

    def _old_scalar(self, name: str, value: int) -> None:
        key = name.upper()
        draft = self._draft_for(key)
        if name in _OLD_GPRS:
            draft.width = 64
            draft.gprs[name] = value
        elif name == "rip":
            draft.rip = value
        elif name == "rflags":
            draft.rflags = value
        elif name == "efer":
            draft.efer = value
        else:
            draft.cr[int(name[2:])] = value

    def _old_segment(self, name: str, values: list[str]) -> None:
        m = _OLD_TABLE.match(values[1].lstrip("("))
        assert m is not None
        fields = [v.rstrip(")") for v in values[2:]]
        flags = 0
        dpl: int | None = None
        for field_name, value in zip(fields[::2], fields[1::2], strict=False):
            if field_name in _OLD_SEG_BITS and _HEX.match(value):
                flags |= int(value, 16) << _OLD_SEG_BITS[field_name]
                dpl = int(value, 16) if field_name == "dpl" else dpl
        key = name.upper()
        self._draft_for(key).segments[key] = Segment(
            int(values[0], 16), int(m.group(1), 16), int(m.group(2), 16), flags, dpl
        )

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None or self._draft is None:
            return
        values = [int(v, 16) for v in pending.values]
        key = pending.key
        if len(values) < pending.need:
            self.notes.append(
                f"line {self._line_no + 1}: {key} has {len(values)} of {pending.need} values"
            )
        if key in _SEGMENT_NAMES:
            if len(values) == 4:
                self._draft.segments[key] = Segment(values[0], values[1], values[2], values[3])
                self._seg_tail = key
        elif key in ("GDT", "IDT"):
            if len(values) == 2:
                table = DescriptorTable(values[0], values[1])
                if key == "GDT":
                    self._draft.gdt = table
                else:
                    self._draft.idt = table
        elif values:
            self._draft.vector_regs[key.lower()] = tuple(values)

    def _segment_tail(self, token: str) -> bool:
        """``DPL=n KIND [flags]`` after a segment line; True if the token was consumed."""
        name = self._seg_tail
        assert name is not None
        draft = self._draft
        seg = draft.segments.get(name) if draft is not None else None
        if draft is None or seg is None:
            self._seg_tail = None
            return False
        if token.startswith("DPL=") and seg.dpl is None and token[4:].isdigit():
            draft.segments[name] = _with(seg, dpl=int(token[4:]))
            return True
        if seg.dpl is not None and seg.kind is None and "=" not in token:
            if token.startswith("["):
                self._seg_tail = None
                return True
            draft.segments[name] = _with(seg, kind=token)
            return True
        if token.startswith("[") and token.endswith("]") and "=" not in token:
            self._seg_tail = None
            return True
        self._seg_tail = None
        return False

    def _code_token(self, token: str) -> bool:
        draft = self._draft
        m = _CODE_BYTE.match(token)
        if draft is None or draft.code_values is None or not m:
            return False
        if len(draft.code_values) >= CODE_BYTES_TOTAL:
            return False
        if m.group(1) and m.group(3):
            draft.code_rip = len(draft.code_values)
        elif m.group(1) or m.group(3):
            return False
        draft.code_values.append(None if m.group(2) == "??" else int(m.group(2), 16))
        return True


def _with(seg: Segment, *, dpl: int | None = None, kind: str | None = None) -> Segment:
    return Segment(
        seg.selector,
        seg.base,
        seg.limit,
        seg.flags,
        seg.dpl if dpl is None else dpl,
        seg.kind if kind is None else kind,
    )


def _multi_count(key: str) -> int:
    if key in ("GDT", "IDT"):
        return 2
    m = _MULTI_KEY.match(key)
    return _MULTI_PREFIXES[m.group(1)] if m else 1


def parse_register_dumps(text: str | Iterable[str], max_records: int = 64) -> list[VcpuRegisters]:
    """All register dumps found in ``text`` (a string or an iterable of lines), in order.

    Never raises on arbitrary text; returns an empty list when no dump is found.
    """
    builder = DumpBuilder(max_records=max_records)
    lines = text.splitlines() if isinstance(text, str) else text
    for number, line in enumerate(lines):
        builder.feed(line, number)
    builder.finish()
    for note in builder.notes:
        log.debug("register dump: %s", note)
    return builder.records
