"""Linux serial console / dmesg text → crash reports titled the way syzkaller titles them.

The formats are data (:data:`FORMATS`, one :class:`OopsFormat` per kind of report, like
syzkaller's ``pkg/report/linux.go`` ``oopsFormat`` tables); the code below only walks lines,
matches headers, collects the stack and fills a title template. See ``docs/console-formats.md``.

Line indices (``first_line``/``last_line``) count ``"\\n"``-separated lines of the input text.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from typing import Literal

from ..signature import signature_id
from .oops_formats import Group
from .oops_title import ConsoleLines, describe, match_group

logger = logging.getLogger(__name__)

Cause = Literal[
    "guest-panic",
    "guest-oops",
    "guest-bug",
    "guest-lockup",
    "guest-hung-task",
    "watchdog",
    "host-memory-error",
    "unknown",
]

#: Lines longer than this are cut before matching (a lost newline must not cost quadratic work).
MAX_LINE_CHARS = 2048
#: A report's body never spans more lines than this.
MAX_REPORT_LINES = 400
#: At most this many reports are returned; the rest are counted in ``notes``.
MAX_REPORTS = 64
#: A repeated header (KASAN/WARNING print one line per inlined frame) within this many lines of
#: the report's first line belongs to that report.
ABSORB_WINDOW = 8


@dataclass(frozen=True, slots=True)
class OopsFormat:
    """One kind of kernel report.

    ``header`` is searched in each cleaned line (``keyword`` must occur first, a cheap filter).
    Its named groups feed the report: ``arg`` (title text), ``cpu``, ``comm``, ``pid``.
    A ``func`` group names the culprit outright (KASAN prints it), else the stack decides.
    ``title`` is a ``str.format`` template over ``arg``, ``func`` (the culprit function, no
    module) and ``detail`` (group 1 of ``detail``, searched in the body). When ``func`` is needed
    but no frame qualifies, ``bare_title`` is used and the report is marked corrupted.
    ``skip`` adds culprit-skip regexes to :data:`GENERIC_SKIP`. ``consequence`` marks a panic
    printed *because of* the report before it (``oops=panic``, ``softlockup_panic``...): it is
    folded into that report, or stands alone (``corrupted``) when the first report is lost.
    """

    name: str
    keyword: str
    header: re.Pattern[str]
    title: str
    cause: Cause
    bare_title: str = ""
    alt_titles: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    detail: re.Pattern[str] | None = None
    absorbs: tuple[str, ...] = ()
    consequence: bool = False
    corrupted: bool = False


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


#: Frames that are never the culprit: printing, trapping, panicking, watchdog plumbing.
#: Matched (``fullmatch``) against the frame's function name with compiler suffixes removed.
GENERIC_SKIP: tuple[str, ...] = (
    r"panic",
    r"nmi_panic",
    r"vpanic",
    r"(?:__)?dump_stack(?:_lvl)?",
    r"show_stack",
    r"show_regs",
    r"show_trace_log_lvl",
    r"__warn",
    r"warn_slowpath_fmt",
    r"report_bug",
    r"handle_bug",
    r"exc_invalid_op",
    r"exc_general_protection",
    r"exc_page_fault",
    r"exc_divide_error",
    r"exc_double_fault",
    r"asm_exc_\w+",
    r"asm_sysvec_\w+",
    r"asm_common_interrupt",
    r"do_error_trap",
    r"do_trap",
    r"die",
    r"__die\w*",
    r"oops_end",
    r"page_fault_oops",
    r"kernelmode_fixup_or_oops",
    r"__bad_area_nosemaphore",
    r"bad_area_nosemaphore",
    r"do_user_addr_fault",
    r"do_kern_addr_fault",
    r"handle_page_fault",
    r"no_context",
    r"watchdog_timer_fn",
    r"watchdog_overflow_callback",
    r"__hrtimer_run_queues",
    r"__run_hrtimer",
    r"hrtimer_interrupt",
    r"__sysvec_apic_timer_interrupt",
    r"sysvec_apic_timer_interrupt",
    r"local_apic_timer_interrupt",
    r"instr_sysvec_\w+",
    r"sysrq_handle_crash_dummy",
    r"__handle_sysrq",
    r"nmi_cpu_backtrace",
    r"nmi_trigger_cpumask_backtrace",
    r"arch_trigger_cpumask_backtrace",
    r"nmi_handle",
    r"default_do_nmi",
    r"exc_nmi",
    r"end_repeat_nmi",
    r"__perf_event_overflow",
    r"perf_event_nmi_handler",
    r"handle_pmi_common",
    r"intel_pmu_handle_irq",
    r"native_queued_spin_lock_slowpath",
    r"queued_spin_lock_slowpath",
    r"_raw_spin_lock\w*",
    r"do_raw_spin_lock",
    r"__pv_queued_spin_lock_slowpath",
    r"check_panic_on_warn",
    r"_*mem(?:set|cpy|move)\w*",
    r"str\w*cpy\w*",
    r"_?copy_(?:to|from)_user\w*",
    r"__list_(?:add|del)\w*",
    r"list_(?:add|del)\w*",
)

_KASAN_SKIP = (
    r"kasan_\w+",
    r"__kasan_\w+",
    r"__asan_\w+",
    r"print_report",
    r"print_address_description",
    r"check_region_inline",
    r"instrument_\w+",
    r"atomic\w*",
    r"kmsan_\w+",
)
_HUNG_SKIP = (
    r"\w*sched\w*",
    r"\w*_lock\w*",
    r"\w*_slowlock\w*",
    r"down\w*",
    r"\w*rwsem\w*",
    r"\w*completion\w*",
    r"\w*wait\w*",
    r"kthread",
    r"synchronize\w*",
    r"context_switch",
    r"__switch_to\w*",
    r"io_schedule\w*",
    r"bit_wait\w*",
)
_STALL_SKIP = (
    r"\w*rcu\w*",
    r"update_process_times",
    r"tick_\w+",
    r"\w*apic_timer\w*",
    r"irq_exit\w*",
    r"__irq_exit_rcu",
    r"__do_softirq",
    r"do_softirq\w*",
    r"handle_softirqs",
)
_ALLOC_SKIP = (
    r"warn_alloc",
    r"\w*alloc_pages\w*",
    r"\w*kmalloc\w*",
    r"\w*kmem_cache\w*",
    r"\w*vmalloc\w*",
    r"alloc_\w+",
    r"\w*slab\w*",
    r"kzalloc\w*",
    r"kcalloc\w*",
)

#: Panics that are a consequence of the report printed just before them.
_CONSEQUENCE_PANICS = (
    ("panic-fatal-exception", r"Fatal exception(?: in interrupt)?"),
    ("panic-softlockup", r"softlockup: hung tasks"),
    ("panic-hung-task", r"hung_task: blocked tasks"),
    ("panic-hard-lockup", r"Hard LOCKUP"),
    ("panic-on-warn", r"(?:\w+: )?panic_on_warn set"),
    ("panic-rcu-stall", r"RCU Stall"),
    ("panic-softdog", r"Software Watchdog Timer expired"),
)

_PANIC = r"Kernel panic - not syncing: "

#: The table: first matching format wins for a line, so specific forms come before general ones.
FORMATS: tuple[OopsFormat, ...] = (
    OopsFormat(
        name="kasan",
        keyword="BUG: KASAN:",
        header=_re(r"BUG: KASAN: (?P<arg>[a-z0-9-]+) in (?P<func>[A-Za-z_.$][\w.$]*)"),
        title="KASAN: {arg} {detail} in {func}",
        bare_title="KASAN: {arg}",
        cause="guest-bug",
        skip=_KASAN_SKIP,
        detail=_re(r"^\s*(Read|Write) of size \d+"),
    ),
    OopsFormat(
        name="null-deref",
        keyword="NULL pointer dereference",
        header=_re(r"BUG: (?:unable to handle )?[Kk]ernel NULL pointer dereference"),
        title="BUG: kernel NULL pointer dereference in {func}",
        bare_title="BUG: kernel NULL pointer dereference",
        alt_titles=("BUG: unable to handle kernel NULL pointer dereference in {func}",),
        cause="guest-oops",
    ),
    OopsFormat(
        name="page-fault",
        keyword="BUG: unable to handle",
        header=_re(r"BUG: unable to handle (?:page fault for address|kernel paging request)"),
        title="BUG: unable to handle page fault in {func}",
        bare_title="BUG: unable to handle page fault",
        alt_titles=("BUG: unable to handle kernel paging request in {func}",),
        cause="guest-oops",
    ),
    OopsFormat(
        name="soft-lockup",
        keyword="soft lockup",
        header=_re(
            r"BUG: soft lockup - CPU#(?P<cpu>\d+) stuck for \d+s! \[(?P<comm>.+):(?P<pid>\d+)\]"
        ),
        title="BUG: soft lockup in {func}",
        bare_title="BUG: soft lockup",
        cause="guest-lockup",
    ),
    OopsFormat(
        name="kernel-bug",
        keyword="kernel BUG at ",
        header=_re(r"kernel BUG at \S+?:\d+!"),
        title="kernel BUG in {func}",
        bare_title="kernel BUG",
        alt_titles=("invalid opcode in {func}",),
        cause="guest-bug",
        absorbs=("invalid-opcode",),
    ),
    OopsFormat(
        name="warning",
        keyword="WARNING: CPU: ",
        header=_re(r"WARNING: CPU: (?P<cpu>\d+) PID: (?P<pid>\d+) at "),
        title="WARNING in {func}",
        bare_title="WARNING: corrupted",
        cause="guest-bug",
    ),
    OopsFormat(
        name="gpf",
        keyword="general protection fault",
        header=_re(r"general protection fault(?:,|:| \d)"),
        title="general protection fault in {func}",
        bare_title="general protection fault",
        cause="guest-oops",
    ),
    OopsFormat(
        name="invalid-opcode",
        keyword="invalid opcode: ",
        header=_re(r"invalid opcode: [0-9a-f]+ \[#\d+\]"),
        title="invalid opcode in {func}",
        bare_title="invalid opcode",
        cause="guest-oops",
    ),
    OopsFormat(
        name="divide-error",
        keyword="divide error: ",
        header=_re(r"divide error: [0-9a-f]+ \[#\d+\]"),
        title="divide error in {func}",
        bare_title="divide error",
        cause="guest-oops",
    ),
    OopsFormat(
        name="double-fault",
        keyword="PANIC: double fault",
        header=_re(r"PANIC: double fault"),
        title="PANIC: double fault in {func}",
        bare_title="PANIC: double fault",
        cause="guest-oops",
    ),
    OopsFormat(
        name="hard-lockup",
        keyword="hard LOCKUP",
        header=_re(r"Watchdog detected hard LOCKUP on cpu (?P<cpu>\d+)"),
        title="BUG: hard lockup in {func}",
        bare_title="BUG: hard lockup",
        cause="guest-lockup",
    ),
    OopsFormat(
        name="rcu-stall",
        keyword="detected",
        header=_re(r"INFO: rcu_(?:preempt|sched|bh) (?:self-)?detected(?: expedited)? stall"),
        title="INFO: rcu detected stall in {func}",
        bare_title="INFO: rcu detected stall",
        cause="guest-lockup",
        skip=_STALL_SKIP,
    ),
    OopsFormat(
        name="hung-task",
        keyword="INFO: task ",
        header=_re(r"INFO: task (?P<comm>.+):(?P<pid>\d+) blocked for more than \d+ seconds"),
        title="INFO: task hung in {func}",
        bare_title="INFO: task hung",
        cause="guest-hung-task",
        skip=_HUNG_SKIP,
    ),
    OopsFormat(
        name="alloc-failure",
        keyword="page allocation failure",
        header=_re(r"(?P<comm>\S+): page allocation failure: order:(?P<arg>\d+)"),
        title="page allocation failure: order:{arg} in {func}",
        bare_title="page allocation failure: order:{arg}",
        cause="unknown",
        skip=_ALLOC_SKIP,
    ),
    OopsFormat(
        name="softdog",
        keyword="softdog: ",
        header=_re(r"softdog: Initiating (?:panic|system reboot)"),
        title="watchdog: software watchdog expired",
        cause="watchdog",
    ),
    OopsFormat(
        name="mce",
        keyword="Machine Check",
        header=_re(r"mce: \[Hardware Error\]: CPU (?P<cpu>\d+): Machine Check"),
        title="MCE: machine check on guest memory",
        cause="host-memory-error",
    ),
    OopsFormat(
        name="memory-failure",
        keyword="Memory failure: ",
        header=_re(r"Memory failure: 0x[0-9a-f]+: (?P<arg>[^,]+?)(?: due to|$)"),
        title="memory failure: {arg}",
        cause="host-memory-error",
    ),
    OopsFormat(
        name="panic-mce",
        keyword=_PANIC,
        header=_re(_PANIC + r"(?P<arg>Fatal machine check|Machine check from unknown source)"),
        title="kernel panic: {arg}",
        cause="host-memory-error",
    ),
    *(
        OopsFormat(
            name=name,
            keyword=_PANIC,
            header=_re(_PANIC + rf"(?P<arg>{pattern})"),
            title="kernel panic: {arg}",
            cause="watchdog" if name == "panic-softdog" else "guest-panic",
            consequence=True,
            corrupted=name != "panic-softdog",
        )
        for name, pattern in _CONSEQUENCE_PANICS
    ),
    OopsFormat(
        name="panic-kill-init",
        keyword=_PANIC,
        header=_re(_PANIC + r"(?P<arg>Attempted to kill init!)"),
        title="kernel panic: {arg}",
        cause="guest-panic",
        consequence=True,
    ),
    OopsFormat(
        name="panic",
        keyword=_PANIC,
        header=_re(_PANIC + r"(?P<arg>.*)"),
        title="kernel panic: {arg}",
        cause="guest-panic",
    ),
    OopsFormat(
        name="bug-other",
        keyword="BUG: ",
        header=_re(r"^\s*BUG: (?P<arg>[A-Za-z][A-Za-z_ -]*[A-Za-z])"),
        title="BUG: {arg}",
        cause="guest-bug",
    ),
)

#: Lines that contain a header keyword but are not a report.
IGNORED_LINES: tuple[re.Pattern[str], ...] = (
    _re(r"---\[ end Kernel panic"),
    _re(r"Kernel panic - not syncing: .*\]---\s*$"),
)

#: Lines that end a report's body.
_END_MARKERS = (_re(r"---\[ end trace [0-9a-f]+ \]---"), _re(r"---\[ end Kernel panic"))

_ANSI = _re(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL = _re(r"[\x00-\x08\x0b-\x1f\x7f]")
_QEMU_PROMPT = _re(r"^(?:\(qemu\) ?)+")
_PREFIX = _re(
    r"^(?:<\d{1,2}>)?"  # syslog level
    r"(?:\[ *\d+\.\d+\])?"  # printk time
    r"(?:\[ *[CT]\d+\])?"  # CONFIG_PRINTK_CALLER
    r" ?"
)
_JOURNAL = _re(r"^(?:\S+ +){2,3}\d\d:\d\d:\d\d(?:\.\d+)? \S+ kernel: ")
_FRAME = _re(
    r"^\s*(?P<q>\? )?(?:\[<[0-9a-f]+>\] )?(?P<q2>\? )?"
    r"(?P<func>[A-Za-z_.$][\w.$]*)"
    r"(?:(?P<off>\+0x[0-9a-f]+/0x[0-9a-f]+)(?: \[(?P<mod1>[\w-]+)\])?"
    r"|(?= \S+:\d+ \[inline\]))"
    r"(?: \S+:\d+)?(?: \[inline\])?(?: \[(?P<mod2>[\w-]+)\])?\s*$"
)
_RIP = _re(
    r"^\s*(?:RIP|IP|pc) ?: (?:[0-9a-f]{4}:)?(?:\[<[0-9a-f]+>\] )?"
    r"(?P<sym>(?P<func>[A-Za-z_.$][\w.$]*)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?)"
    r"(?: \[(?P<mod>[\w-]+)\])?"
)
_COMPILER_SUFFIX = _re(r"(?:\.(?:cold|isra|constprop|part|llvm|lto_priv)(?:\.\d+)?)+$")
_CPU_LINE = _re(
    r"CPU: (?P<cpu>\d+) (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: (?P<comm>.+?)"
    r"(?: Kdump: loaded)? (?:Not tainted|Tainted: (?P<taint>[A-Z ]*?)) +(?P<release>\S+) #"
)
_TAINT_LINE = _re(r"^\s*(?:Not tainted|Tainted: (?P<taint>[A-Z ]*?)) +(?P<release>\S+) #")
_LINUX_VERSION = _re(r"Linux version (?P<release>\S+)")
_NMI_BACKTRACE = _re(r"NMI backtrace for cpu (?P<cpu>\d+)")
_SYSRQ = _re(r"sysrq: Trigger a crash")
_HEX = _re(r"\b(?:0x)?[0-9a-f]{8,}\b")


@dataclass(frozen=True, slots=True)
class CrashReport:
    """One kernel report found in console text.

    ``title`` has no addresses, pids, CPU numbers, timestamps, offsets or paths;
    ``signature`` is the first 16 hex digits of SHA-256 over the UTF-8 title.
    ``panic_message`` is the text of a consequence panic folded into this report.
    """

    title: str
    cause: Cause
    culprit: str | None
    format: str
    crashed_cpu: int | None
    task: str | None
    pid: int | None
    tainted: str | None
    rip: str | None
    frames: tuple[str, ...]
    first_line: int
    last_line: int
    corrupted: bool
    signature: str
    alt_titles: tuple[str, ...] = ()
    panic_message: str | None = None


@dataclass(frozen=True, slots=True)
class ConsoleAnalysis:
    """All reports of one console, in order, plus what was learned on the way."""

    reports: tuple[CrashReport, ...]
    kernel_release: str | None
    notes: tuple[str, ...]

    @property
    def primary(self) -> CrashReport | None:
        """The first report: later ones are usually its consequences."""
        return self.reports[0] if self.reports else None


@dataclass(frozen=True, slots=True)
class _Frame:
    func: str
    module: str | None
    reliable: bool

    def render(self) -> str:
        return f"{self.func} [{self.module}]" if self.module else self.func


@dataclass(slots=True)
class _Open:
    fmt: OopsFormat
    match: re.Match[str]
    first: int
    last: int
    lines: list[str]
    panic_message: str | None = None
    panic_last: int | None = None


def clean_line(raw: str) -> str:
    """Strip what the transport and printk add: ANSI, CR, monitor prompt, level, time, caller."""
    line = raw[:MAX_LINE_CHARS]
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    line = _CONTROL.sub("", line.replace("\t", " "))
    line = _QEMU_PROMPT.sub("", line)
    # Syslog files put the printk time after "host kernel: "; a serial capture may prepend one.
    line = _PREFIX.sub("", line, count=1)
    line = _JOURNAL.sub("", line, count=1)
    return _PREFIX.sub("", line, count=1)


def _match_header(line: str) -> tuple[OopsFormat, re.Match[str]] | None:
    for fmt in FORMATS:
        if fmt.keyword not in line:
            continue
        m = fmt.header.search(line)
        if m is not None:
            if any(ign.search(line) for ign in IGNORED_LINES):
                return None
            return fmt, m
    group = match_group(line)
    if group is None or any(ign.search(line) for ign in IGNORED_LINES):
        return None
    fmt = _group_format(group)
    m = fmt.header.search(line)
    return (fmt, m) if m is not None else None


@cache
def _group_format(group: Group) -> OopsFormat:
    """A report kind only syzkaller's table knows (``oops_formats``): it titles it."""
    return OopsFormat(
        name="other-" + group.header.strip(" :").replace(" ", "-").lower(),
        keyword=group.header,
        header=_re(re.escape(group.header)),
        title="{arg}",
        cause=group.cause,
    )


