"""The guest kernel through drgn: open the dump, and read what a postmortem needs.

With the matching vmlinux, drgn gives types, dmesg and stacks; without it, only symbols
from kallsyms (``load_vmlinux_kallsyms``, Linux 6.0+ with CONFIG_KALLSYMS). Module frames are
symbolized through the modules' own kallsyms (``load_module_kallsyms``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import drgn

from .debuginfo import debug_package
from .drgn_helpers import (
    address_to_module,
    for_each_task,
    get_printk_records,
    load_module_kallsyms,
    load_vmlinux_kallsyms,
    tainted,
    task_state_to_char,
    uptime,
)
from .errors import InputError
from .kernel_facts import Frame, KernelFacts, Task

log = logging.getLogger(__name__)
MAX_FRAMES = 64
PLUGINS_OFF = "DRGN_DISABLE_PLUGINS"


_plugins_loaded = False


@contextmanager
def _no_installed_plugins() -> Iterator[None]:
    """drgn loads every plugin installed (entry points) at the first Program it sets up, once
    per process: its own CLI commands, and any third party's, which could change what analysis
    reads, and so a signature, from one host to another. Analysis needs none, and skipping them
    spares ~30 ms. Plugins named in ``DRGN_PLUGINS`` still load; a ``DRGN_DISABLE_PLUGINS`` of
    the user's is kept as it is. The environment is changed around the first Program only."""
    global _plugins_loaded
    if _plugins_loaded or PLUGINS_OFF in os.environ:
        yield
        return
    os.environ[PLUGINS_OFF] = "*"
    try:
        yield
        _plugins_loaded = True  # drgn has read the variable: it never looks again
    finally:
        os.environ.pop(PLUGINS_OFF, None)


def open_program(memory: Path, recovered: str | None, vmlinux: Path | None) -> drgn.Program:
    """A drgn Program on the dump ``memory`` (with the bundle's ``recovered`` VMCOREINFO when
    the dump lacks it), with ``vmlinux``'s debug info when given, else kallsyms symbols.

    Raises: InputError when drgn cannot open the dump."""
    try:
        with _no_installed_plugins():
            prog = drgn.Program(vmcoreinfo=recovered) if recovered else drgn.Program()
            prog.set_core_dump(str(memory))
    except (drgn.FaultError, ValueError, OSError) as exc:
        raise InputError(
            f"drgn cannot open {memory.name}: {exc}", "is the dump truncated?"
        ) from exc
    if vmlinux is not None:
        prog.load_debug_info([str(vmlinux)])
    else:
        prog.register_symbol_finder("vmlinux_kallsyms", load_vmlinux_kallsyms(prog), enable_index=0)
    try:
        prog.register_symbol_finder("module_kallsyms", load_module_kallsyms(prog), enable_index=1)
    except (LookupError, drgn.FaultError, ValueError) as exc:
        log.info("module kallsyms unavailable: %s", exc)
    return prog


def _module_of(prog: drgn.Program, pc: int) -> str | None:
    """The name of the module whose code holds ``pc`` (None for vmlinux)."""
    try:
        module = address_to_module(prog, pc)
    except (LookupError, drgn.FaultError, ValueError):
        return None
    if not module:
        return None
    return bytes(module.name.string_()).decode(errors="replace")


def _frame(prog: drgn.Program, frame: drgn.StackFrame) -> Frame:
    name = frame.name
    if name is None:  # no debug info for this frame: symbol+offset
        try:
            symbol = prog.symbol(frame.pc)
            name = f"{symbol.name}+{frame.pc - symbol.address:#x}"
        except LookupError:
            pass
    try:
        filename, line, _col = frame.source()
        source = f"{filename}:{line}"
    except LookupError:
        source = None
    module = _module_of(prog, frame.pc) if source is None else None
    return Frame(name or f"{frame.pc:#x}", module, source)


def stack(prog: drgn.Program, thread: drgn.Thread) -> tuple[Frame, ...]:
    return tuple(_frame(prog, f) for f in list(thread.stack_trace())[:MAX_FRAMES])


