"""Capture: a frozen guest becomes a self-describing, verified bundle.

Every step is timed and recorded in the manifest; a failing step makes the bundle
*incomplete* and says why, it never makes it vanish. The guest's state is never changed:
no ``cont``, ``stop``, ``system_reset`` or ``quit`` is ever sent, and the runstate is
checked again at the end.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from ..errors import BusyError, ForensicsError, GuestStateError, InputError
from ..ha.freeze import FreezeState, assess
from ..input_files import read_input, refusal
from ..locks import exclusive
from ..serial import to_json
from ..sources import flattened, vmcoreinfo
from ..sources.registers import VcpuRegisters, parse_register_dumps
from ..transport.base import Address, Event, Guest, Managed
from ..transport.local import process_started
from ..transport.replies import name_of, uuid_of
from ..vocabulary import JSONObject
from ..x86.code import code_at_rip
from ..x86.qemu_note import vcpu_states
from . import bundle as bundle_mod
from . import partials
from .bundle import VENDOR_OF_KVM, kvm_module
from .direct import DirectResult, write_core
from .dump import dump_memory
from .guestram import LayoutError, ram_ranges
from .hostpages import HostMemoryError

if TYPE_CHECKING:
    from .kdumpwrite import KdumpResult
from .memory_source import MemorySource, why_not_direct
from .records import kvm_exit_record, registers_record

log = logging.getLogger(__name__)

MemoryFormat = Literal["elf", "kdump-zlib", "none"]
LOG_HEAD = LOG_TAIL = 4 << 20  # a runaway QEMU log keeps its first and last 4 MiB


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    endpoint: Address
    out: Path
    memory_format: MemoryFormat = "elf"
    qemu_log: Path | None = None
    timeout: float = 600.0
    live: bool = False
    once: bool = False  # a complete bundle of this freeze in ``out`` already: that is the result
    memory_source: MemorySource = "auto"


@dataclass(frozen=True, slots=True)
class CaptureResult:
    bundle: Path
    manifest: bundle_mod.Manifest
    freeze: FreezeState
    existing: bool = False  # ``once``: the bundle was there before


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress report: a step starting or ending, or dump bytes done out of total."""

    step: str
    status: Literal["start", "ok", "failed", "skipped", "progress"]
    completed: int = 0
    total: int = 0
    detail: str | None = None


ProgressSink = Callable[[Progress], None]


def _ignore(_: Progress) -> None:
    return None


@contextmanager
def guest_lock(pid: int | None, endpoint: Address) -> Iterator[None]:
    """One capture per guest at a time (keyed by QEMU's pid, else by the endpoint), held in
    the private runtime directory (:mod:`..locks`)."""
    key = str(pid) if pid else re.sub(r"[^A-Za-z0-9]+", "_", str(endpoint))
    busy = BusyError(
        f"another capture of this guest (qemu pid {pid}) is running",
        "wait for it to finish; QEMU runs one memory dump at a time",
    )
    with exclusive(f"capture-{key}.lock", busy):
        yield


def qemu_cmdline(pid: int | None) -> list[str] | None:
    if not pid:
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def find_stderr(pid: int | None) -> tuple[Path, str] | None:
    """QEMU's standard error, read through QEMU's own descriptor (``/proc/PID/fd/2``) when it
    is a regular file; with the name it has there."""
    if not pid:
        return None
    fd = Path(f"/proc/{pid}/fd/2")
    try:
        return (fd, os.readlink(fd)) if refusal(fd) is None else None
    except OSError:
        return None


def find_serial(argv: list[str] | None) -> Path | None:
    """The serial console file from ``-serial file:PATH`` (or ``-chardev file,path=``)."""
    for i, arg in enumerate(argv or []):
        value = argv[i + 1] if argv and i + 1 < len(argv) else ""
        if arg == "-serial" and value.startswith("file:"):
            return Path(value[5:])
        if arg == "-chardev" and value.startswith("file,"):
            found = re.search(r"path=([^,]+)", value)
            if found:
                return Path(found.group(1))
    return None


