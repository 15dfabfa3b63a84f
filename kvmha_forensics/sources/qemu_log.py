"""Parse QEMU's stderr (or a log people pasted) for KVM failures and register dumps.

Recognised, anywhere in a line (prompts, timestamps, tabs and quote markers tolerated):

* ``KVM internal error. Suberror: N`` (QEMU ``kvm_handle_internal_error()``; old QEMU
  printed ``KVM internal error.`` and `` Suberror: N`` as two writes, and pasted reports
  show it glued as ``error.Suberror:``; without KVM_CAP_INTERNAL_ERROR_DATA there is no
  suberror at all),
* ``extra data[N]: 0x%016x`` (current QEMU) or bare ``%x`` (older QEMU),
* ``emulation failure`` (suberror 1, followed by the register dump and ``Code=``),
* ``KVM: entry failed, hardware error 0x...`` (``kvm_arch_handle_exit()``, KVM_EXIT_FAIL_ENTRY)
  and the Intel hint QEMU prints after 0x80000021 when the host has VMX,
* other VMMs' reports of the same exits: rust-vmm's ``FailEntry(REASON, CPU)`` and
  ``VcpuExitFailEntry { hardware_entry_failure_reason: REASON, cpu: CPU }`` (decimal, as Rust
  prints integers; uhyve, cloud-hypervisor), a bare ``KVM_EXIT_FAIL_ENTRY`` that names no
  reason (kontain's ``km``),
* QEMU's ``kvm_run_exit cpu_index N, reason 8`` trace event: KVM_EXIT_SHUTDOWN, the guest
  triple-faulted (QEMU resets it),
* ``error: kvm run failed <strerror>``, and the other KVM vCPU ioctls QEMU reports refused:
  ``Failed to put registers after init: <strerror>`` (also ``after reset``; the state QEMU
  loads into KVM, ``kvm_arch_put_registers()``, then QEMU dumps the CPU and stops with
  ``internal-error``), ``Failed to get registers: <strerror>`` (KVM would not give the state
  back, ``kvm_arch_get_registers()``), ``error: failed to set MSR 0x%x to 0x%x`` and the
  assertion glibc prints when ``kvm_put_msrs()``/``kvm_buf_set_msrs()`` finds KVM_SET_MSRS
  set fewer MSRs, and ``kvm_init_vcpu failed: <strerror>`` (``kvm_init_vcpu: STEP failed (N):
  <strerror>`` since QEMU 5.2): KVM would not create or set up a vCPU, QEMU exits at start-up,
* libvirt's record in the domain log of QEMU's disk error event (``IO error device='…'
  node-name='…' reason='<strerror>'``; it does not say whether the guest paused),
* register dumps (see :mod:`kvmha_forensics.sources.registers`), ``QEMU emulator version``;
  a dump a paste joined onto a message's line is read apart from it, from its first register.

Bounded: at most ``max_records`` internal errors / dumps are kept, the rest are counted;
:func:`parse_qemu_log_file` reads at most ``max_bytes`` and ``max_lines``, and lines at most
``max_line`` long.
Never raises on arbitrary text or bytes (decoded with ``errors="replace"``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from os import PathLike
from typing import BinaryIO, TypeVar

from kvmha_forensics.input_files import opened
from kvmha_forensics.sources.pasted import clean_text, decode_qp, strip_prefixes
from kvmha_forensics.sources.registers import CodeBytes, DumpBuilder, VcpuRegisters

log = logging.getLogger(__name__)
R = TypeVar("R")

__all__ = [
    "DiskIoError",
    "EntryFailure",
    "KvmInternalError",
    "QemuLog",
    "RunFailure",
    "Shutdown",
    "parse_qemu_log",
    "parse_qemu_log_file",
]

DEFAULT_MAX_RECORDS = 32
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_LINE = 64 * 1024
#: What bounds the time of a log of short lines (~5 µs a line): 256 MiB of empty lines is 256M
#: lines, while the logs a capture keeps (8 MiB at most) hold ~100k.
DEFAULT_MAX_LINES = 1 << 20
_MAX_NOTES = 64
_MAX_EXTRA_WORDS = 64  # kvm_run.internal.data[] has 16 entries; leave room for garbage

_INTERNAL = re.compile(r"KVM internal error\.\s*(?:Suberror:\s*(\d+))?")
_EXTRA = re.compile(r"extra data\[(\d+)\]:\s*(0[xX])?([0-9a-fA-F]+)")
_EMULATION = re.compile(r"\bemulation failure\b")
_ENTRY = re.compile(
    r"(?:KVM: entry failed, hardware error|kvm: unhandled exit|kvm: vm entry failed with error"
    # other VMMs on KVM name the exit and kvm_run's field (dosemu2: "KVM_EXIT_FAIL_ENTRY:
    # hardware_entry_failure_reason = 0x80000021")
    r"|KVM_EXIT_FAIL_ENTRY[:,]?\s*hardware_entry_failure_reason\s*=)"
    r" ?(0[xX])?([0-9a-fA-F]+)"
)
#: rust-vmm's VcpuExit::FailEntry as Rust's Debug prints it (decimal): uhyve, cloud-hypervisor.
_RUST_ENTRY = re.compile(
    r"\bFailEntry\((\d+),\s*\d+\)|\bVcpuExitFailEntry\s*\{\s*hardware_entry_failure_reason:\s*(\d+)"
)
#: A VMM that names KVM's exit but not its reason (kontain's "km: KVM_EXIT_FAIL_ENTRY").
_BARE_FAIL_ENTRY = re.compile(r"\bKVM_EXIT_FAIL_ENTRY\b")
#: QEMU's trace event (accel/kvm/trace-events) for KVM_EXIT_SHUTDOWN (8): a triple fault.
_SHUTDOWN = re.compile(r"\bkvm_run_exit\s+cpu_index\s+(\d+),\s*reason\s+8\b")
_ENTRY_HEAD = re.compile(r"KVM: entry failed, hardware error\s*$")
_ENTRY_TAIL = re.compile(r"^\s*(0[xX])?([0-9a-fA-F]+)\b")
_INTEL_HINT = re.compile(r"running a guest on an Intel")
_RUN_FAILED = re.compile(
    # QEMU's "error: kvm run failed Bad address"; Rust VMMs print io::Error after a colon
    # (libkrun: "Failure during vcpu run: Bad address (os error 14)")
    r"(?:kvm run failed |[Ff]ailure during vcpu run: )(.*?\S)(?: \(os error \d+\))?\s*$"
)
#: Where a register dump a paste joined onto a message line begins (its first register).
_JOINED_DUMP = re.compile(r"\s(?=[RE]AX=[0-9a-fA-F]{8})")
_PUT_FAILED = re.compile(r"Failed to (put|get) registers( after (?:init|reset))?: (.*\S)")
_MSR_FAILED = re.compile(r"failed to set MSR (0x[0-9a-fA-F]+)")
#: KVM would not create or set up a vCPU at start-up: QEMU before 5.2 printed "kvm_init_vcpu
#: failed: <strerror>", later ones name the step, "kvm_init_vcpu: kvm_arch_init_vcpu failed (0):
#: <strerror>" (accel/kvm/kvm-all.c). strerror's words only: a quote a reporter closed after
#: it is not part of it.
_INIT_VCPU = re.compile(r"kvm_init_vcpu(?: failed|: [^:]*? failed(?: \(\d+\))?): (\w[\w /,'-]*\w)")
#: libvirt's domain-log line for QEMU's BLOCK_IO_ERROR event (whatever the error policy did).
_IO_ERROR = re.compile(
    r"\bIO error device='([^']*)'(?: node-name='([^']*)')?(?: reason='([^']*)')?"
)
_MSR_ASSERT = re.compile(r"\b(kvm_put_msrs|kvm_buf_set_msrs): Assertion .*failed")
_VERSION = re.compile(r"QEMU (?:emulator version )?(\d+\.\d+(?:\.\d+)?)")
#: A word each of the patterns above holds (``_ENTRY_TAIL`` is tried only after a head).
_LINE_WORDS = re.compile(
    r"KVM|kvm|QEMU |extra data\[|emulation failure|running a guest|t registers|set MSR|vcpu run"
    r"|FailEntry|IO error"
)
_QP_SOFT_BREAK = "="
_QP_MARK = "=3D"


@dataclass(frozen=True, slots=True)
class KvmInternalError:
    """One ``KVM internal error`` block: KVM_EXIT_INTERNAL_ERROR as QEMU printed it.

    ``data`` are the ``extra data[N]`` words in index order (``run->internal.data[]``);
    ``register_dump`` indexes :attr:`QemuLog.register_dumps` for the dump that followed.
    """

    suberror: int | None
    data: tuple[int, ...]
    emulation_failure: bool
    line: int
    register_dump: int | None = None
    data_style: str | None = None  # "0x%016" (current QEMU) or "bare" (older QEMU)
    complete: bool = True  # False when data indices had gaps or the block was cut off


@dataclass(frozen=True, slots=True)
class EntryFailure:
    """``KVM: entry failed, hardware error 0x...`` (KVM_EXIT_FAIL_ENTRY).

    ``intel_hint`` is True when QEMU also printed its "running a guest on an Intel machine"
    text, which it does only for 0x80000021 on a host whose CPUID has VMX.
    ``hardware_error`` is None when the VMM named the exit without its reason.
    """

    hardware_error: int | None
    line: int
    intel_hint: bool = False


@dataclass(frozen=True, slots=True)
class RunFailure:
    """A KVM vCPU ioctl QEMU issued failed: ``what`` is ``KVM_RUN`` (``error: kvm run failed
    <strerror>``), ``put registers after init``/``after reset`` (QEMU could not load the vCPU
    state into KVM), ``get registers`` (nor read it from KVM) or ``KVM_SET_MSRS`` (KVM refused
    an MSR; ``message`` names it when QEMU did) or ``init vcpu`` (KVM would not create or set
    up the vCPU at start-up)."""

    message: str
    line: int
    what: str = "KVM_RUN"


@dataclass(frozen=True, slots=True)
class Shutdown:
    """KVM_EXIT_SHUTDOWN seen in QEMU's ``kvm_run_exit`` trace: vCPU ``vcpu`` triple-faulted."""

    vcpu: int
    line: int


