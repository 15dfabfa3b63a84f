"""Analysis entry points: from a bundle, a bare vmcore or text, to a :class:`Report`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from .analysis import (
    KERNEL_ANALYZER,
    TEXT_KINDS,
    Analyzer,
    AnalyzerResult,
    Context,
    Inputs,
    run_all,
    select,
    start_kernel_read,
    text_limit,
)
from .capture.bundle import MANIFEST, VENDOR_OF_KVM, Bundle
from .errors import InputError
from .input_files import absent, opened, read_input, refusal
from .report.model import Report
from .report.verdict import decide
from .sources.classify import dump_kind
from .sources.elfcore import HEAD, ElfError, read_core
from .vocabulary import Vendor


def _memory_kind(path: Path) -> str:
    head = read_input(path, HEAD).data
    kind = dump_kind(head)
    if kind in ("memory-elf", "memory-kdump"):
        return kind
    if kind == "elf-not-core":
        raise InputError(
            f"{path} is an ELF file but not a core dump", "give a guest memory dump (vmcore)"
        )
    if kind == "flattened":
        raise InputError(
            f"{path} is a makedumpfile flattened stream",
            "rearrange it first ('makedumpfile -R plain < stream'), or capture with"
            " kvmha-forensics, which does it",
        )
    raise InputError(
        f"{path} is neither a bundle nor a vmcore (ELF or kdump)",
        "for a QEMU log or a console log use --qemu-log / --console",
    )


def elf_truncation(path: Path) -> str | None:
    """Why an ELF dump is unusable (truncated, or not ELF at all), or None when it looks whole."""
    try:
        with opened(path, follow=False) as f:
            end = max((s.offset + s.filesz for s in read_core(f).segments), default=0)
            size = os.fstat(f.fileno()).st_size
    except ElfError as exc:
        return f"{path.name} is not a valid ELF dump ({exc})"
    except InputError as exc:
        return str(exc)
    if end > size:
        return f"{path.name} is truncated: {size} bytes, its segments need {end}"
    return None


def _cut_notes(files: Mapping[str, Path]) -> list[str]:
    """What analysis will leave out of text inputs larger than it reads (docs/limits.md)."""
    notes = []
    for kind, path in files.items():
        limit, keep = text_limit(kind)
        if kind in TEXT_KINDS and (size := _size(path)) > limit:
            part = "last" if keep == "tail" else "first"
            notes.append(f"{path.name} is {size} bytes: only its {part} {limit} were analyzed")
    return notes


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def gather(
    target: Path | None,
    *,
    qemu_log: Path | None = None,
    console: Path | None = None,
    vmlinux: Path | None = None,
    debuginfo_dirs: Iterable[Path] = (),
    cpu_vendor: Vendor | None = None,
) -> tuple[Inputs, list[str]]:
    """The inputs to analyze and the problems already found in them (e.g. a damaged bundle)."""
    problems: list[str] = []
    extra = {k: p for k, p in (("qemu-log", qemu_log), ("console", console)) if p is not None}
    for kind, path in extra.items():
        why = refusal(path)
        if why is not None:
            raise InputError(f"{kind} {path} is {why}", f"give a {kind} file")
    dirs = tuple(debuginfo_dirs)
    if target is None:
        if not extra:
            raise InputError("nothing to analyze", "give a bundle, a vmcore, or --qemu-log FILE")
        label = ", ".join(str(p) for p in extra.values())
        problems += _cut_notes(extra)
        return Inputs(label, "text", extra, vmlinux, dirs, cpu_vendor), problems
    if not target.exists():
        raise InputError(f"{target} {absent(target)}")
    if target.is_dir():
        if not (target / MANIFEST).exists():
            raise InputError(f"{target} is not a bundle ({MANIFEST} missing)")
        bundle = Bundle.open(target)
        problems += [f"bundle: {p}" for p in bundle.verify(hash_memory=False)]
        problems += [f"capture: {r}" for r in bundle.manifest.reasons]
        unusable = bundle.unusable()  # left out: never opened, let alone read
        arts = [a for a in bundle.manifest.artifacts if a.path not in unusable]
        files = {a.kind: bundle.path / a.path for a in arts} | extra
        dump = files.get("memory-elf")
        damage = elf_truncation(dump) if dump else None
        problems += [damage] if damage else []
        problems += _cut_notes(files)
        vendor = cpu_vendor or VENDOR_OF_KVM.get(bundle.manifest.host.get("kvm_module", ""))
        return Inputs(str(target), "bundle", files, vmlinux, dirs, vendor), problems
    kind = _memory_kind(target)
    problems += _cut_notes(extra)
    damage = elf_truncation(target) if kind == "memory-elf" else None
    problems += [damage] if damage else []
    files = {kind: target, **extra}
    return Inputs(str(target), "vmcore", files, vmlinux, dirs, cpu_vendor), problems


def analyze(
    inputs: Inputs,
    problems: Iterable[str] = (),
    analyzers: Iterable[str] | None = None,
    on_result: Callable[[AnalyzerResult], None] | None = None,
) -> Report:
    """Run the analyzers (all, or those named) on ``inputs`` and decide the verdict.

    An analyzer that fails (a bad bundle record included) is a ``failed`` result, not an
    exception. Raises: InputError for an unknown analyzer name, or a ``--vmlinux`` that is
    missing, not ELF or of another build than the dump."""
    names = list(analyzers or ())
    ctx = Context(inputs)
    if not names or KERNEL_ANALYZER in names:
        start_kernel_read(ctx)  # drgn's import and load beside the analyzers' import and run
    return analyze_with(inputs, select(names), problems, on_result, ctx)


def analyze_with(
    inputs: Inputs,
    chosen: Sequence[type[Analyzer]],
    problems: Iterable[str] = (),
    on_result: Callable[[AnalyzerResult], None] | None = None,
    ctx: Context | None = None,
) -> Report:
    """:func:`analyze` with the analyzer classes already selected (triage selects them once),
    and perhaps the context already made."""
    ctx = ctx or Context(inputs)
    if inputs.vmlinux is not None and ctx.memory is not None:
        _ = ctx.vmlinux  # a mismatched --vmlinux is refused here, before any analyzer uses it
    results = run_all(ctx, chosen, on_result)
    return Report(inputs.label, inputs.kind, decide(results), tuple(results), tuple(problems))