def serial_descriptor(pid: int, path: Path) -> Path:
    """QEMU's own descriptor (``/proc/PID/fd/N``) on the serial console file ``path``.

    What ``path`` names now must be a file QEMU has open: a link planted or swapped there
    after QEMU started (say, to ``/etc/shadow``) names another file, and is refused
    (:class:`InputError`). The file is then read through QEMU's descriptor, not the path."""
    proc = Path(f"/proc/{pid}")
    if not path.is_absolute():
        path = Path(os.readlink(proc / "cwd")) / path
    try:
        named = os.stat(path)
    except OSError as exc:
        raise InputError(f"serial console {path} is missing ({exc.strerror})") from exc
    for entry in sorted(os.listdir(proc / "fd"), key=int):
        fd = proc / "fd" / entry
        try:
            st = os.stat(fd)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (named.st_dev, named.st_ino):
            return fd
    raise InputError(f"{path} is not the file QEMU has open for its serial console (a link"
                     " changed?): not read")  # fmt: skip


def _held_or_unlinked(pid: int | None, path: Path) -> tuple[Path, bool]:
    """How to read a console file the manager names: through QEMU's descriptor when QEMU
    holds it, else by its path with a link there refused (virtlogd writes ``<log file=…>``)."""
    if pid:
        with contextlib.suppress(InputError):
            return serial_descriptor(pid, path), True
    return path, False


def bounded_read(path: Path, follow: bool = True) -> bytes:
    """A log's bytes, or its first and last 4 MiB with a marker between when it is larger;
    a FIFO, a device or a missing file is an :class:`InputError` (:mod:`..input_files`), and
    so is a link when ``follow`` is false."""
    return read_input(path, LOG_HEAD + LOG_TAIL, "ends", follow).data


def _bundle_name(identity: JSONObject, pid: int | None) -> str:
    """``kvmha-NAME-TIMESTAMP``; a guest named ``kvmha-…`` (the lab's) is not prefixed twice."""
    name = str(identity.get("name") or (f"pid{pid}" if pid else "guest"))
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:64].removeprefix("kvmha-")
    return f"kvmha-{safe}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


async def _identity(guest: Guest) -> JSONObject:
    async def ask(command: str, arguments: JSONObject | None) -> object:
        try:
            return await guest.execute(command, arguments)
        except ForensicsError as exc:
            return {"error": str(exc)}

    requests: dict[str, JSONObject | None] = {
        "query-name": None, "query-uuid": None, "query-kvm": None, "query-target": None,
        "query-cpus-fast": None, "query-memory-size-summary": None, "query-block": None,
        "query-machines": None, "qom-get": {"path": "/machine", "property": "type"},
    }  # fmt: skip
    replies = await asyncio.gather(*(ask(c, a) for c, a in requests.items()))
    answers = dict(zip(requests, replies, strict=True))
    machine = _machine(answers.pop("query-machines"), answers.pop("qom-get"))
    name = name_of(answers["query-name"])
    managed = await guest.manager_identity() if isinstance(guest, Managed) else None
    return {
        "qemu_version": guest.qemu_version,
        "qemu_pid": guest.pid,
        "name": name,
        "uuid": uuid_of(answers["query-uuid"]),
        "kvm": answers["query-kvm"],
        "target": answers["query-target"],
        "vcpus": answers["query-cpus-fast"],
        "memory": answers["query-memory-size-summary"],
        "block": answers["query-block"],
        "machine": machine,
        "cmdline": qemu_cmdline(guest.pid),
        **({"libvirt": managed} if managed is not None else {}),
    }


def _machine(machines: object, qom_type: object) -> JSONObject | None:
    """The running machine type's ``query-machines`` entry, found through the QOM type of
    ``/machine`` (e.g. ``pc-i440fx-7.2-machine``): QEMU 7.2 marks none of them as current."""
    if not isinstance(qom_type, str):
        return None
    name = qom_type.removesuffix("-machine")
    entries = machines if isinstance(machines, list) else []
    found = (m for m in entries if isinstance(m, dict) and m.get("name") == name)
    fallback: JSONObject = {"name": name}
    return cast(JSONObject, next(found, fallback))


