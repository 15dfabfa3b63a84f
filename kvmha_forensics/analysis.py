"""Analyzers, their inputs, the runner and the report they add up to.

An analyzer declares what it needs (``requires``); the runner skips it with the reason when
an input is missing, times it, and turns an exception into a ``failed`` result so one
broken analyzer never stops the others. Analyzers return findings and facts; they never
print. Built-in and third-party analyzers are found through the entry-point group
``kvmha_forensics.analyzers``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, cast, runtime_checkable

from .errors import InputError
from .input_files import Keep, parse_json, read_input
from .limits import MAX_CONSOLE_BYTES, MAX_JSON_BYTES, MAX_TEXT_BYTES
from .serial import to_json
from .vocabulary import JSON, Cause, Vendor

if TYPE_CHECKING:
    from .bounded import Pending
    from .ha.freeze import FreezeState
    from .kernel_facts import KernelFacts
    from .sources.qemu_log import QemuLog
    from .sources.registers import VcpuRegisters
    from .transport.base import Event
    from .transport.replies import BlockDevice
    from .x86.code import CodeAtRip
    from .x86.prstatus import NoteRegisters

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "kvmha_forensics.analyzers"
KERNEL_ANALYZER = "guest-kernel"
"""The analyzer that reads the guest kernel: analysis starts that read before the others run."""

# Inputs an analyzer can require: artifact kinds, plus "memory" (any dump) and "debuginfo".
Requirement = Literal[
    "qemu-log", "console", "registers", "mtree", "freeze", "events", "identity", "vcpu-stats",
    "memory", "vmcoreinfo", "debuginfo",
]  # fmt: skip


class Confidence(float, Enum):
    """How sure a finding is, named by what it rests on; reports print the number. Between
    equally sure findings the more specific cause wins (:func:`~.vocabulary.specificity`),
    and an analyzer that ``refines`` another wins over it on the same cause."""

    STATE_ONLY = 0.3  # a runstate or event says that the guest stopped, not why
    GUESS = 0.5  # a likely reading; the input that would confirm it is missing
    DAMAGED = 0.6  # the right kind of record, but corrupted or terse
    SECONDHAND = 0.7  # the guest's own word, or a damaged report read from memory
    RECORDED = 0.8  # a whole report printed by the layer that failed (console, QEMU's KVM error)
    DECODED = 0.85  # such a report, refined by decoding what it points at (the instruction)
    CONFIRMED = 0.9  # the host saw it (a QEMU event), or the code that caused it is decoded
    MEMORY = 0.95  # the kernel's own state, read from the dump


@dataclass(frozen=True, slots=True)
class Evidence:
    """A pointer into the analyzed material: which file, where in it, and an excerpt."""

    artifact: str
    locator: str | None = None
    excerpt: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """What one analyzer concludes about why the guest froze."""

    cause: Cause
    summary: str
    signature: str
    confidence: Confidence
    culprit: str | None = None
    crashed_cpu: int | None = None
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """An analyzer's return value: findings plus the facts it established (JSON-able)."""

    findings: tuple[Finding, ...] = ()
    facts: Mapping[str, JSON] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AnalyzerResult:
    name: str
    status: Literal["ok", "skipped", "failed"]
    seconds: float
    reason: str | None
    outcome: Outcome
    refines: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, JSON]:
        return {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 6),
            "reason": self.reason,
            "findings": [to_json(f) for f in self.outcome.findings],
            "facts": dict(self.outcome.facts),
            "notes": list(self.outcome.notes),
        }


TEXT_KINDS = frozenset({"console", "registers", "mtree", "vmcoreinfo"})


def text_limit(kind: str) -> tuple[int, Keep]:
    """How much of an artifact of ``kind`` analysis reads, and which part (docs/limits.md):
    a console's tail (where the crash is), the head of anything else."""
    if kind == "console":
        return MAX_CONSOLE_BYTES, "tail"
    return (MAX_TEXT_BYTES if kind in TEXT_KINDS else MAX_JSON_BYTES), "head"


@dataclass(frozen=True)
class Inputs:
    """What there is to analyze: a bundle, a bare vmcore, or text; plus debug-info hints."""

    label: str
    kind: Literal["bundle", "vmcore", "text"]
    files: Mapping[str, Path]
    vmlinux: Path | None = None
    debuginfo_dirs: tuple[Path, ...] = ()
    cpu_vendor: Vendor | None = None