@dataclass(frozen=True, slots=True)
class DiskIoError:
    """libvirt's domain-log record of a disk error: ``device`` (alias), ``node`` (block node),
    ``reason`` (strerror; ``No space left on device`` is ENOSPC)."""

    device: str
    node: str | None
    reason: str | None
    line: int


@dataclass(frozen=True, slots=True)
class QemuLog:
    """Everything recognised in one QEMU log. Counts include records not kept."""

    internal_errors: tuple[KvmInternalError, ...]
    entry_failures: tuple[EntryFailure, ...]
    run_failures: tuple[RunFailure, ...]
    register_dumps: tuple[VcpuRegisters, ...]
    qemu_version: str | None
    notes: tuple[str, ...]
    internal_errors_total: int = 0
    register_dumps_total: int = 0
    #: (first, last) line of each kept register dump, 0-based, same order as the dumps.
    register_dump_lines: tuple[tuple[int, int], ...] = ()
    lines: int = 0
    bytes_read: int = 0
    truncated: bool = False
    shutdowns: tuple[Shutdown, ...] = ()
    io_errors: tuple[DiskIoError, ...] = ()

    @property
    def code(self) -> CodeBytes | None:
        """The ``Code=`` bytes of the first dump that has them (the faulting vCPU)."""
        for dump in self.register_dumps:
            if dump.code is not None:
                return dump.code
        return None


