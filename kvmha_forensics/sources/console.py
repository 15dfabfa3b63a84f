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

from ..signature import signature_id
from ..vocabulary import Cause
from .lazy_re import LazyPattern
from .literals import any_of
from .oops_formats import GROUPS, Group
from .oops_frames import SKIP as SYZ_SKIP
from .oops_title import ConsoleLines, Description, describe, known_header
from .pasted import clean_text, repair_lines, strip_outer_prefixes, strip_prefixes

logger = logging.getLogger(__name__)

#: A report's body never spans more lines than this.
MAX_REPORT_LINES = 400
#: At most this many reports are returned; the rest are counted in ``notes``.
MAX_REPORTS = 64
#: A text of more lines is parsed by its last this-many (where the crash is): what bounds the
#: time of a text of short lines (a 64 MiB console holds ~1M real lines, or 64M empty ones).
MAX_LINES = 1 << 20
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
    folded into that report, or stands alone (``corrupted``) when the first report is lost; its
    ``cause`` is then the cause the lost report would have had. ``culprit=False`` reports name
    no function (an OOM kill is not a code bug). ``ud2_is_bug`` makes an ``invalid opcode`` at
    a ``ud2`` (``Code: ... <0f> 0b``) or in a list check a BUG() (cause ``guest-bug``).
    """

    name: str
    keyword: str
    header: LazyPattern
    title: str
    cause: Cause
    bare_title: str = ""
    alt_titles: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    detail: LazyPattern | None = None
    absorbs: tuple[str, ...] = ()
    consequence: bool = False
    corrupted: bool = False
    culprit: bool = True
    ud2_is_bug: bool = False
    absorb_window: int = ABSORB_WINDOW


def _re(pattern: str) -> LazyPattern:
    """``pattern``, compiled on first use (most of the ~150 here are never used by a console)."""
    return LazyPattern(pattern)


#: Frames that are never the culprit: printing, trapping, panicking, watchdog plumbing.
#: Matched (``fullmatch``) against the frame's function name with compiler suffixes removed.
GENERIC_SKIP: tuple[str, ...] = (
    r"panic",
    r"nmi_panic",
    r"vpanic",
    r"(?:__)?dump_stack(?:_lvl)?",
    r"show_stack",
    r"dump_backtrace",
    r"unwind_backtrace",
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
    r"perf_event_overflow",
    r"do_nmi",
    r"ret_from_fork\w*",
    r"ret_from_kernel_thread",
    r"kernel_thread_helper",
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
    r"check_memory_region\w*",
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
    r"(?:__|out_of_line_)?wait_(?:on|for|event)\w*",
    r"\w*_wait_(?:on|for|event)\w*",
    r"prepare_to_wait\w*",
    r"finish_wait",
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
    r"\w*timer_interrupt\w*",
    r"fast_exception_return",
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
_SCHED_SKIP = (
    r"__schedule_bug",
    r"__schedule",
    r"schedule\w*",
    r"\w*cond_resched\w*",
    r"preempt_schedule\w*",
    r"wait_for_common\w*",
    r"wait_for_completion\w*",
    r"__might_sleep",
    r"__might_resched",
    r"___might_sleep",
)
_UBSAN_SKIP = (r"__ubsan_handle_\w+", r"ubsan_\w+", r"handle_overflow", r"__ubsan_\w+")
_BAD_PAGE_SKIP = (
    r"bad_page",
    r"\w*free_pages\w*",
    r"\w*free_page\w*",
    r"free_pcppages_bulk",
    r"free_unref_page\w*",
    r"release_pages",
    r"check_new_page\w*",
    r"\w*prep_new_page",
)
_DIV_SKIP = (r"div_u64\w*", r"div64_\w+", r"div_s64\w*", r"do_div")

#: Panics that are a consequence of the report printed just before them.
#: Panics that are a consequence of the report printed just before them, and the cause that
#: report had (used when the report itself is not in the text).
_CONSEQUENCE_PANICS: tuple[tuple[str, str, Cause], ...] = (
    ("panic-fatal-exception", r"Fatal exception(?: in interrupt)?", "guest-oops"),
    ("panic-softlockup", r"softlockup: hung tasks", "guest-lockup"),
    ("panic-hung-task", r"hung_task: blocked tasks", "guest-hung-task"),
    ("panic-hard-lockup", r"Hard LOCKUP", "guest-lockup"),
    ("panic-on-warn", r"(?:\w+: )?panic_on_warn set", "guest-bug"),
    ("panic-rcu-stall", r"RCU Stall", "guest-lockup"),
    ("panic-softdog", r"Software Watchdog Timer expired", "watchdog"),
    ("panic-oom", r"(?:Out of memory|System is deadlocked on memory)\b.*", "guest-oom"),
)

#: Case and spacing vary in hand-copied reports ("kernel panic - not syncing : ...").
_PANIC = r"(?i:kernel panic\s*-+\s*not syncing\s*:\s*)"
_FUNC = r"[A-Za-z_.$][\w.$]*"

#: The table: first matching format wins for a line, so specific forms come before general ones.
FORMATS: tuple[OopsFormat, ...] = (
    OopsFormat(
        name="kasan",
        keyword="BUG: KAS",
        header=_re(
            r"BUG: KAS[Aa][Nn]: (?P<arg>[a-z0-9-]+(?: [a-z]+)*?) in (?P<func>" + _FUNC + ")"
            r"(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?(?: \[(?P<mod>[\w-]+)\])?"
        ),
        title="KASAN: {arg} {detail} in {func}",
        bare_title="KASAN: {arg}",
        cause="guest-bug",
        skip=_KASAN_SKIP,
        detail=_re(r"^\s*(Read|Write) of size \d+"),
    ),
    OopsFormat(
        name="kfence",
        keyword="BUG: KFENCE:",
        header=_re(
            r"BUG: KFENCE: (?P<arg>[a-z0-9-]+(?: read| write)?) in (?P<func>" + _FUNC + ")"
            r"(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?(?: \[(?P<mod>[\w-]+)\])?"
        ),
        title="KFENCE: {arg} in {func}",
        bare_title="KFENCE: {arg}",
        cause="guest-bug",
        skip=_KASAN_SKIP,
    ),
    OopsFormat(
        name="ubsan",
        keyword="UBSAN: ",
        header=_re(r"UBSAN: (?P<arg>[a-z0-9-]+) in "),
        title="UBSAN: {arg} in {func}",
        bare_title="UBSAN: {arg}",
        cause="guest-bug",
        skip=_UBSAN_SKIP,
    ),
    OopsFormat(
        name="list-corruption",
        keyword="corruption",
        header=_re(r"(?P<arg>list_(?:add|del)) corruption"),
        title="BUG: corrupted list in {func}",
        bare_title="BUG: corrupted list",
        cause="guest-bug",
        absorbs=("kernel-bug", "warning", "invalid-opcode"),
    ),
    OopsFormat(
        name="bad-page-state",
        keyword="Bad page state",
        header=_re(r"BUG: Bad page state in process (?P<comm>\S+)"),
        title="BUG: Bad page state in {func}",
        bare_title="BUG: Bad page state",
        cause="guest-bug",
        skip=_BAD_PAGE_SKIP,
    ),
    OopsFormat(
        name="sched-atomic",
        keyword="scheduling while atomic",
        header=_re(r"BUG: scheduling while atomic: (?P<comm>.+?)/(?P<pid>\d+)/"),
        title="BUG: scheduling while atomic in {func}",
        bare_title="BUG: scheduling while atomic",
        cause="guest-bug",
        skip=(*_SCHED_SKIP, *_ALLOC_SKIP),
    ),
    OopsFormat(
        name="sleep-invalid",
        keyword="sleeping function called",
        header=_re(r"BUG: sleeping function called from invalid context"),
        title="BUG: sleeping function called from invalid context in {func}",
        bare_title="BUG: sleeping function called from invalid context",
        cause="guest-bug",
        skip=(*_SCHED_SKIP, *_ALLOC_SKIP),
    ),
    OopsFormat(
        name="oom",
        keyword="ut of memory",
        header=_re(
            r"Out of memory(?: and no killable processes|: Kill(?:ed)? process)"
            r"|Memory cgroup out of memory"
        ),
        title="out of memory",
        cause="guest-oom",
        culprit=False,
        absorbs=("oom-killer",),
    ),
    OopsFormat(
        name="oom-killer",
        keyword="invoked oom-killer",
        header=_re(r"(?P<comm>\S+) invoked oom-killer: "),
        title="out of memory",
        cause="guest-oom",
        culprit=False,
        absorbs=("oom",),
    ),
    OopsFormat(
        name="arm-fault",
        keyword="nable to handle kernel",
        header=_re(
            r"(?<!BUG: )Unable to handle kernel (?P<arg>NULL pointer dereference|paging request"
            r"|execute from non-executable memory|access to user memory|read from unreadable"
            r" memory|write to read-only memory|pointer dereference)"
            r" (?:at (?:virtual )?address|in virtual (?:kernel|user) address space)"
        ),
        title="Unable to handle kernel {arg} in {func}",
        bare_title="Unable to handle kernel {arg}",
        cause="guest-oops",
        absorbs=("arm-oops",),
        absorb_window=24,
    ),
    OopsFormat(
        name="arm-oops",
        keyword="Internal error: ",
        header=_re(r"Internal error: (?P<arg>Oops(?: - [A-Za-z ]+?)?)(?::| \[#)"),
        title="Internal error: {arg} in {func}",
        bare_title="Internal error: {arg}",
        cause="guest-oops",
    ),
    OopsFormat(
        name="null-deref",
        keyword="NULL pointer dereference",
        header=_re(r"BUG: (?:[Uu]nable to handle )?[Kk]ernel NULL pointer dereference"),
        title="BUG: kernel NULL pointer dereference in {func}",
        bare_title="BUG: kernel NULL pointer dereference",
        alt_titles=("BUG: unable to handle kernel NULL pointer dereference in {func}",),
        cause="guest-oops",
    ),
    OopsFormat(
        name="page-fault",
        keyword="nable to handle",
        header=_re(r"BUG:? [Uu]nable to handle (?:page fault for address|kernel paging request)"),
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
        # x86 traps BUG() as an invalid opcode, arm as "Internal error: Oops - BUG: 0 [#1]"
        absorbs=("invalid-opcode", "arm-oops"),
    ),
    OopsFormat(
        name="bug-failure-at",
        keyword="BUG: failure at ",
        # asm-generic BUG() of an arch without its own trap (LKL, some embedded ports) prints
        # "BUG: failure at FILE:LINE/FUNC()!" and panics "BUG!" (include/asm-generic/bug.h)
        header=_re(r"BUG: failure at \S+?:\d+/(?P<func>" + _FUNC + r")\(\)!"),
        title="kernel BUG in {func}",
        bare_title="kernel BUG",
        cause="guest-bug",
    ),
    OopsFormat(
        name="warning",
        keyword="WARNING: CPU: ",
        header=_re(
            r"WARNING: CPU: (?P<cpu>\d+) PID: (?P<pid>\d+) at (?:\S+ (?P<func>" + _FUNC + r")"
            r"\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[(?P<mod>[\w-]+)\])?)?"
        ),
        title="WARNING in {func}",
        bare_title="WARNING: corrupted",
        cause="guest-bug",
        absorbs=("list-corruption",),
    ),
    OopsFormat(
        name="warning-at",
        keyword="WARNING: at ",
        # WARN() before 3.x, and vendor kernels since: "WARNING: at FILE:LINE FUNC+0x1/0x2()"
        # (Synology's 4.4 prints no function at all)
        header=_re(
            r"^\s*WARNING: at [\w./-]+:\d+(?:\s+(?P<func>"
            + _FUNC
            + r")(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?"
            r"(?:\s+\[(?P<mod>[\w-]+)\])?\(\))?\s*$"
        ),
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
        ud2_is_bug=True,
    ),
    OopsFormat(
        name="divide-error",
        keyword="divide error: ",
        header=_re(r"divide error: [0-9a-f]+ \[#\d+\]"),
        title="divide error in {func}",
        bare_title="divide error",
        cause="guest-oops",
        skip=_DIV_SKIP,
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
        keyword="ard LOCKUP",
        header=_re(
            r"Watchdog detected hard LOCKUP on cpu (?P<cpu>\d+)|Watchdog CPU:\s*(?P<cpu2>\d+)"
            r" (?:detected )?Hard LOCKUP"
        ),
        title="BUG: hard lockup in {func}",
        bare_title="BUG: hard lockup",
        cause="guest-lockup",
    ),
    OopsFormat(
        name="rcu-stall",
        keyword="detected",
        header=_re(
            r"INFO: rcu_(?:preempt|sched|bh)(?:_state)? (?:self-)?detected(?: expedited)? stall"
        ),
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
        # the kernel's own record, or an EDAC driver's decoding of it ("EDAC sbridge MC1: CPU 1:
        # Machine Check Event: 0 Bank 11: ..."), printed instead when EDAC handles the event
        header=_re(r"(?:mce: \[Hardware Error\]|EDAC \w+ MC\d+): CPU (?P<cpu>\d+): Machine Check"),
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
        keyword="not syncing",
        header=_re(_PANIC + r"(?P<arg>Fatal machine check|Machine check from unknown source)"),
        title="kernel panic: {arg}",
        cause="host-memory-error",
    ),
    *(
        OopsFormat(
            name=name,
            keyword="not syncing",
            header=_re(_PANIC + rf"(?P<arg>{pattern})"),
            title="kernel panic: {arg}",
            cause=cause,
            consequence=True,
            corrupted=name not in ("panic-softdog", "panic-oom"),
            culprit=name != "panic-oom",
            skip=_STALL_SKIP if cause == "guest-lockup" else (),
        )
        for name, pattern, cause in _CONSEQUENCE_PANICS
    ),
    OopsFormat(
        name="panic-kill-init",
        keyword="not syncing",
        header=_re(_PANIC + r"(?P<arg>Attempted to kill init!)"),
        title="kernel panic: {arg}",
        cause="guest-panic",
        consequence=True,
        culprit=False,
    ),
    OopsFormat(
        name="panic",
        keyword="anic",
        # Linux 2.4 printed "Kernel panic: MSG", without "- not syncing", at a line's start
        header=_re(r"(?:" + _PANIC + r"|^\s*Kernel panic: )(?P<arg>.*)"),
        title="kernel panic: {arg}",
        cause="guest-panic",
    ),
    OopsFormat(
        name="oops-bad-area",
        keyword="kernel access of bad area",
        # powerpc's bad_page_fault(): "Oops: kernel access of bad area, sig: 11 [#1]"
        header=_re(r"^\s*Oops: (?P<arg>kernel access of bad area)"),
        title="Oops: {arg}",
        cause="guest-oops",
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
#: Lines of a report's body that syzkaller's table would take for a header: SLUB debug's
#: "INFO: Allocated in …", "INFO: Freed in …", "INFO: Slab 0x… objects=…", "INFO: Object 0x…".
_IN_REPORT = (_re(r"^\s*INFO: (?:Allocated in|Freed in|Slab 0x|Object 0x|0x[0-9a-f]+-0x)"),)
IGNORED_LINES: tuple[LazyPattern, ...] = (
    _re(r"---\[ end Kernel panic"),
    _re(r"Kernel panic - not syncing: .*\]---\s*$"),
)

#: How syzkaller's title ends when its rules found no guilty frame.
_SYZ_NO_FRAME = " in corrupted"
#: Lines that end a report's body.
_END_MARKER = _re(r"---\[ end (?:trace [0-9a-f]+ \]---|Kernel panic)")

_SYM = r"(?P<func>[A-Za-z_.$][\w.$]*)"
_OFF = r"\+0x[0-9a-f]+/0x[0-9a-f]+"
_MOD = r"\[(?P<mod>[\w-]+)\]"
#: What may follow a symbol: file:line (syzkaller), "(file:line)" (decode_stacktrace.sh),
#: "[inline]", "(unreliable)" (powerpc), "()" (old WARN lines). A frame's "[<address>]" may
#: have lost its angle brackets, or the address too, to HTML or Markdown ("[] f+0x1/0x2").
_DECOR = r"(?:\s+\[inline\]|\s+[\w./-]+:\d+(?::\d+)?|\s*\((?:[^()]|\([^()]*\))*\))*\s*$"
_FRAME = _re(
    r"^\s*(?:<[A-Z#]{2,4}>\s*)*(?P<q>\?\s)?(?:\[<?[0-9a-f]*>?\]\s*)?(?P<q2>\?\s)?"
    + _SYM
    + r"(?:"
    + _OFF
    + r"(?:\s+"
    + _MOD
    + r")?"
    + r"|(?=\s+\(\S+:\d+|\s+\S+:\d+ \[inline\]))"
    + _DECOR
)
#: powerpc: "[c0000001fb2cb3c0] [c000000000d3fc18] dump_stack+0xbc/0x104 (unreliable)".
_PPC_FRAME = _re(
    r"^\s*\[[0-9a-f]{8,16}\]\s+\[[0-9a-f]{8,16}\]\s+"
    + _SYM
    + _OFF
    + r"(?:\s+"
    + _MOD
    + r")?\s*(?P<unreliable>\(unreliable\))?"
)
#: arm: "[<c0012940>] (dump_backtrace+0x0/0x10c) from [<...>] (...)" and
#: "__schedule from schedule+0x20/0xac" (the first function is the frame).
_ARM_FRAME = _re(
    r"^\s*(?:\[<[0-9a-f]+>\]\s*\(" + _SYM + r"(?:" + _OFF + r")?(?:\s+" + _MOD + r")?\)"
    r"|(?P<func2>[A-Za-z_.$][\w.$]*)(?:\s+\[(?P<mod2>[\w-]+)\])?)\s+from\s+"
    r"(?:\[<[0-9a-f]+>\]|[A-Za-z_.$][\w.$]*\+0x)"
)
#: The faulting function: "RIP: 0010:f+0x1/0x2", "RIP: 0010:[<a>]  [<a>] f+...", "RIP: 0010:[] []
#: f+..." (Markdown ate the addresses), "IP: [<a>] f+...", "EIP: [<a>] f+...", "EIP is at f+...",
#: "PC is at f+...", "pc : f+...", "NIP [a] f+...", MIPS "epc   : 8005d844 f+...", s390
#: "Krnl PSW : mask addr (f+...)", with file:line or decoded forms.
_RIP = _re(
    r"^\s*(?:R?IP|EIP|NIP|PC is at|EIP is at|pc\s*:|epc\s*:\s*[0-9a-f]{8,16}"
    r"|Krnl PSW\s*:\s*[0-9a-f]{16}\s+[0-9a-f]{16}\s+\()\s*:?\s*"
    r"(?:[0-9a-f]{4}:)?"
    r"(?:\[<?[0-9a-f]*>?\]\s*)*"
    r"(?P<sym>" + _SYM + r"(?:" + _OFF + r")?)"
    r"(?=" + _OFF + r"|\s+\[|\s+\(|\s+[\w./-]+:\d+|\s+RSP|\s*$|\))"
    r"(?:\s+\[(?P<mod>[\w-]+)\](?!\S))?"
)
#: arm's link register, "lr : f+0x1c/0x28" (arm64) or "LR is at f+0x88/0x94": the caller.
_LR = _re(r"^\s*(?:lr\s*:|LR is at)\s*(?:\[<?[0-9a-f]*>?\]\s*)*(?P<sym>" + _SYM + r")" + _OFF)
#: Lines after which stack lines are not the faulting context's (until the report ends).
_OTHER_STACKS = _re(
    r"RCU grace-period kthread stack dump:|^\s*(?:Allocated|Freed) by task|"
    r"^\s*(?:allocated|freed) by task \d+|INFO: (?:Allocated|Freed) in|"
    r"Last potentially related work creation:|The buggy address belongs to"
)
#: A word each :data:`_OTHER_STACKS` line holds (tested first: most lines hold none).
_OTHER_STACK_WORDS = any_of(
    ("RCU grace-period", "by task", "INFO: ", "Last potentially", "The buggy address")
)
_PREEMPTION_AT = _re(r"Preemption disabled at:\s*$")
_CODE_LINE = _re(r"^\s*Code: ")
_UD2 = _re(r"<0f>\s+0b")
_LIST_CHECK = _re(r"(?:__)?list_\w*_valid\w*|__list_(?:add|del)\w*")
_COMPILER_SUFFIX = _re(r"(?:\.(?:cold|isra|constprop|part|llvm|lto_priv)(?:\.\d+)?)+$")
_CPU_LINE = _re(
    r"CPU: (?P<cpu>\d+) (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: (?P<comm>.+?)"
    r"(?: Kdump: loaded)? (?:Not tainted|Tainted: (?P<taint>[A-Z ]*?)) +(?P<release>\S+) #"
)
_TAINT_LINE = _re(r"^\s*(?:Not tainted|Tainted: (?P<taint>[A-Z ]*?)) +(?P<release>\S+) #")
_LINUX_VERSION = _re(r"Linux version (?P<release>\S+)")
_NMI_BACKTRACE = _re(r"NMI backtrace for cpu (?P<cpu>\d+)")
#: A stack's NMI section ("<NMI>" on its own line, x86 since 4.x) before a RIP line: a panic
#: raised there (an NMI of unknown reason, panic_on_unrecovered_nmi, a hard lockup) shows the
#: code the NMI interrupted, which did not cause it.
_NMI_SECTION = _re(r"(?m)^\s*<NMI>\s*$(?:\n.*)*?\n\s*R?IP: ")
_SYSRQ = _re(r"sysrq: Trigger a crash")
#: The sysrq handler announcing a request ("sysrq: Show State", "SysRq : Show Blocked State"):
#: what follows is the requested output (every task's stack), not the report before it.
_SYSRQ_REQUEST = _re(r"\b[Ss]ys[Rr]q\s?:\s")
#: An excerpt that starts mid-report (the header is above what was pasted) still shows a
#: register dump and marks only die() prints: the Code line, the end-of-trace line, 2.6's
#: "Process comm (pid: N, ...)", powerpc's "Instruction dump:".
_REGISTER_LINE = _re(
    r"^\s*(?:(?:R[A-D]X|R[SD]I|R[BS]P|RIP|R\d\d|E[A-D]X|E[SD]I|E[BS]P|EIP|[CDEFGS]S|CR\d|DR\d)"
    r"\s*:\s*[0-9a-f]|x\d{1,2}\s*:\s*[0-9a-f]{8}|(?:pc|lr|sp)\s*:\s*\S|pstate: "
    r"|r\d{1,2}\s*:\s*[0-9a-f]{8}|PC is at |LR is at |GPR\d\d: |NIP[: ] |Krnl PSW "
    r"|Pid: \d+, comm: )"  # 2.6-era x86 __show_regs() opens the dump with the task
)
_DIE_MARK = _re(r"^\s*Code: |---\[ end trace|^\s*Process \S+ \(pid: \d+|^\s*Instruction dump:")
#: BUG()'s trap at the faulting address of the Code line: x86 ud2, arm64 brk #0x800, arm udf,
#: powerpc twi 31,0,0.
_TRAP = _re(r"<0f>\s+0b|\(d4210000\)|\(e7f001f2\)|<0fe00000>")
#: The reports of an excerpt that starts mid-report: an oops (or, at a trap, a BUG) whose
#: header was not pasted. The culprit is read from the RIP/pc line and reliable frames only,
#: past syzkaller's frames that are never guilty (the kind of report, whose own list would
#: apply, is not known).
_HEADERLESS_SKIP = tuple(f".*(?:{p}).*" for p in SYZ_SKIP)


def _headerless(name: str, kind: str, cause: Cause, skip: tuple[str, ...] = ()) -> OopsFormat:
    """The format of an excerpt of a ``kind`` report whose header was not pasted."""
    return OopsFormat(
        name=f"headerless{name}",
        keyword="",
        header=_re(r""),
        title=f"{kind} in {{func}}",
        bare_title=f"{kind} in corrupted",
        cause=cause,
        skip=(*_HEADERLESS_SKIP, *skip),
    )


_HEADERLESS = _headerless("", "Oops", "guest-oops")
_HEADERLESS_BUG = _headerless("-bug", "kernel BUG", "guest-bug")
_HEADERLESS_STALL = _headerless("-stall", "INFO: rcu detected stall", "guest-lockup", _STALL_SKIP)
_HEADERLESS_BAD_PAGE = _headerless("-bad-page", "BUG: Bad page state", "guest-bug", _BAD_PAGE_SKIP)
_HEADERLESS_LOCKUP = _headerless("-lockup", "BUG: soft lockup", "guest-lockup", _STALL_SKIP)
_HEADERLESS_KFENCE = _headerless("-kfence", "KFENCE", "guest-bug", _KASAN_SKIP)
_HEADERLESS_OOM = OopsFormat(
    name="headerless-oom",
    keyword="",
    header=_re(r""),
    title="out of memory",
    cause="guest-oom",
    culprit=False,
)
#: Lines only one kind of report prints in its body, so they name the kind of a report whose
#: header is above the excerpt: an RCU stall's stalled-CPU line ("0-....: (65131 ticks this
#: GP)") and its "(t=N jiffies" line; a Bad page state's "page dumped because:" and "bad
#: because of flags:" (mm/page_alloc.c bad_page()); an OOM report's dump_header() stack
#: (oom_kill_process, out_of_memory), its task table header and "oom-kill:constraint=" line;
#: a soft lockup's stack, printed from the watchdog's timer (kernel/watchdog.c
#: watchdog_timer_fn()); KFENCE's object line "kfence-#N [0x…-0x…, size=N, cache=…]" (also
#: "kfence-#N: 0x…-0x…, size=…", mm/kfence/report.c) above its allocation and free stacks.
_BODY_MARKS: tuple[tuple[LazyPattern, OopsFormat], ...] = (
    (
        _re(
            r"^\s*(?:rcu:\s*)?\d+-[.!\w]{3,5}: \(\d+ (?:ticks this GP|GPs behind)\)"
            r"|^\s*(?:rcu:\s*)?\((?:detected by \d+, )?t=\d+ jiffies g="
        ),
        _HEADERLESS_STALL,
    ),
    (_re(r"^\s*(?:page dumped because|bad because of flags): "), _HEADERLESS_BAD_PAGE),
    (
        _re(
            r"^\s*oom-kill:constraint=|^\s*\[\s*pid\s*\]\s+uid\s+tgid\s+total_vm"
            r"|^\s*(?:\[<[0-9a-f]+>\]\s*\(?)?(?:oom_kill_process|out_of_memory)\b"
        ),
        _HEADERLESS_OOM,
    ),
    (_re(r"(?:^|[\s(\]])watchdog_timer_fn\+0x[0-9a-f]+/0x"), _HEADERLESS_LOCKUP),
    (_re(r"^\s*kfence-#\d+(?::| \[)\s*0x[0-9a-f]+-0x[0-9a-f]+, size=\d+"), _HEADERLESS_KFENCE),
)
#: A word each :data:`_BODY_MARKS` line holds (one search over the text's head first).
_BODY_MARK_WORDS = any_of(
    ("ticks this GP", "GPs behind", " jiffies g=", "page dumped because", "bad because of",
     "oom-kill:", "total_vm", "oom_kill_process", "out_of_memory", "watchdog_timer_fn",
     "kfence-#")
)  # fmt: skip
#: A Bad page state's frames that name the page's origin (page_owner's allocation stack).
_PAGE_ORIGIN = _re(r"page last allocated")
#: A kernel message line as pasted: a printk stamp, a syslog/journal "kernel:" tag, a level.
_KERNEL_LINE = _re(r"\[\s*\d+\.\d+\]|\bkernel:|^<\d>")
#: Lines of other text (a shell prompt, a sentence) a header-less tail may follow.
_HEADERLESS_PROSE = 20
#: A header-less tail is looked for only this far into the text.
_HEADERLESS_LINES = 120
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
    #: The header's line when the report starts above it (its body's beginning was found).
    header: int | None = None


def clean_line(raw: str) -> str:
    """Strip what the transport and printk add: ANSI, CR, prompts, quotes, level, time, caller,
    syslog and journal prefixes (:mod:`kvmha_forensics.sources.pasted`)."""
    return strip_prefixes(clean_text(raw))


#: Every format's keyword and every syzkaller group's header: a line holding none of them (most
#: lines) starts no report, found with one search instead of a test per format.
_ANY_KEYWORD = any_of((*(f.keyword for f in FORMATS), *(g.header for g in GROUPS)))


def _match_header(line: str) -> tuple[OopsFormat, re.Match[str]] | None:
    if _ANY_KEYWORD.search(line) is None:
        return None
    for fmt in FORMATS:
        if fmt.keyword not in line:
            continue
        m = fmt.header.search(line)
        if m is not None:
            if any(ign.search(line) for ign in IGNORED_LINES):
                return None
            return fmt, m
    group = known_header(line)
    if group is None or any(ign.search(line) for ign in (*IGNORED_LINES, *_IN_REPORT)):
        return None
    fmt = _group_format(group)
    m = fmt.header.search(line)
    return (fmt, m) if m is not None else None


#: arm's die() line, "Internal error: : 96000210 [#1] SMP", printed after the report that
#: called die() ("Unhandled fault: ...", syzkaller's table-only kinds): part of that report
#: (syzkaller does not count it as a next report either).
_DIE_LINE = "other-internal-error"


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
    """Kernel RIP frames and call-trace frames of a body, in printed order: x86 (all eras),
    arm and arm64 (both unwinder formats), powerpc, riscv and MIPS stack lines."""
    frames: list[_Frame] = []
    rip: str | None = None
    lr: _Frame | None = None
    traced = False  # a call-trace line was read
    skip_next = False
    for line in lines:
        if _OTHER_STACK_WORDS.search(line) and _OTHER_STACKS.search(line):
            break
        if "Preemption disabled at:" in line and _PREEMPTION_AT.search(line):
            skip_next = True
            continue
        m = _RIP.match(line)
        if m is not None:
            if rip is None:
                rip = m["sym"] + (f" [{m['mod']}]" if m["mod"] else "")
            frames.append(_Frame(_frame_name(m["func"]), m["mod"], True))
            continue
        if lr is None and "l" in line[:12].lower() and (r := _LR.match(line)) is not None:
            lr = _Frame(_frame_name(r["func"]), None, True)
            continue
        frame = _stack_frame(line)
        if frame is not None:
            traced = True
            if not skip_next:
                frames.append(frame)
            skip_next = False
    if lr is not None and frames and not traced and lr.func != frames[-1].func:
        frames.append(lr)  # a register dump cut before its call trace: the caller is lr's
    return frames, rip


def _stack_frame(line: str) -> _Frame | None:
    f = _FRAME.match(line)
    if f is not None:
        reliable = f["q"] is None and f["q2"] is None
        return _Frame(_frame_name(f["func"]), f["mod"], reliable)
    p = _PPC_FRAME.match(line) if "+0x" in line else None
    if p is not None:
        return _Frame(_frame_name(p["func"]), p["mod"], p["unreliable"] is None)
    a = _ARM_FRAME.match(line) if "from" in line else None
    if a is not None:
        func, module = (a["func"], a["mod"]) if a["func"] else (a["func2"], a["mod2"])
        return _Frame(_frame_name(func), module, True)
    return None


def _hits_ud2(lines: list[str]) -> bool:
    """Whether the ``Code:`` line (maybe wrapped onto the next one) shows ``<0f> 0b``."""
    for index, line in enumerate(lines):
        if _CODE_LINE.match(line):
            joined = line + " " + (lines[index + 1] if index + 1 < len(lines) else "")
            return _UD2.search(joined) is not None
    return False


@cache
def _skips(fmt: OopsFormat) -> re.Pattern[str]:
    """The culprit-skip regex of ``fmt``, compiled on first use (all of them cost ~10 ms)."""
    return re.compile("|".join(f"(?:{p})" for p in (*GENERIC_SKIP, *fmt.skip)))


def _culprit(fmt: OopsFormat, m: re.Match[str], frames: list[_Frame]) -> _Frame | None:
    if not fmt.culprit:
        return None
    skip = _skips(fmt)
    named = _group(m, "func")
    if named is not None and not skip.fullmatch(_frame_name(named)):
        name = _frame_name(named)
        module = _group(m, "mod") or next((f.module for f in frames if f.func == name), None)
        return _Frame(name, module, True)
    for frame in frames:
        if frame.reliable and not skip.fullmatch(frame.func):
            return frame
    if frames and not any(f.reliable for f in frames):
        # Old kernels without frame pointers mark every frame "?": they are still the stack.
        return next((f for f in frames if not skip.fullmatch(f.func)), None)
    return None


_NOTHING = re.compile(r"(?!)")
#: The RCU stall detector, run from the scheduler tick.
_STALL_DETECTOR = _re(r"rcu_sched_clock_irq|rcu_check_callbacks|rcu_pending|print_cpu_stall\w*")
#: A timer interrupt's entry: x86 "(asm_sysvec_)apic_timer_interrupt", arm64 "el1h_64_irq",
#: older arm64 "el1_irq" (syzkaller's stall format starts reading after these).
_IRQ_ENTRY = _re(r"apic_timer_interrupt|el1h?_64_irq|el1_irq|__irq_svc")


def _syz_pick(
    syz: Description, fmt: OopsFormat, m: re.Match[str], frames: list[_Frame], *, fallback: bool
) -> tuple[str, _Frame] | None:
    """The frame syzkaller's rules for ``syz``'s report kind pick among ours, with the name
    its title gives it. Ours are the function the header names (a WARNING's), then the
    reliable frames (all of them when none is, as old kernels without frame pointers print
    them), less those our own skip list names."""
    skip = _skips(fmt)
    named = _group(m, "func")
    head = []
    if named is not None:
        name = _frame_name(named)
        module = _group(m, "mod") or next((f.module for f in frames if f.func == name), None)
        head = [_Frame(name, module, True)]
    stack = [f for f in frames if f.reliable] or frames
    if syz.stack is not None and syz.stack.extractor == "stall":
        if not fallback:  # ours skip every frame: syzkaller's extractor reads the
            skip = _NOTHING  # interrupt-dispatch frames ours skip (an arm64 pc/lr pair)
        if "self-detected" in m.group(0) or any(_STALL_DETECTOR.fullmatch(f.func) for f in stack):
            # The stack of the timer interrupt that detected the stall: the stalled code is
            # what it interrupted, after the interrupt's entry (syzkaller reads from there on).
            # A self-detected stall's CPU is the detector: its own NMI backtrace stops in the
            # code that sends the backtrace NMIs, which its RIP names, not the stalled code.
            entry = [i for i, f in enumerate(stack) if _IRQ_ENTRY.search(f.func)]
            if not entry:
                return None  # cut inside the interrupt: the stalled code is not shown
            stack, head = stack[entry[-1] + 1 :], []
    candidates = [f for f in (*head, *stack) if not skip.fullmatch(f.func)]
    picked = syz.pick([f.func for f in candidates], fallback=fallback)
    if picked is None:
        return None
    frame = next(f for f in candidates if f.func == picked[1])
    return picked[0], frame


def _sanitize(text: str) -> str:
    text = _HEX.sub("ADDR", text)
    return " ".join(text.split())


def _group(m: re.Match[str], name: str) -> str | None:
    return m.groupdict().get(name)


def _build(op: _Open, console: ConsoleLines) -> CrashReport:
    fmt, m = op.fmt, op.match
    frames, rip = _collect_frames(op.lines)
    headerless = fmt.name.startswith("headerless")
    culprit = _culprit(fmt, m, _tail_frames(op) if headerless else frames)
    if fmt.name == "panic" and _NMI_SECTION.search("\n".join(op.lines)) is not None:
        culprit = None  # panicked in an NMI handler: the RIP is the code the NMI interrupted
    syz = None if headerless else describe(console, op.first if op.header is None else op.header)
    detail = ""
    if fmt.detail is not None:
        for line in op.lines[: ABSORB_WINDOW * 2]:
            d = fmt.detail.search(line)
            if d is not None:
                detail = d.group(1)
                break
    fields = {
        "arg": _sanitize(_group(m, "arg") or "").replace(" ", "-")
        if fmt.name == "kasan"
        else _sanitize(_group(m, "arg") or ""),
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
    if syz is not None and syz.raw and culprit is not None and "{func}" in fmt.title:
        syz = None  # syzkaller's table has no title for this header (s390's "pointer
        # dereference in virtual kernel address space"), ours names the faulting function
    if syz is not None:  # syzkaller knows this report: its rules title it and pick the frame
        title, alt, corrupted = syz.title, syz.alt_titles, syz.corrupted
        if syz.frame is not None:
            culprit = _Frame(syz.frame, syz.module, True)
        elif (culprit is not None or frames) and fmt.culprit and title.endswith(_SYZ_NO_FRAME):
            # syzkaller's stack patterns found no frame in a stack ours can read (arm, mips,
            # powerpc, old or pasted layouts): its skip lists and extractor pick among our
            # frames, and that frame takes the place of "corrupted" (none qualifies: it stays)
            picked = _syz_pick(syz, fmt, m, frames, fallback=culprit is not None)
            culprit = picked[1] if picked is not None else None
            if picked is not None:
                title = title[: -len(_SYZ_NO_FRAME)] + " in " + picked[0]
        elif corrupted:  # a title that names no function keeps the first frame not skipped
            culprit = None
        cause = syz.cause if fmt.name.startswith("other-") else cause
    if fmt.cause == "guest-oom" and op.panic_message is not None:
        # an OOM that panicked the kernel (panic_on_oom, nothing left to kill) is not the
        # same failure as an OOM kill the system survived: the panic titles it
        title = "kernel panic: " + _sanitize(op.panic_message)
    if fmt.ud2_is_bug and (
        _hits_ud2(op.lines) or (rip is not None and _LIST_CHECK.fullmatch(rip.split("+")[0]))
    ):
        cause = "guest-bug"
    cpu = _group(m, "cpu") or _group(m, "cpu2")
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


def last_lines(text: str, limit: int = MAX_LINES) -> tuple[str, int]:
    """``text`` from the start of its last ``limit`` lines, and how many lines were cut."""
    total = text.count("\n") + 1
    if total <= limit:
        return text, 0
    start = len(text)
    for _ in range(limit):
        start = text.rindex("\n", 0, start)
    return text[start + 1 :], total - limit


def _reliable(op: _Open) -> list[_Frame]:
    return [f for f in _collect_frames(op.lines)[0] if f.reliable]


def _headerless_tail(lines: list[str], raw: list[str], end: int) -> _Open | None:
    """The end of a report whose header is not in the text: the first kernel lines of the
    text, before ``end`` (the first report's header), hold a register dump and a mark only
    die() prints. A kernel message before them (dump_stack()'s own opening, a driver line)
    means the text did not start mid-report."""
    first = last = None
    registers = died = trapped = False
    for index in range(min(end, _HEADERLESS_LINES)):
        line = lines[index]
        if not line.strip():
            continue
        register = _REGISTER_LINE.match(line) is not None
        die = _DIE_MARK.search(line) is not None
        if register or die or _stack_frame(line) is not None or "Call Trace" in line:
            first = index if first is None else first
            last = index
        elif first is None and (index >= _HEADERLESS_PROSE or _KERNEL_LINE.search(raw[index])):
            return None
        registers |= register
        died |= die
        trapped |= die and _TRAP.search(line) is not None
    if first is None or last is None or not (registers and died):
        return None
    fmt = _HEADERLESS_BUG if trapped else _HEADERLESS
    body = [line for line in lines[first : last + 1] if line.strip()]
    return _Open(fmt, fmt.header.match(""), first, last, body)  # type: ignore[arg-type]


def _kernel_line(line: str, raw: str) -> bool:
    """Whether a line reads as the kernel's: a prefix was stripped from it (a printk stamp of
    any form, a syslog or journal tag), or it is a stack line."""
    return (
        _KERNEL_LINE.search(raw) is not None
        or raw.strip() != line.strip()
        or _stack_frame(line) is not None
    )


def _marked_tail(lines: list[str], raw: list[str], end: int) -> _Open | None:
    """The end of a report whose header is not in the text, named by a line only its kind
    prints (:data:`_BODY_MARKS`) among the first kernel lines before ``end``: from the first
    kernel line (or stack line) to the last one before ``end``."""
    head = min(end, _HEADERLESS_LINES)
    if _BODY_MARK_WORDS.search("\n".join(lines[:head])) is None:
        return None
    fmt = first = last = None
    for index in range(head):
        line = lines[index]
        if not line.strip():
            continue
        kernel = _kernel_line(line, raw[index])
        if fmt is None:
            fmt = next((f for mark, f in _BODY_MARKS if mark.search(line)), None)
        if first is None and (kernel or fmt is not None):
            first = index
        elif first is None and index >= _HEADERLESS_PROSE:
            return None
    if fmt is None or first is None:
        return None
    for index in range(end - 1, first - 1, -1):
        line = lines[index]
        if line.strip() and (_kernel_line(line, raw[index]) or raw[index][:1].isspace()):
            last = index
            break
    if last is None:
        return None
    body = [line for line in lines[first : last + 1] if line.strip()]
    return _Open(fmt, fmt.header.match(""), first, last, body)  # type: ignore[arg-type]


def _tail_frames(op: _Open) -> list[_Frame]:
    """The frames a header-less tail's culprit is read from: a stall's past the detecting
    timer interrupt's entry (none when the excerpt is cut inside it), a Bad page state's
    after its origin's "page last allocated", a KFENCE report's from its register dump on,
    any other's reliable frames."""
    frames = _reliable(op)
    if op.fmt is _HEADERLESS_STALL and any(_STALL_DETECTOR.fullmatch(f.func) for f in frames):
        entry = [i for i, f in enumerate(frames) if _IRQ_ENTRY.search(f.func)]
        return frames[entry[-1] + 1 :] if entry else []
    if op.fmt is _HEADERLESS_BAD_PAGE:
        origin = next((i for i, line in enumerate(op.lines) if _PAGE_ORIGIN.search(line)), None)
        return [] if origin is None else _collect_frames(op.lines[origin:])[0]
    if op.fmt is _HEADERLESS_KFENCE:
        # the object's allocation and free stacks come first; the access is the RIP's
        regs = next((i for i, line in enumerate(op.lines) if _RIP.match(line)), None)
        return (
            [] if regs is None else [f for f in _collect_frames(op.lines[regs:])[0] if f.reliable]
        )
    return frames


def parse_console(text: str) -> ConsoleAnalysis:
    """Split console text into crash reports; never raises, linear in the input size and
    bounded by its last :data:`MAX_LINES` lines (line numbers then count from there)."""
    text, cut = last_lines(text)
    raw_lines = [clean_text(raw) for raw in repair_lines(text)]
    lines = [strip_prefixes(raw) for raw in raw_lines]
    done: list[_Open] = []
    notes = (
        [f"only the last {MAX_LINES} lines were read ({cut} before them were not)"] if cut else []
    )
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
        if "Linux version " in line and _LINUX_VERSION.search(line):
            close(current)
            current, host = None, None
            continue
        hit = _match_header(line)
        if hit is not None:
            fmt, m = hit
            if (
                current is not None
                and index - current.first < current.fmt.absorb_window
                and (
                    fmt.name == current.fmt.name
                    or fmt.name in current.fmt.absorbs
                    or (fmt.name == _DIE_LINE and current.fmt.name.startswith("other-"))
                )
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
        if index - current.first >= MAX_REPORT_LINES or (
            "ys" in line and _SYSRQ_REQUEST.search(line)
        ):
            close(current)
            current = None
            continue
        if line.strip():
            current.lines.append(line)
            current.last = index
        if "---[ end " in line and _END_MARKER.search(line):
            close(current)
            current = None
    close(current)
    end = done[0].first if done else len(lines)
    # a line only one kind of report prints names it before die()'s marks (a soft lockup's
    # register dump and Code line are an oops's too)
    lead = _marked_tail(lines, raw_lines, end) or _headerless_tail(lines, raw_lines, end)
    if lead is not None and done and lead.fmt.title == done[0].fmt.title:
        # the body above a header of its own kind (an OOM report's task table above its
        # kill line) is the beginning of that report
        done[0].header, done[0].first = done[0].first, lead.first
        done[0].lines = [*lead.lines, *done[0].lines]
    elif lead is not None and (not done or _culprit(lead.fmt, lead.match, _tail_frames(lead))):
        # before a full report, a tail that names no function would only hide it
        done.insert(0, lead)
        del done[MAX_REPORTS:]
    if dropped:
        notes.append(f"{dropped} further reports not returned (limit {MAX_REPORTS})")
    for index, line in enumerate(lines):
        if _SYSRQ.search(line):
            notes.append(f"line {index}: crash triggered on purpose through sysrq")
            break
    console = ConsoleLines(raw_lines, lines, strip_outer_prefixes)
    reports = tuple(_build(op, console) for op in done)
    logger.debug("console: %d lines, %d reports", len(lines), len(reports))
    return ConsoleAnalysis(reports=reports, kernel_release=_release(lines), notes=tuple(notes))