def _frame_name(func: str) -> str:
    return _COMPILER_SUFFIX.sub("", func)


def _collect_frames(lines: list[str]) -> tuple[list[_Frame], str | None]:
    """Kernel RIP frames and call-trace frames of a body, in printed order."""
    frames: list[_Frame] = []
    rip: str | None = None
    for line in lines:
        m = _RIP.match(line)
        if m is not None:
            if rip is None:
                rip = m["sym"] + (f" [{m['mod']}]" if m["mod"] else "")
            frames.append(_Frame(_frame_name(m["func"]), m["mod"], True))
            continue
        f = _FRAME.match(line)
        if f is not None:
            reliable = f["q"] is None and f["q2"] is None
            frames.append(_Frame(_frame_name(f["func"]), f["mod1"] or f["mod2"], reliable))
    return frames, rip


@cache
def _skips(fmt: OopsFormat) -> re.Pattern[str]:
    """The culprit-skip regex of ``fmt``, compiled on first use (all of them cost ~10 ms)."""
    return re.compile("|".join(f"(?:{p})" for p in (*GENERIC_SKIP, *fmt.skip)))


def _culprit(fmt: OopsFormat, m: re.Match[str], frames: list[_Frame]) -> _Frame | None:
    skip = _skips(fmt)
    named = _group(m, "func")
    if named is not None and not skip.fullmatch(_frame_name(named)):
        name = _frame_name(named)
        module = next((f.module for f in frames if f.func == name), None)
        return _Frame(name, module, True)
    for frame in frames:
        if frame.reliable and not skip.fullmatch(frame.func):
            return frame
    return None