@dataclass(slots=True)
class _OpenError:
    suberror: int | None
    line: int
    words: dict[int, int] = field(default_factory=dict)
    style: str | None = None
    emulation: bool = False


class _LogParser:
    """Line-by-line state machine; see :func:`parse_qemu_log`."""

    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self.dumps = DumpBuilder(max_records=max_records)
        self.errors: list[KvmInternalError] = []
        self.errors_total = 0
        self.entries: list[EntryFailure] = []
        self.runs: list[RunFailure] = []
        self.shutdowns: list[Shutdown] = []
        self.io_errors: list[DiskIoError] = []
        self.version: str | None = None
        self.notes: list[str] = []
        self.lines = 0
        self._closed: list[_OpenError] = []
        self._open: _OpenError | None = None
        self._qp = False
        self._held: tuple[int, str] | None = None
        self._last_entry: int | None = None
        self._entry_head: int | None = None

    def note(self, text: str) -> None:
        if len(self.notes) < _MAX_NOTES:
            self.notes.append(text)

    def feed(self, raw: str) -> None:
        """One physical line. A quoted-printable mail body (seen from its ``=3D``) is decoded
        on the fly: a soft line break (``=`` at the end) joins the next line to this one."""
        number = self.lines
        self.lines += 1
        raw = raw.rstrip("\r\n")
        self._qp = self._qp or _QP_MARK in raw
        if self._held is not None:
            number, raw = self._held[0], self._held[1][:-1] + raw
            self._held = None
        if self._qp and raw.endswith(_QP_SOFT_BREAK):
            self._held = (number, raw)
            return
        if self._qp:
            raw = decode_qp(raw)
        line = strip_prefixes(clean_text(raw))
        joined = _JOINED_DUMP.search(line) if "AX=" in line else None
        if joined is not None and line[: joined.start()].strip():
            # a paste that lost the line breaks: the message, then the dump, each read alone
            self._line(number, line[: joined.start()])
            line = line[joined.end() :]
        self._line(number, line)

    def _line(self, number: int, line: str) -> None:
        if self._entry_head is None and _LINE_WORDS.search(line) is None:
            self.dumps.feed(line, number)  # what most lines are: no pattern below can match
            return
        if self.version is None:
            m = _VERSION.search(line)
            if m:
                self.version = m.group(1)
        m = _INTERNAL.search(line)
        if m:
            # No dumps.finish(): another vCPU's dump may be in the middle of being printed.
            self._close_error()
            self.errors_total += 1
            self._open = _OpenError(int(m.group(1)) if m.group(1) else None, number)
            if m.group(1) is None:
                self.note(f"line {number + 1}: internal error without a suberror number")
            return
        m = _EXTRA.search(line)
        if m:
            self._extra(m, number)
            return
        if _EMULATION.search(line):
            if self._open is None:
                self.note(f"line {number + 1}: 'emulation failure' without 'KVM internal error'")
            else:
                self._open.emulation = True
            return
        head, self._entry_head = self._entry_head, None
        m = _ENTRY.search(line) or (_ENTRY_TAIL.match(line) if head is not None else None)
        if m:
            self._last_entry = len(self.entries)
            line_no = number if head is None else head
            self._keep(self.entries, EntryFailure(int(m.group(2), 16), line_no))
            return
        if self._other_vmm(line, number):
            return
        if _ENTRY_HEAD.search(line):
            self._entry_head = number  # the code was wrapped onto the next line
            return
        if _INTEL_HINT.search(line) and self._last_entry is not None:
            if self._last_entry < len(self.entries):
                entry = self.entries[self._last_entry]
                self.entries[self._last_entry] = EntryFailure(
                    entry.hardware_error, entry.line, True
                )
            return
        failure = _run_failure(line, number)
        if failure is not None:
            self._keep(self.runs, failure)
            return
        m = _IO_ERROR.search(line)
        if m:
            self._keep(self.io_errors, DiskIoError(m.group(1), m.group(2), m.group(3), number))
            return
        self.dumps.feed(line, number)

    def _other_vmm(self, line: str, number: int) -> bool:
        """Exits other VMMs (and QEMU's trace) name their own way; True when ``line`` held one."""
        m = _RUST_ENTRY.search(line)
        bare = m is None and _BARE_FAIL_ENTRY.search(line) is not None
        if m is not None or bare:
            reason = (m.group(1) or m.group(2)) if m is not None else None
            self._keep(self.entries, EntryFailure(int(reason) if reason else None, number))
            return True
        s = _SHUTDOWN.search(line)
        if s is not None:
            self._keep(self.shutdowns, Shutdown(int(s.group(1)), number))
            return True
        return False

    def _keep(self, records: list[R], record: R) -> None:
        """Keep ``record`` unless ``max_records`` of its kind are kept already."""
        if len(records) < self.max_records:
            records.append(record)

    def _extra(self, m: re.Match[str], number: int) -> None:
        if self._open is None:
            self.note(f"line {number + 1}: 'extra data' without 'KVM internal error'")
            return
        index = int(m.group(1))
        if index >= _MAX_EXTRA_WORDS or index in self._open.words:
            self.note(f"line {number + 1}: extra data[{index}] ignored")
            return
        style = "0x%016" if m.group(2) else "bare"
        if self._open.style not in (None, style):
            self.note(f"line {number + 1}: extra data styles mixed")
        self._open.style = style
        self._open.words[index] = int(m.group(3), 16)

    def _close_error(self) -> None:
        err, self._open = self._open, None
        if err is not None and len(self._closed) < self.max_records:
            self._closed.append(err)

    def _errors(self) -> list[KvmInternalError]:
        """The closed error blocks, each paired with its vCPU's register dump (see
        :func:`pair_dumps`)."""
        spans = self.dumps.spans
        pairs = pair_dumps([e.line for e in self._closed], spans)
        out = []
        for err, dump in zip(self._closed, pairs, strict=True):
            indices = sorted(err.words)
            complete = indices == list(range(len(indices)))
            if not complete:
                self.note(f"line {err.line + 1}: extra data indices {indices} have gaps")
            out.append(
                KvmInternalError(
                    suberror=err.suberror,
                    data=tuple(err.words[i] for i in indices),
                    emulation_failure=err.emulation,
                    line=err.line,
                    register_dump=dump,
                    data_style=err.style,
                    complete=complete,
                )
            )
        return out

    def result(self, bytes_read: int, truncated: bool) -> QemuLog:
        if self._held is not None:
            number, raw = self._held
            self._held = None
            self._line(number, strip_prefixes(clean_text(decode_qp(raw[:-1]))))
        self.dumps.finish()
        self._close_error()
        self.errors = self._errors()
        for note in self.dumps.notes:
            self.note(note)
        if self.errors_total > len(self.errors):
            self.note(f"{self.errors_total - len(self.errors)} more internal errors not kept")
        if self.dumps.total > len(self.dumps.records):
            self.note(f"{self.dumps.total - len(self.dumps.records)} more register dumps not kept")
        for note in self.notes:
            log.debug("qemu log: %s", note)
        return QemuLog(
            internal_errors=tuple(self.errors),
            entry_failures=tuple(self.entries),
            run_failures=tuple(self.runs),
            shutdowns=tuple(self.shutdowns),
            io_errors=tuple(self.io_errors),
            register_dumps=tuple(self.dumps.records),
            qemu_version=self.version,
            notes=tuple(self.notes),
            internal_errors_total=self.errors_total,
            register_dumps_total=self.dumps.total,
            register_dump_lines=tuple(self.dumps.spans),
            lines=self.lines,
            bytes_read=bytes_read,
            truncated=truncated,
        )