def _comm(task: drgn.Object) -> str:
    return bytes(task.comm.string_()).decode(errors="replace")


def _task(task: drgn.Object) -> Task:
    cpu = int(task.thread_info.cpu) if hasattr(task.thread_info, "cpu") else None
    return Task(int(task.pid), _comm(task), task_state_to_char(task), cpu)


def read_facts(prog: drgn.Program, info: Mapping[str, str], vmlinux: Path | None) -> KernelFacts:
    """Everything :class:`KernelFacts` holds that the debug info allows: ``info`` is the
    dump's VMCOREINFO, ``vmlinux`` the debug info ``prog`` was opened with (None: kallsyms)."""
    release = info.get("OSRELEASE")
    skipped: list[str] = []
    has_types = vmlinux is not None
    dmesg = message = taint = None
    task = None
    frames: tuple[Frame, ...] = ()
    blocked: list[Task] = []
    crash_cpu: int | None = None
    uptime = None
    if has_types:
        raw_dmesg, raw_message = dmesg_and_panic(prog)
        dmesg = raw_dmesg.decode(errors="replace")
        message = raw_message.decode(errors="replace").strip() if raw_message else None
        taint = tainted(prog)
        try:
            thread = prog.crashed_thread()
        except LookupError:  # the kernel did not crash (e.g. a guest paused on a disk error)
            skipped.append("crashed task and stack: the kernel did not crash (panic_cpu unset)")
        else:
            task = _task(thread.object)
            crash_cpu = task.cpu
            frames = stack(prog, thread)
        blocked = [_task(t) for t in for_each_task(prog) if task_state_to_char(t) == "D"]
        uptime = _uptime(prog)
    else:
        package = debug_package(release) if release else "the kernel's -dbg package"
        skipped.append(
            f"dmesg, panic message, crashed task, stacks: no debug info (install {package}, "
            "or pass --vmlinux / --debuginfo-dir)"
        )
    return KernelFacts(
        release=release,
        build_id=info.get("BUILD-ID"),
        debuginfo=str(vmlinux) if vmlinux else None,
        taint=taint,
        uptime_seconds=uptime,
        panic_message=message,
        dmesg=dmesg,
        crashed_task=task,
        crashed_cpu=crash_cpu,
        stack=frames,
        blocked_tasks=tuple(blocked),
        skipped=tuple(skipped),
    )


#: drgn's ``panic_message`` patterns (drgn/helpers/linux/panic.py), best first.
_PANIC_PATTERNS = (
    rb"Kernel panic -.*",
    rb"BUG: (?:kernel NULL pointer dereference|unable to handle).*|Unable to handle kernel.*",
    rb"[Kk]ernel BUG at.*",
    rb"Oops: .*",
)
_PANIC = re.compile(b"|".join(b"(%s)" % p for p in _PANIC_PATTERNS))


def dmesg_and_panic(prog: drgn.Program) -> tuple[bytes, bytes | None]:
    """drgn's ``get_dmesg(prog)`` and ``panic_message(prog)`` from one read of the log
    buffer: each helper reads all of it (~10-20 ms apiece on the lab's guests)."""
    records = get_printk_records(prog)
    dmesg = b"".join(
        b"[% 5d.%06d] %s\n"
        % (r.timestamp // 1_000_000_000, r.timestamp % 1_000_000_000 // 1000, r.text)
        for r in records
    )
    best: tuple[int, bytes] | None = None  # the match of the best-ranked pattern, first found
    for m in _PANIC.finditer(b"".join(r.text + b"\n" for r in records)):
        rank = m.lastindex or 0
        if best is None or rank < best[0]:
            best = (rank, m.group())
    return dmesg, best[1] if best else None


def _uptime(prog: drgn.Program) -> float | None:
    try:
        return round(float(uptime(prog)), 3)
    except (LookupError, drgn.FaultError, ValueError):
        return None