class Capture:
    """One capture run: the steps, in order, into one bundle."""

    def __init__(self, guest: Guest, opts: CaptureOptions, sink: ProgressSink) -> None:
        self.guest = guest
        self.opts = opts
        self.sink = sink
        self.deadline = time.monotonic() + opts.timeout
        self.limit = "--timeout"  # what set the deadline, as errors name it
        self.writer: bundle_mod.BundleWriter | None = None
        self.vcpus: list[VcpuRegisters] = []
        self.mtree = ""
        self.running = False
        self.choice = "none"

    def cut_short(self, seconds: float, why: str) -> None:
        """End the capture within ``seconds`` (a stopping watcher's grace); ``why`` names that
        limit in the step that it ends."""
        until = time.monotonic() + seconds
        if until < self.deadline:
            self.deadline, self.limit = until, why

    @contextmanager
    def step(self, name: str) -> Iterator[bundle_mod.StepRecorder]:
        assert self.writer is not None
        self.sink(Progress(name, "start"))
        try:
            with self.writer.step(name) as rec:
                yield rec
        except (ForensicsError, OSError) as exc:
            self.sink(Progress(name, "failed", detail=str(exc)))
            log.warning("capture step %s failed: %s", name, exc)
            return
        self.sink(Progress(name, "skipped" if rec.skipped else "ok", detail=rec.detail))

    async def run(self, prior_events: tuple[Event, ...]) -> CaptureResult:
        opts, guest = self.opts, self.guest
        before = await assess(guest, prior_events)
        if before.state == "running" and not opts.live:
            raise GuestStateError(
                "the guest is running, not frozen",
                "capture takes a frozen guest; pass --live to dump it anyway"
                " (QEMU pauses it during the dump, then resumes it)",
            )
        identity = await _identity(guest)
        w = self.writer = bundle_mod.BundleWriter(opts.out, _bundle_name(identity, guest.pid))
        w.guest = {
            "name": identity["name"],
            "uuid": identity["uuid"],
            "qmp": str(opts.endpoint),
            "qemu_pid": guest.pid,
            "runstate": before.runstate,
        }
        self.running = before.state == "running"
        try:
            with self.step("freeze"):
                w.write_json("freeze.json", to_json(before), "freeze", "runstate, cause, events")
            with self.step("identity"):
                w.write_json("identity.json", identity, "identity", "QEMU, machine, vCPUs, disks")
            self.choice = "none" if opts.memory_format == "none" else await self._choose()
            paused = self.running and self.choice == "direct"
            if paused:  # --live: one consistent state for the registers and the memory
                await guest.execute("stop")
            try:
                await self._registers()
                await self._qemu_log(identity)
                await self._mtree()
                await self._memory()
                await self._note_registers()
            finally:
                if paused:
                    await guest.execute("cont")
            await self._code()
            await self._after(before)
        except BaseException:
            self._abandon()
            raise
        path, manifest = w.finish()
        return CaptureResult(path, manifest, before)

    def _abandon(self) -> None:
        if self.writer is not None:
            self.writer.abandon()

    async def _registers(self) -> None:
        assert self.writer
        if isinstance(self.guest, Managed) and not self.guest.monitor:
            return  # no monitor commands: the registers come from the dump (_note_registers)
        with self.step("registers"):
            text = await self.guest.hmp("info registers -a")
            self.writer.write_bytes(
                "registers.txt", text.encode(), "registers", "HMP 'info registers -a'"
            )
            self.vcpus = parse_register_dumps(text)
            parsed = registers_record(self.vcpus)
            self.writer.write_json(
                "registers.json", parsed, "registers-parsed", "registers.txt as typed fields"
            )
        with self.step("vcpu-stats") as rec:
            try:
                stats = await self.guest.execute("query-stats", {"target": "vcpu"})
            except ForensicsError as exc:
                rec.skip(f"query-stats unavailable: {exc}")
                return
            self.writer.write_json("vcpu-stats.json", stats, "vcpu-stats", "KVM vCPU counters")

    async def _qemu_log(self, identity: JSONObject) -> None:
        assert self.writer
        argv = cast(list[str] | None, identity.get("cmdline"))
        with self.step("qemu-log") as rec:
            given = self.opts.qemu_log
            found = (given, str(given)) if given else find_stderr(self.guest.pid)
            managed = self.guest.qemu_log() if isinstance(self.guest, Managed) else None
            if found is None and managed is not None:
                data, where = managed
                self._kvm_exit(self.writer.write_bytes("qemu-stderr.log", data, "qemu-log", where))
                rec.detail = where
            elif found is None:
                rec.skip(
                    "no QEMU log: pass --qemu-log (QEMU's stderr is not a regular file);"
                    " the KVM exit reason is only written there",
                    incomplete=False,
                )
            else:
                source, shown = found
                data = bounded_read(source)
                log = self.writer.write_bytes("qemu-stderr.log", data, "qemu-log", f"from {shown}")
                rec.detail = shown
                self._kvm_exit(log)
        with self.step("console") as rec:
            console = await self.guest.console_path() if isinstance(self.guest, Managed) else None
            if console is not None:  # the manager's file (libvirt: QEMU or virtlogd writes it)
                try:
                    data = bounded_read(*_held_or_unlinked(self.guest.pid, console))
                except InputError as exc:
                    rec.skip(str(exc))
                    return
                self.writer.write_bytes("console.log", data, "console", f"serial console {console}")
                return
            serial = find_serial(argv)
            if serial is None or not self.guest.pid:
                rec.skip("no serial console file on QEMU's command line")
                return
            try:
                fd = serial_descriptor(self.guest.pid, serial)
            except InputError as exc:
                rec.skip(str(exc))
                return
            data = bounded_read(fd)
            self.writer.write_bytes("console.log", data, "console", f"serial console {serial}")

    async def _note_registers(self) -> None:
        """Without monitor commands, each vCPU's registers from the ELF dump's QEMU notes."""
        w = self.writer
        assert w
        if not isinstance(self.guest, Managed) or self.guest.monitor:
            return
        with self.step("registers") as rec:
            dump = next((w.tmp / a.path for a in w.artifacts if a.kind == "memory-elf"), None)
            if dump is None:
                rec.skip("no monitor commands, and no ELF dump to take the registers from")
                return
            self.vcpus = await asyncio.to_thread(vcpu_states, dump)
            if not self.vcpus:
                rec.skip("the dump has no QEMU notes with the vCPUs' registers")
                return
            what = "from the dump's per-vCPU QEMU notes (no monitor commands; EFER from CS.L)"
            w.write_json("registers.json", registers_record(self.vcpus), "registers-parsed", what)

    def _kvm_exit(self, log: bundle_mod.Artifact) -> None:
        assert self.writer
        vendor = VENDOR_OF_KVM.get(kvm_module())
        exit_record = kvm_exit_record(self.writer.tmp / log.path, vendor)
        if exit_record is not None:
            what = "the KVM failures in QEMU's log, parsed and decoded"
            self.writer.write_json("kvm-exit.json", exit_record, "kvm-exit", what)

    async def _mtree(self) -> None:
        assert self.writer
        if isinstance(self.guest, Managed) and not self.guest.monitor:
            with self.step("mtree") as rec:
                rec.skip("HMP 'info mtree' needs monitor commands", incomplete=False)
            return
        with self.step("mtree"):
            text = self.mtree = await self.guest.hmp("info mtree -f")
            self.writer.write_bytes("mtree.txt", text.encode(), "mtree", "HMP 'info mtree -f'")

    async def _memory(self) -> None:
        w, opts = self.writer, self.opts
        assert w
        choice = self.choice
        with self.step("memory") as rec:
            if choice == "none":
                rec.skip("--memory-format none")
                return
            if choice == "impossible":
                rec.skip(
                    "--memory-source direct is impossible (see memory-source)", incomplete=True
                )
                return
            if choice == "direct":
                try:
                    rec.detail = await self._direct(w)
                    choice = "done"
                except (HostMemoryError, LayoutError) as exc:
                    if opts.memory_source == "direct":
                        raise ForensicsError(f"direct read of guest memory failed: {exc}") from exc
                    rec.detail = f"direct read failed ({exc}): QEMU's dump-guest-memory instead"
                    self.sink(Progress("memory", "start", detail=rec.detail))
            if choice != "done":
                await (self._dump_elf(w) if opts.memory_format == "elf" else self._dump_kdump(w))
        if opts.memory_format == "elf":
            await self._vmcoreinfo(w)

    async def _choose(self) -> str:
        """Record which way memory is captured and why: direct, dump, or impossible (direct
        was forced but cannot be done)."""
        choice = "impossible"
        with self.step("memory-source") as rec:
            forced = self.opts.memory_source
            why = "--memory-source dump" if forced == "dump" else None
            if isinstance(self.guest, Managed) and not self.guest.monitor:
                why = why or "no monitor commands (the RAM layout needs HMP): libvirt's dump API"
            why = why or await why_not_direct(self.guest, self.opts.memory_format)
            if why and forced == "direct":
                raise GuestStateError(f"--memory-source direct is impossible here: {why}")
            if why:
                rec.detail = f"dump-guest-memory: {why}"
            else:
                pause = " (paused for it: --live)" if self.running else ""
                rec.detail = f"direct: read from QEMU's memory, pid {self.guest.pid}{pause}"
            self.sink(Progress("memory", "start", detail=rec.detail))
            choice = "dump" if why else "direct"
        return choice

    async def _direct(self, w: bundle_mod.BundleWriter) -> str:
        """Read guest RAM from QEMU's process into memory.elf or memory.kdump; a summary for
        the manifest."""
        pid = self.guest.pid
        assert pid is not None
        loop = asyncio.get_running_loop()

        def report(done: int, total: int) -> None:
            loop.call_soon_threadsafe(self.sink, Progress("memory", "progress", done, total))

        def expired() -> bool:
            return time.monotonic() > self.deadline

        ranges = await ram_ranges(
            self.mtree or await self.guest.hmp("info mtree -f"), self.guest.hmp
        )
        vcpus = self.vcpus or parse_register_dumps(await self.guest.hmp("info registers -a"))
        kdump = self.opts.memory_format == "kdump-zlib"
        rel = "memory.kdump" if kdump else "memory.elf"
        fd = w.create(rel, readable=kdump)  # the kdump file is hashed as it is on disk
        try:
            if kdump:
                from .kdumpwrite import write_kdump

                result: DirectResult | KdumpResult = await asyncio.to_thread(
                    write_kdump, pid, ranges, vcpus, fd, report, expired
                )
            else:
                result = await asyncio.to_thread(
                    write_core, pid, ranges, vcpus, fd, report, expired
                )
        except BaseException:
            (w.tmp / rel).unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        source = f"guest RAM read from QEMU (pid {pid})"
        if isinstance(result, DirectResult):
            w.add(rel, "memory-elf", f"{source}, ELF", chunks=result.chunks)
        else:
            w.add(rel, "memory-kdump", f"{source}, kdump-zlib", chunks=result.chunks)
            if result.vmcoreinfo:
                w.write_bytes("vmcoreinfo.txt", result.vmcoreinfo.encode(), "vmcoreinfo",
                              "from guest memory's VMCOREINFO note")  # fmt: skip
        return f"direct: {result.summary()}"

    async def _code(self) -> None:
        w = self.writer
        assert w
        with self.step("code") as rec:
            dump = next((w.tmp / a.path for a in w.artifacts if a.kind == "memory-elf"), None)
            if dump is None:
                rec.skip("needs the ELF memory dump (the log's Code= line may still have them)")
                return
            found = await asyncio.to_thread(code_at_rip, dump, self.vcpus)
            what = "bytes around each vCPU's RIP, from guest RAM via its page tables"
            w.write_json("code.json", [c.to_json() for c in found], "code", what)

    async def _dump_elf(self, w: bundle_mod.BundleWriter) -> None:
        rel = "memory.elf"
        fd = w.create(rel)
        try:
            result = await self._dump(fd, w.tmp / rel, "elf")
        finally:
            os.close(fd)
        w.add(rel, "memory-elf", "dump-guest-memory, ELF", result)

    async def _vmcoreinfo(self, w: bundle_mod.BundleWriter) -> None:
        dump = next((w.tmp / a.path for a in w.artifacts if a.kind == "memory-elf"), None)
        if dump is None:
            return
        with self.step("vmcoreinfo") as rec:
            if vmcoreinfo.from_elf_note(dump):
                rec.skip("in the dump's VMCOREINFO note")
                return
            found = await asyncio.to_thread(vmcoreinfo.scan, dump)
            if found is None:
                rec.skip("no VMCOREINFO note and none found in guest memory")
                return
            w.write_bytes("vmcoreinfo.txt", found.encode(), "vmcoreinfo", "recovered from memory")
            rec.detail = "recovered from guest memory (no note in the dump)"

    async def _dump_kdump(self, w: bundle_mod.BundleWriter) -> None:
        stream = ".memory.flattened"
        fd = w.create(stream)
        try:
            await self._dump(fd, w.tmp / stream, "kdump-zlib")
        finally:
            os.close(fd)
        rel = "memory.kdump"
        out = w.create(rel, readable=True)
        try:
            await asyncio.to_thread(flattened.rearrange, w.tmp / stream, out)
            info = await asyncio.to_thread(vmcoreinfo.scan, w.tmp / stream)
            release = vmcoreinfo.parse(info).get("OSRELEASE") if info else None
            flattened.fix_utsname(out, release or "unknown")
        finally:
            os.close(out)
            (w.tmp / stream).unlink()
        w.add(rel, "memory-kdump", "dump-guest-memory, kdump-zlib, rearranged")
        if info:
            w.write_bytes("vmcoreinfo.txt", info.encode(), "vmcoreinfo", "from the dump")

    async def _dump(self, fd: int, path: Path, fmt: Literal["elf", "kdump-zlib"]) -> str | None:
        def report(done: int, total: int) -> None:
            self.sink(Progress("memory", "progress", done, total))

        try:
            return await dump_memory(
                self.guest, fd, path, fmt, lambda: (self.deadline, self.limit), report
            )
        except ForensicsError:  # failed, timed out, or QEMU went away: no half dump kept
            path.unlink(missing_ok=True)
            raise

    async def _after(self, before: FreezeState) -> None:
        assert self.writer
        with self.step("runstate-check") as rec:
            after = await self.guest.runstate()
            if after != before.runstate:
                raise GuestStateError(
                    f"the runstate changed during capture: {before.runstate} -> {after}"
                )
            rec.detail = f"unchanged: {after}"
            self.guest.events()  # take in any not read yet (DUMP_COMPLETED after the last poll)
            self.writer.write_json(
                "events.json", [e.to_json() for e in self.guest.seen], "events", "QMP events seen"
            )