def _run_failure(line: str, number: int) -> RunFailure | None:
    """A failed KVM vCPU ioctl QEMU reported on ``line``, or None."""
    m = _RUN_FAILED.search(line)
    if m:
        return RunFailure(m.group(1), number)
    m = _PUT_FAILED.search(line)
    if m:
        return RunFailure(m.group(3), number, f"{m.group(1)} registers" + (m.group(2) or ""))
    m = _INIT_VCPU.search(line)
    if m:
        return RunFailure(m.group(1), number, "init vcpu")
    m = _MSR_FAILED.search(line)
    if m:
        return RunFailure(f"MSR {m.group(1).lower()}", number, "KVM_SET_MSRS")
    m = _MSR_ASSERT.search(line)
    if m:
        return RunFailure(f"{m.group(1)} assertion", number, "KVM_SET_MSRS")
    return None


def pair_dumps(error_lines: list[int], spans: list[tuple[int, int]]) -> list[int | None]:
    """For each error block (by its first line), the index of its vCPU's register dump.

    vCPU threads print concurrently: a burst of error headers may come before their dumps,
    and a header may land inside another vCPU's dump. In order, each error takes the first
    dump not yet taken that starts after it; an error with none takes the nearest dump that
    started before it (a reporter who pasted the ``Code=`` line first), else ``None``.
    """
    taken: set[int] = set()
    out: list[int | None] = []
    for line in error_lines:
        after = next(
            (i for i, (first, _) in enumerate(spans) if first > line and i not in taken), None
        )
        if after is not None:
            taken.add(after)
            out.append(after)
            continue
        before = [i for i, (first, _) in enumerate(spans) if first < line]
        out.append(before[-1] if before else None)
    return out