def _sanitize(text: str) -> str:
    text = _HEX.sub("ADDR", text)
    return " ".join(text.split())


def _group(m: re.Match[str], name: str) -> str | None:
    return m.groupdict().get(name)


def _build(op: _Open, console: ConsoleLines) -> CrashReport:
    fmt, m = op.fmt, op.match
    frames, rip = _collect_frames(op.lines)
    culprit = _culprit(fmt, m, frames)
    syz = describe(console, op.first)
    detail = ""
    if fmt.detail is not None:
        for line in op.lines[: ABSORB_WINDOW * 2]:
            d = fmt.detail.search(line)
            if d is not None:
                detail = d.group(1)
                break
    fields = {
        "arg": _sanitize(_group(m, "arg") or ""),
        "detail": detail,
        "func": culprit.func if culprit else "",
    }
    corrupted = fmt.corrupted
    template = fmt.title
    if "{func}" in template and culprit is None:
        template, corrupted = fmt.bare_title or template, True
    title = " ".join(template.format(**fields).split())
    alt = tuple(" ".join(a.format(**fields).split()) for a in fmt.alt_titles if culprit)
    cause = fmt.cause
    if syz is not None:  # syzkaller knows this report: its rules title it and pick the frame
        title, alt, corrupted = syz.title, syz.alt_titles, syz.corrupted
        if syz.frame is not None:
            culprit = _Frame(syz.frame, syz.module, True)
        elif corrupted:  # a title that names no function keeps the first frame not skipped
            culprit = None
        cause = syz.cause if fmt.name.startswith("other-") else cause

    cpu = _group(m, "cpu")
    comm, pid = _group(m, "comm"), _group(m, "pid")
    tainted: str | None = None
    for line in op.lines:
        c = _CPU_LINE.search(line)
        if c is not None:
            cpu = cpu if cpu is not None else c["cpu"]
            comm = comm if comm is not None else c["comm"]
            pid = pid if pid is not None else c["pid"]
            tainted = " ".join((c["taint"] or "").split()) or None
            break
        n = _NMI_BACKTRACE.search(line)
        if n is not None and cpu is None:
            cpu = n["cpu"]
        t = _TAINT_LINE.match(line)
        if t is not None and tainted is None:
            tainted = " ".join((t["taint"] or "").split()) or None
    return CrashReport(
        title=title,
        cause=cause,
        culprit=culprit.render() if culprit else None,
        format=fmt.name,
        crashed_cpu=int(cpu) if cpu is not None else None,
        task=comm,
        pid=int(pid) if pid is not None else None,
        tainted=tainted,
        rip=rip,
        frames=tuple(f.render() for f in frames if f.reliable),
        first_line=op.first,
        last_line=op.panic_last if op.panic_last is not None else op.last,
        corrupted=corrupted,
        signature=signature_id(title),
        alt_titles=alt,
        panic_message=op.panic_message,
    )