class Context:
    """Shared, lazily parsed views of the inputs, so analyzers don't redo each other's work."""

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self._texts: dict[str, str | None] = {}
        self._kernel: Pending[KernelFacts] | None = None

    def has(self, requirement: Requirement) -> bool:
        if requirement == "memory":
            return self.memory is not None
        if requirement == "debuginfo":
            return self.vmlinux is not None
        if requirement == "vmcoreinfo":
            return bool(self.vmcoreinfo)
        return requirement in self.inputs.files

    def path(self, kind: str) -> Path | None:
        return self.inputs.files.get(kind)

    def text(self, kind: str) -> str | None:
        """An artifact as text, read once however many analyzers ask (None when absent); read
        to its bound (:func:`text_limit`), a special file refused (:mod:`.input_files`)."""
        if kind not in self._texts:
            path = self.path(kind)
            limit, keep = text_limit(kind)
            read = None if path is None else read_input(path, limit, keep)
            self._texts[kind] = None if read is None else read.data.decode("utf-8", "replace")
        return self._texts[kind]

    def json(self, kind: str) -> object:
        """A JSON artifact, or None when absent."""
        text = self.text(kind)
        if text is None:
            return None
        return parse_json(text.encode(), str(self.path(kind)))

    def json_object(self, kind: str) -> dict[str, object]:
        found = self.json(kind)
        return cast(dict[str, object], found) if isinstance(found, dict) else {}

    @cached_property
    def freeze(self) -> FreezeState | None:
        """``freeze.json``: the state, cause and events when the guest froze."""
        from .ha.freeze import FreezeState

        doc = self.json("freeze")
        if doc is None:
            return None
        try:
            return FreezeState.from_json(doc)
        except ValueError as exc:
            raise InputError(f"{self.path('freeze')} is not a freeze record: {exc}") from exc

    @cached_property
    def code(self) -> list[CodeAtRip]:
        """``code.json``: each vCPU's bytes around RIP, read through its page tables."""
        from .x86.code import CodeAtRip

        doc = self.json("code")
        try:
            return [CodeAtRip.from_json(c) for c in doc] if isinstance(doc, list) else []
        except ValueError as exc:
            raise InputError(f"{self.path('code')} holds a bad entry: {exc}") from exc

    @cached_property
    def block_devices(self) -> list[BlockDevice]:
        """``identity.json``'s ``query-block`` answer (none when QEMU refused it)."""
        from .errors import NotAMonitor
        from .transport.replies import BlockDevice

        block = self.json_object("identity").get("block")  # an {"error": …} when refused
        try:
            return BlockDevice.list_from_json(block) if isinstance(block, list) else []
        except NotAMonitor as exc:
            raise InputError(f"{self.path('identity')}: {exc}") from exc

    def events(self) -> list[Event]:
        """QMP events recorded with the freeze (before capture) and during capture."""
        from .transport.base import Event

        during = self.json("events")
        try:
            later = [Event.from_json(e) for e in during] if isinstance(during, list) else []
        except ValueError as exc:
            raise InputError(f"{self.path('events')} holds a bad event: {exc}") from exc
        return [*(self.freeze.events if self.freeze else ()), *later]

    @property
    def memory(self) -> Path | None:
        return self.path("memory-elf") or self.path("memory-kdump")

    @cached_property
    def qemu_log(self) -> QemuLog | None:
        from .sources.qemu_log import parse_qemu_log_file

        path = self.path("qemu-log")
        return parse_qemu_log_file(path) if path else None

    @cached_property
    def dump_vcpus(self) -> list[NoteRegisters]:
        """Each vCPU's registers from the ELF dump's NT_PRSTATUS notes (empty without one)."""
        from .x86.prstatus import vcpu_registers

        elf = self.path("memory-elf")
        return vcpu_registers(elf) if elf is not None else []

    @cached_property
    def registers(self) -> tuple[VcpuRegisters, ...]:
        from .sources.registers import parse_register_dumps

        text = self.text("registers")
        if text:
            return tuple(parse_register_dumps(text))
        parsed = self.qemu_log
        return tuple(parsed.register_dumps) if parsed else ()

    @cached_property
    def vmcoreinfo(self) -> dict[str, str]:
        """The dump's VMCOREINFO (empty when it is not a Linux dump, or there is no dump)."""
        from .debuginfo import dump_vmcoreinfo

        memory = self.memory
        if memory is None:
            return {}
        return dump_vmcoreinfo(self.text("vmcoreinfo"), self.path("memory-elf"), memory)

    @cached_property
    def vmlinux(self) -> Path | None:
        from .debuginfo import find_vmlinux

        return find_vmlinux(self.vmcoreinfo, self.inputs.vmlinux, self.inputs.debuginfo_dirs)

    def start_kernel_read(self) -> None:
        """Start reading the guest kernel of the dump, if there is one (in a child: see
        :mod:`.kernel_read`), so that it runs beside whatever comes before :meth:`kernel`.

        Raises: InputError for a ``--vmlinux`` of another build than the dump."""
        memory = self.memory
        if self._kernel is None and memory is not None and self.vmcoreinfo:
            from .kernel_read import start_kernel_read

            recovered = self.text("vmcoreinfo")
            self._kernel = start_kernel_read(memory, recovered, self.vmcoreinfo, self.vmlinux)

    def kernel(self) -> KernelFacts:
        """The guest kernel's facts, read from the dump with drgn (started now if need be).

        Raises: InputError without a dump or its VMCOREINFO; what the read raised."""
        self.start_kernel_read()
        if self._kernel is None:
            raise InputError("no memory dump with VMCOREINFO to read the guest kernel from")
        return self._kernel.result()


