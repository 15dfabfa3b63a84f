"""Storage: which disk failed, on what operation, with which errno (BLOCK_IO_ERROR, io-status,
or libvirt's ``IO error`` line in a domain log)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from kvmha_forensics.analysis import Confidence, Context, Evidence, Finding, Outcome, Requirement
from kvmha_forensics.vocabulary import Cause


@dataclass(frozen=True, slots=True)
class DiskError:
    device: str
    node: str | None
    operation: str | None
    reason: str | None
    nospace: bool
    source: str


#: strerror(ENOSPC), as libvirt's domain log gives the reason.
_ENOSPC = "No space left on device"


def disk_errors(ctx: Context) -> list[DiskError]:
    """From BLOCK_IO_ERROR events, else from the io-status that query-block keeps, else from
    the ``IO error`` lines libvirt wrote into the domain log (a pasted log has no capture)."""
    found = []
    for event in ctx.events():
        if event.name != "BLOCK_IO_ERROR":
            continue
        data = event.data
        found.append(
            DiskError(
                str(data.get("device") or data.get("qom-path") or "?"),
                _opt_str(data.get("node-name")),
                _opt_str(data.get("operation")),
                _opt_str(data.get("reason")),
                bool(data.get("nospace")),
                "BLOCK_IO_ERROR event",
            )
        )
    if found:
        return found
    found = [
        DiskError(d.device, d.node, None, None, d.io_status == "nospace", "query-block io-status")
        for d in ctx.block_devices
        if d.io_status in ("failed", "nospace")
    ]
    log = ctx.qemu_log if not found and ctx.has("qemu-log") else None
    for e in log.io_errors if log else ():
        source = f"line {e.line + 1}"
        found.append(DiskError(e.device, e.node, None, e.reason, e.reason == _ENOSPC, source))
    return found


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


class Storage:
    """A guest stopped by werror/rerror=stop or enospc: the disk, the operation, the errno."""

    name: ClassVar[str] = "storage"
    version: ClassVar[int] = 1
    description: ClassVar[str] = "disk I/O errors that stopped the guest"
    #: A capture's events and identity, or a domain log alone: it checks what it has.
    requires: ClassVar[frozenset[Requirement]] = frozenset()
    refines: ClassVar[frozenset[str]] = frozenset()

    def run(self, ctx: Context) -> Outcome:
        errors = disk_errors(ctx)
        facts = {"disk_errors": [asdict(e) for e in errors]}
        if not errors:
            return Outcome((), facts)
        first = errors[0]
        cause: Cause = "storage-nospace" if first.nospace else "storage-io-error"
        what = "ran out of space" if first.nospace else "returned an I/O error"
        op = f" on {first.operation}" if first.operation else ""
        reason = f" ({first.reason})" if first.reason else ""
        culprit = first.node or first.device
        logged = first.source.startswith("line")  # libvirt's record of QEMU's event
        then = (
            "libvirt recorded it in the domain log, which does not say whether the guest "
            "paused (werror/rerror=stop) or saw the error (report)"
            if logged
            else "QEMU paused the guest as its werror/rerror policy asks"
        )
        finding = Finding(
            cause=cause,
            summary=f"Disk {first.device} (node {culprit}) {what}{op}{reason}; {then}.",
            signature=f"{cause}: {first.operation or 'unknown operation'} on disk",
            confidence=Confidence.RECORDED if logged else Confidence.CONFIRMED,
            culprit=f"disk {culprit}",
            evidence=(
                Evidence(_where(ctx, first.source), first.source, f"{first.device}: {what}"),
            ),
        )
        return Outcome((finding,), facts)


def _where(ctx: Context, source: str) -> str:
    """The file a disk error was read from."""
    if "query" in source:
        return "identity.json"
    if "event" in source:
        return "events.json"
    path = ctx.path("qemu-log")
    return path.name if path else "qemu-log"