async def capture(
    opts: CaptureOptions, sink: ProgressSink = _ignore, prior_events: tuple[Event, ...] = ()
) -> CaptureResult:
    """Capture the guest behind ``opts.endpoint`` into a new bundle under ``opts.out``.

    A failed step (a timeout included) is recorded, and the bundle is published incomplete.
    What leaves no bundle at all raises:
    InputError (``opts.out`` or the lock directory is unusable), BusyError (another capture of
    this guest holds its lock), the transport's GuestGone, GuestHeld, NotAMonitor,
    TransportConfigError, TransportTimeout and ManagerUnavailable, GuestStateError (a running
    guest without ``opts.live``, a runstate changed during the capture, a forced direct read
    that is impossible here), ForensicsError (a forced direct read that failed)."""
    try:
        opts.out.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise InputError(
            f"cannot create {opts.out}: {exc.strerror}", "choose another --out"
        ) from exc
    if not os.access(opts.out, os.W_OK | os.X_OK):
        raise InputError(f"{opts.out} is not writable", "choose another --out")
    with contextlib.suppress(OSError):  # what dead captures left here (a lost node's)
        partials.prune(opts.out)
    async with opts.endpoint.connect(timeout=min(10.0, opts.timeout)) as guest:
        with guest_lock(guest.pid, opts.endpoint):
            if opts.once:
                before = await assess(guest, prior_events)
                found = captured_before(opts.out, guest.pid, before.runstate)
                if found is not None:
                    return CaptureResult(found.path, found.manifest, before, existing=True)
            return await Capture(guest, opts, sink).run(prior_events)


def captured_before(out: Path, pid: int | None, runstate: str | None) -> bundle_mod.Bundle | None:
    """A complete bundle in ``out`` of the local QEMU ``pid`` in ``runstate``, made since that
    process started (so by another capture of this freeze: the watcher's, an alert's)."""
    started = process_started(pid) if pid else None
    if started is None:
        return None
    for path in sorted(out.glob("kvmha-*"), reverse=True):
        try:
            found = bundle_mod.Bundle.open(path)
            made = calendar.timegm(time.strptime(found.manifest.created, "%Y-%m-%dT%H:%M:%SZ"))
        except (ForensicsError, ValueError):
            continue
        guest = found.manifest.guest
        if (
            found.manifest.status == "complete"
            and (guest.get("qemu_pid"), guest.get("runstate")) == (pid, runstate)
            and made >= int(started)
        ):
            return found
    return None