def _release(lines: list[str]) -> str | None:
    for line in lines:
        m = _LINUX_VERSION.search(line)
        if m is not None:
            return m["release"]
    for line in lines:
        c = _CPU_LINE.search(line) or _TAINT_LINE.match(line)
        if c is not None:
            return c["release"]
    return None


def parse_console(text: str) -> ConsoleAnalysis:
    """Split console text into crash reports; never raises, linear in the input size."""
    raw_lines = text.split("\n")
    lines = [clean_line(raw) for raw in raw_lines]
    done: list[_Open] = []
    notes: list[str] = []
    current: _Open | None = None
    dropped = 0
    # ``host`` is the report a consequence panic (and its body) is folded into.
    host: _Open | None = None

    def close(op: _Open | None) -> None:
        nonlocal dropped
        if op is None:
            return
        if op.fmt.consequence and host is not None:
            host.panic_message = op.match["arg"]
            host.panic_last = op.last
        elif len(done) < MAX_REPORTS:
            done.append(op)
        else:
            dropped += 1

    for index, line in enumerate(lines):
        if _LINUX_VERSION.search(line):
            close(current)
            current, host = None, None
            continue
        hit = _match_header(line)
        if hit is not None:
            fmt, m = hit
            if (
                current is not None
                and index - current.first < ABSORB_WINDOW
                and (fmt.name == current.fmt.name or fmt.name in current.fmt.absorbs)
            ):
                current.lines.append(line)
                current.last = index
                continue
            close(current)
            if not fmt.consequence:
                host = None
            elif host is None and done and index - done[-1].last < MAX_REPORT_LINES:
                host = done[-1]
            current = _Open(fmt, m, index, index, [line])
            continue
        if current is None:
            continue
        if index - current.first >= MAX_REPORT_LINES:
            close(current)
            current = None
            continue
        if line.strip():
            current.lines.append(line)
            current.last = index
        if any(end.search(line) for end in _END_MARKERS):
            close(current)
            current = None
    close(current)
    if dropped:
        notes.append(f"{dropped} further reports not returned (limit {MAX_REPORTS})")
    for index, line in enumerate(lines):
        if _SYSRQ.search(line):
            notes.append(f"line {index}: crash triggered on purpose through sysrq")
            break
    console = ConsoleLines(raw_lines, lines)
    reports = tuple(_build(op, console) for op in done)
    logger.debug("console: %d lines, %d reports", len(lines), len(reports))
    return ConsoleAnalysis(reports=reports, kernel_release=_release(lines), notes=tuple(notes))