@runtime_checkable
class Analyzer(Protocol):
    """What every analyzer provides. ``run`` returns data; it never prints.

    ``version`` changes whenever what ``run`` concludes may change (it is part of the triage
    cache key). ``refines`` names analyzers whose findings this one makes more precise: on the
    same cause, its finding is the verdict whatever their confidence."""

    name: ClassVar[str]
    version: ClassVar[int]
    description: ClassVar[str]
    requires: ClassVar[frozenset[Requirement]]
    refines: ClassVar[frozenset[str]]

    def run(self, ctx: Context) -> Outcome: ...


def version_of(cls: type[Analyzer]) -> int:
    """``cls.version``; 0 for a plugin written before analyzers had versions."""
    return int(getattr(cls, "version", 0))


def refines_of(cls: type[Analyzer]) -> frozenset[str]:
    """``cls.refines``; none for a plugin written before analyzers declared it."""
    return frozenset(getattr(cls, "refines", frozenset()))


def discover() -> list[type[Analyzer]]:
    """Analyzer classes registered under the entry-point group, in name order."""
    from importlib.metadata import entry_points  # ~25 ms: after the kernel read has started

    found: list[type[Analyzer]] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not stop analysis
            log.warning("analyzer %s cannot be loaded: %s", ep.name, exc)
            continue
        found.append(cast(type[Analyzer], cls))
    return found


def select(names: Iterable[str] | None) -> list[type[Analyzer]]:
    """The analyzers to run: all, or those named (an unknown name lists the known ones)."""
    available = discover()
    wanted = list(names or [])
    if not wanted:
        return available
    by_name = {a.name: a for a in available}
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise InputError(
            f"unknown analyzer {', '.join(unknown)}", f"choose from: {', '.join(sorted(by_name))}"
        )
    return [by_name[n] for n in wanted]


def run_one(cls: type[Analyzer], ctx: Context) -> AnalyzerResult:
    start = time.perf_counter()
    try:
        missing = sorted(r for r in cls.requires if not ctx.has(r))
    except Exception as exc:  # an input too damaged to even tell what it holds
        reason = f"cannot read its inputs: {type(exc).__name__}: {exc}"
        return AnalyzerResult(cls.name, "failed", time.perf_counter() - start, reason, Outcome())
    if missing:
        reason = f"needs {', '.join(missing)}, which this input lacks"
        return AnalyzerResult(cls.name, "skipped", time.perf_counter() - start, reason, Outcome())
    try:
        outcome = cls().run(ctx)
    except Exception as exc:
        log.debug("analyzer %s failed", cls.name, exc_info=True)
        reason = f"{type(exc).__name__}: {exc}"
        return AnalyzerResult(cls.name, "failed", time.perf_counter() - start, reason, Outcome())
    seconds = time.perf_counter() - start
    return AnalyzerResult(cls.name, "ok", seconds, None, outcome, refines_of(cls))


def start_kernel_read(ctx: Context) -> None:
    """:meth:`Context.start_kernel_read`, its error left for the analyzer to meet and report."""
    try:
        ctx.start_kernel_read()
    except Exception:
        log.debug("the guest kernel's read did not start", exc_info=True)


def run_all(
    ctx: Context,
    analyzers: Iterable[type[Analyzer]],
    on_result: Callable[[AnalyzerResult], None] | None = None,
) -> list[AnalyzerResult]:
    """Run each analyzer; the results in the order given. The guest kernel's analyzer runs
    last (``on_result`` hears of it last): it waits for the kernel's read, a child process,
    and every other analyzer runs while that child works."""
    chosen = list(analyzers)
    if any(cls.name == KERNEL_ANALYZER for cls in chosen):
        start_kernel_read(ctx)
    results: dict[int, AnalyzerResult] = {}
    for i in sorted(range(len(chosen)), key=lambda i: chosen[i].name == KERNEL_ANALYZER):
        results[i] = run_one(chosen[i], ctx)
        if on_result:
            on_result(results[i])
    return [results[i] for i in range(len(chosen))]