def _text_lines(text: str | bytes) -> Iterator[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return iter(text.splitlines())


def parse_qemu_log(
    text: str | bytes | Iterable[str], max_records: int = DEFAULT_MAX_RECORDS
) -> QemuLog:
    """Parse a whole log held in memory (a string, bytes, or an iterable of lines)."""
    parser = _LogParser(max_records)
    lines: Iterable[str] = _text_lines(text) if isinstance(text, str | bytes) else text
    size = 0
    for line in lines:
        size += len(line) + 1
        parser.feed(line)
    return parser.result(size, truncated=False)


def parse_qemu_log_file(
    path: str | PathLike[str],
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_records: int = DEFAULT_MAX_RECORDS,
    max_line: int = DEFAULT_MAX_LINE,
    max_lines: int = DEFAULT_MAX_LINES,
) -> QemuLog:
    """Stream a log file: read at most ``max_bytes`` and ``max_lines`` lines, cut lines at
    ``max_line`` bytes.

    Memory stays bounded on multi-gigabyte logs (e.g. one emulation failure repeated
    millions of times): the first ``max_records`` records are kept, the rest counted.
    Raises ``OSError`` only if the file cannot be opened or read.
    """
    parser = _LogParser(max_records)
    read = 0
    truncated = False
    cut_lines = 0
    with opened(path) as handle:
        while True:
            if read >= max_bytes or parser.lines >= max_lines:
                truncated = bool(handle.read(1))
                break
            chunk = handle.readline(min(max_line, max_bytes - read))
            if not chunk:
                break
            read += len(chunk)
            if not chunk.endswith(b"\n"):
                # Over-long line (or the last line): skip the rest of it.
                rest = _skip_line(handle, max_bytes - read)
                read += rest
                if rest:
                    cut_lines += 1
            parser.feed(chunk.decode("utf-8", errors="replace"))
    if cut_lines:
        parser.note(f"{cut_lines} lines longer than {max_line} bytes were cut")
    if truncated:
        parser.note(f"stopped after {read} bytes and {parser.lines} lines"
                    f" (max_bytes={max_bytes}, max_lines={max_lines})")  # fmt: skip
    return parser.result(read, truncated)


def _skip_line(handle: BinaryIO, budget: int) -> int:
    """Discard the rest of the current line, reading at most ``budget`` bytes."""
    skipped = 0
    while budget > skipped:
        part = handle.readline(min(DEFAULT_MAX_LINE, budget - skipped))
        if not part:
            break
        skipped += len(part)
        if part.endswith(b"\n"):
            break
    return skipped
