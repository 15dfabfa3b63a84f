"""API-only answers: QMP's queries, events and dumps in libvirt's own terms (the tables
that map libvirt's states, reasons and jobs to QEMU's, and the dump through
``virDomainCoreDumpWithFormat``)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Protocol

from ..errors import CommandFailed
from ..vocabulary import JSON, JSONObject
from .base import Event
from .libvirt_hub import lib

# virDomainState → QEMU runstate; PAUSED by its reason (virDomainPausedReason). A pause
# libvirt did not ask for and cannot explain is "unknown": a KVM internal error looks so.
PAUSED_RUNSTATES = ("paused", "paused", "inmigrate", "save-vm", "paused", "io-error",
                    "watchdog", "restore-vm", "shutdown", "save-vm", "guest-panicked",
                    "prelaunch", "postmigrate", "postmigrate", "paused")  # fmt: skip
STATE_RUNSTATES = {1: "running", 2: "running", 4: "shutdown", 6: "guest-panicked",
                   7: "suspended"}  # fmt: skip
STATE_NAMES = ("nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed",
               "pmsuspended")  # fmt: skip
BLOCK_JOB_TYPES = {1: "stream", 2: "mirror", 3: "commit", 4: "commit", 5: "backup"}
JOB_OPERATIONS = ("unknown", "start", "save", "restore", "migration-in", "migration-out",
                  "snapshot", "snapshot-revert", "dump", "backup", "snapshot-delete")  # fmt: skip


def as_qmp(event: Event) -> list[Event]:
    """A lifecycle event as the QMP events it stands for (API-only mode)."""
    kind, detail = event.data.get("event"), event.data.get("detail")
    qmp: list[tuple[str, JSONObject]] = []
    if kind == "crashed":
        name = "GUEST_PANICKED" if detail == "panicked" else "GUEST_CRASHLOADED"
        qmp = [(name, {"action": "pause"}), ("STOP", {})]
    elif kind == "suspended":
        qmp = [("WATCHDOG", {"action": "pause"})] if detail == "watchdog" else []
        qmp.append(("STOP", {}))
    elif kind == "resumed":
        qmp = [("RESUME", {})]
    elif kind == "shutdown":
        qmp = [("SHUTDOWN", {"guest": detail == "guest", "reason": str(detail)})]
    return [Event(n, d, event.timestamp) for n, d in qmp]


def reason_names(lv: ModuleType, state: str) -> dict[int, str]:
    """libvirt's reason constants for ``state``, as virsh words (VIR_DOMAIN_PAUSED_IOERROR
    → ``ioerror``)."""
    prefix = f"VIR_DOMAIN_{state.upper()}_"
    if state == "shutoff":
        prefix = "VIR_DOMAIN_SHUTOFF_"
    return {
        int(getattr(lv, n)): n.removeprefix(prefix).lower().replace("_", " ")
        for n in dir(lv)
        if n.startswith(prefix) and not n.endswith("_LAST")
    }


def qmp_return(command: str, reply: object) -> JSON:
    try:
        message = json.loads(str(reply))
    except ValueError as exc:
        raise CommandFailed(f"libvirt's reply to {command} is not JSON") from exc
    if isinstance(message, dict) and "error" in message:
        error = message["error"]
        desc = error.get("desc", error) if isinstance(error, dict) else error
        raise CommandFailed(f"QEMU refused {command}: {desc}")
    return message.get("return") if isinstance(message, dict) else None


def job_answer(command: str, stats: dict[str, Any]) -> JSON:
    """``query-jobs``/``query-migrate`` from ``virDomainGetJobStats``: libvirt runs one job
    per domain; an outgoing migration is QEMU's migration, any other running job is a job."""
    running = int(stats.get("type", 0)) not in (0, 3, 4)  # none, completed, failed
    op = int(stats.get("operation", 0))
    operation = JOB_OPERATIONS[op] if op < len(JOB_OPERATIONS) else str(op)
    migrating = running and operation == "migration-out"
    if command == "query-migrate":
        return {"status": "active"} if migrating else {}
    if running and not migrating and operation != "dump":
        return [{"id": f"libvirt-{operation}", "type": operation, "status": "running"}]
    return []


class Dumped(Protocol):
    """What :class:`Dump` needs of a guest: its libvirt domain and its event queue."""

    dom: Any
    queue: asyncio.Queue[Event | None]


class Dump:
    """API-only memory dump: ``virDomainCoreDumpWithFormat`` (memory only) in a thread,
    polled like QEMU's ``query-dump``, with ``DUMP_COMPLETED`` at the end."""

    FORMATS: ClassVar[dict[str, str]] = {"elf": "VIR_DOMAIN_CORE_DUMP_FORMAT_RAW",
               "kdump-zlib": "VIR_DOMAIN_CORE_DUMP_FORMAT_KDUMP_ZLIB"}  # fmt: skip

    def __init__(self, guest: Dumped, protocol: str, fmt: str) -> None:
        if not protocol.startswith("file:"):
            raise CommandFailed(f"dump to {protocol!r}: libvirt's dump API writes to a path")
        if fmt not in self.FORMATS:
            raise CommandFailed(f"dump format {fmt} is not one libvirt writes")
        self.guest = guest
        self.path = protocol.removeprefix("file:")
        self.fmt = fmt
        self.error: str | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        lv, _ = lib()
        fmt = getattr(lv, self.FORMATS[self.fmt])
        dom, path = self.guest.dom, self.path
        try:
            await asyncio.to_thread(dom.coreDumpWithFormat, path, fmt, lv.VIR_DUMP_MEMORY_ONLY)
        except lv.libvirtError as exc:
            self.error = str(exc.get_error_message())
        data: JSONObject = {"result": {"status": "failed" if self.error else "completed"}}
        if self.error:
            data["error"] = self.error
        self.guest.queue.put_nowait(Event("DUMP_COMPLETED", data, time.time()))

    async def query(self) -> JSONObject:
        if self.task is not None and self.task.done():
            size = Path(self.path).stat().st_size if Path(self.path).exists() else 0
            return {"status": "failed" if self.error else "completed",
                    "completed": size, "total": size}  # fmt: skip
        lv, _ = lib()
        try:
            stats = await asyncio.to_thread(self.guest.dom.jobStats, 0)
        except lv.libvirtError:
            stats = {}
        done = int(stats.get("memory_processed", stats.get("data_processed", 0)))
        total = int(stats.get("memory_total", stats.get("data_total", 0)))
        return {"status": "active", "completed": done, "total": total}
