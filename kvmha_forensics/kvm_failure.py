"""The KVM failure model the KVM analyzers share: which failure in QEMU's log stopped the
guest, the register dump QEMU printed with it, the vCPU that dump belongs to, and a pointer
into the log. Analyzers read it; none imports another analyzer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .analysis import Context, Evidence
from .sources.qemu_log import EntryFailure, KvmInternalError, QemuLog, RunFailure, Shutdown
from .sources.registers import VcpuRegisters


@dataclass(frozen=True, slots=True)
class PrimaryFailure:
    """The failure that stopped the guest: the earliest of the log's first internal error,
    first entry failure, first ``kvm run failed`` and first traced KVM_EXIT_SHUTDOWN."""

    kind: Literal["internal-error", "entry-failure", "run-failure", "shutdown"]
    line: int
    internal: KvmInternalError | None = None
    entry: EntryFailure | None = None
    run: RunFailure | None = None
    shutdown: Shutdown | None = None


def primary_failure(log: QemuLog) -> PrimaryFailure | None:
    """The earliest KVM failure in ``log``, or ``None`` when it has none."""
    candidates: list[PrimaryFailure] = []
    if log.internal_errors:
        err = log.internal_errors[0]
        candidates.append(PrimaryFailure("internal-error", err.line, internal=err))
    if log.entry_failures:
        entry = log.entry_failures[0]
        candidates.append(PrimaryFailure("entry-failure", entry.line, entry=entry))
    if log.run_failures:
        run = log.run_failures[0]
        candidates.append(PrimaryFailure("run-failure", run.line, run=run))
    if log.shutdowns:
        down = log.shutdowns[0]
        candidates.append(PrimaryFailure("shutdown", down.line, shutdown=down))
    return min(candidates, key=lambda c: c.line) if candidates else None


def failing_dump(log: QemuLog, failure: PrimaryFailure) -> VcpuRegisters | None:
    """The register dump QEMU printed for ``failure``: the one paired with an internal error,
    else the first dump from the failure's line on (entry and run failures are followed by
    theirs; a paste may have joined it onto the message's line)."""
    if failure.internal is not None:
        index = failure.internal.register_dump
        return log.register_dumps[index] if index is not None else None
    after = (i for i, (first, _) in enumerate(log.register_dump_lines) if first >= failure.line)
    index = next(after, 0)
    return log.register_dumps[index] if index < len(log.register_dumps) else None


def failing_cpu(ctx: Context, dump: VcpuRegisters | None) -> int | None:
    """The vCPU number of ``dump``: its own ``CPU#N``, or the captured ``registers.txt``
    dump with the same RIP and general registers (stderr dumps carry no CPU number), or for
    a bare ELF vmcore the vCPU whose NT_PRSTATUS note has the same RIP, RSP and RAX."""
    if dump is None:
        return None
    if dump.cpu is not None:
        return dump.cpu
    if ctx.has("registers"):
        same = [r.cpu for r in ctx.registers if r.rip == dump.rip and r.gprs == dump.gprs]
        return same[0] if len(same) == 1 else None
    sp, ax = (dump.gprs.get(n) for n in (("rsp", "rax") if dump.width == 64 else ("esp", "eax")))
    same = [n.cpu for n in ctx.dump_vcpus if (n.rip, n.rsp, n.rax) == (dump.rip, sp, ax)]
    return same[0] if len(same) == 1 else None


def log_evidence(ctx: Context, line: int, excerpt: str) -> Evidence:
    """A pointer to ``line`` (0-based) of the QEMU log."""
    path = ctx.path("qemu-log")
    return Evidence(path.name if path else "qemu-log", f"line {line + 1}", excerpt)
