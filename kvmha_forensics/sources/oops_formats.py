"""Kernel report kinds as data, titled the way syzkaller's ``pkg/report`` titles them.

One :class:`Group` per header keyword (a cheap substring test on a console line), holding the
:class:`Format` s tried on the report text. The rules are syzkaller's (``pkg/report/linux.go``,
``oopsFormat``), written down here as data; the engine that applies them is
:mod:`kvmha_forensics.sources.oops_title`, the frame rules are in
:mod:`kvmha_forensics.sources.oops_frames`. Where this table differs from syzkaller on
purpose, ``docs/console-formats.md`` says so.

Patterns are Python regexes with four shorthands, expanded by :func:`expand`:
``@PC`` a ``[<ffffffff81000000>]`` address, ``@FUNC`` a function name followed by ``+`` or
``.`` (its capture group), ``@SRC`` a ``file.c:123`` location (a capture group), ``@TASK`` a
short, lazy stretch of any text (task names may hold anything).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: Marks a stack-trace part in :attr:`Stack.parts`: frames are read from here on.
TRACE = "@TRACE"

Extractor = Literal["first", "stall", "hang"]
GroupCause = Literal[
    "guest-panic", "guest-oops", "guest-bug", "guest-lockup", "guest-hung-task", "unknown"
]

_SHORTHANDS = (
    ("@PC", r"\[<?(?:0x)?[0-9a-f]+>?\]"),
    ("@FUNC", r"([a-zA-Z0-9_]+)(?:\.|\+)"),
    ("@SRC", r"([a-zA-Z0-9\-_/.]+\.[a-z]+:[0-9]+)"),
    ("@TASK", r"[\s\S]{0,100}?"),
)


def expand(pattern: str) -> str:
    """``pattern`` with its shorthands replaced by plain regex."""
    for short, full in _SHORTHANDS:
        pattern = pattern.replace(short, full)
    return pattern


@dataclass(frozen=True, slots=True)
class Stack:
    """Where the guilty frame is read: ``parts`` in order, each a regex searched line by line
    (its groups are candidate frames) or :data:`TRACE` (read frames until the next trace starts).
    Each :data:`TRACE` yields one title argument. ``parts2`` is tried when ``parts`` find no
    frame. ``skip`` adds patterns to the common skip list; ``extractor`` picks among the frames:
    ``first`` unskipped, ``stall`` (the caller of a dispatch anchor) or ``hang`` (rtnl/RCU
    buckets, then the first frame outside waiting primitives)."""

    parts: tuple[str, ...]
    parts2: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    extractor: Extractor = "first"


@dataclass(frozen=True, slots=True)
class Format:
    """One kind of report. ``title`` is searched in the report text (the earliest match over
    the group's formats wins); ``report`` (if any) is a sequence of regexes that must match on
    successive lines, else the report is corrupted; their groups, then one frame per trace of
    ``stack``, are the arguments ``{0}``, ``{1}`` … of ``template`` and ``alt``.
    ``no_trace``: the report has no stack to check; ``corrupted``: always corrupted."""

    title: str
    template: str
    report: tuple[str, ...] = ()
    alt: tuple[str, ...] = ()
    stack: Stack | None = None
    no_trace: bool = False
    corrupted: bool = False


@dataclass(frozen=True, slots=True)
class Group:
    """A header keyword, the formats tried when a line holds it, lines holding it that are not
    a report (``ignore``), and the cause a report of this group has by default."""

    header: str
    formats: tuple[Format, ...]
    cause: GroupCause
    ignore: tuple[str, ...] = ()


# Frequently used parts.
RIP = (
    r"(?:IP|NIP|pc |PC is at):? (?:(?:[0-9]+:)?(?:@PC +){0,2}@FUNC|(?:[0-9]+:)?0x[0-9a-f]+"
    r"|(?:[0-9]+:)?@PC +\[< *\(null\)>\] +\(null\)|[0-9]+: +\(null\))"
)
CALL_TRACE = r"(?:Call (?:T|t)race:)|(?:Backtrace:)"
_RIP_TRACE = Stack((RIP, CALL_TRACE, TRACE))
_TRACE_ONLY = (CALL_TRACE, TRACE)
_BAD = "bad-access in {0}"
_KASAN_FREE = r"BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in @FUNC"


def _rip_only() -> Stack:
    return Stack((RIP,))


def _warning(*skip: str) -> Stack:
    """A WARNING's stack: from its RIP (x86) or ``--- interrupt:`` (powerpc), else the trace."""
    return Stack((f"(?:{RIP}|--- interrupt: [0-9]+ at @FUNC)", TRACE), _TRACE_ONLY, skip)


def _lockdep(head: str, then: str) -> tuple[str, ...]:
    """A lockdep report: the header, then a line with ``then``, then the ``at:`` frame."""
    return (head, then, r"at: (?:@PC +)?@FUNC")


_BUG = Group(
    "BUG:",
    (
        Format(
            r"BUG: KASAN:",
            "KASAN: {0} {2} in {3}",
            report=(
                r"BUG: KASAN: ([a-z\-]+) in @FUNC",
                r"(Read|Write) (?:of size|at addr) [0-9a-f]+",
            ),
            alt=("bad-access in {3}",),
            stack=Stack(
                (r"BUG: KASAN: (?:[a-z\-]+) in @FUNC", CALL_TRACE, TRACE),
                skip=("kernel_fault", "tag_check", "mem_abort", "^el1_", "^el1h_"),
            ),
        ),
        Format(
            r"BUG: KASAN:",
            "KASAN: invalid-free in {1}",
            report=(
                r"BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in @FUNC",
            ),
            alt=("invalid-free in {1}",),
            stack=Stack(
                (_KASAN_FREE, CALL_TRACE, TRACE),
                skip=("slab_", "kfree", "vunmap", "vfree"),
            ),
        ),
        Format(
            r"BUG: KASAN: ([a-z\-]+) on address(?:.*\n)+?.*(Read|Write) of size ([0-9]+)",
            "KASAN: {0} {1}",
        ),
        Format(r"BUG: KASAN: (.*)", "KASAN: {0}", corrupted=True),
        Format(
            r"BUG: KMSAN: kernel-usb-infoleak",
            "KMSAN: kernel-usb-infoleak in {1}",
            report=(r"BUG: KMSAN: kernel-usb-infoleak in @FUNC",),
            alt=("KMSAN origin in {2}",),
            stack=Stack(
                (TRACE, r"(Local variable .* created at:|Uninit was created at:)", TRACE),
                skip=(
                    "alloc_skb",
                    "usb_submit_urb",
                    "usb_start_wait_urb",
                    "usb_bulk_msg",
                    "usb_interrupt_msg",
                    "usb_control_msg",
                ),
            ),
            no_trace=True,
        ),
        Format(
            r"BUG: KMSAN:",
            "KMSAN: {0} in {2}",
            report=(r"BUG: KMSAN: ([a-z\-]+) in @FUNC",),
            alt=("bad-access in {2}",),
            stack=Stack(
                (TRACE, r"(Local variable .* created at:|Uninit was created at:)", TRACE),
                skip=(
                    "alloc_skb",
                    "netlink_ack",
                    "netlink_rcv_skb",
                    "_encrypt$",
                    "^(?:crypto|cipher|drbg|rng)_",
                ),
            ),
            no_trace=True,
        ),
        Format(
            r"BUG: KCSAN: data-race", "KCSAN: {0}", report=(r"BUG: KCSAN: (.*)",), no_trace=True
        ),
        Format(r"BUG: KCSAN:", "KCSAN: {0}", report=(r"BUG: KCSAN: (.*)",), no_trace=True),
        Format(
            r"BUG: KFENCE: (use-after-free|out-of-bounds) (read|write) in @FUNC",
            "KFENCE: {0} {1} in {3}",
            alt=("bad-access in {3}",),
            stack=Stack((r"BUG: KFENCE: (?:[a-z\- ]+) in @FUNC", TRACE)),
        ),
        Format(
            r"BUG: KFENCE: invalid free in @FUNC",
            "KFENCE: invalid free in {1}",
            alt=("invalid-free in {1}",),
            stack=Stack((r"BUG: KFENCE: (?:[a-z\- ]+) in @FUNC", TRACE)),
            no_trace=True,
        ),
        Format(
            r"BUG: KFENCE: invalid (read|write) in @FUNC",
            "KFENCE: invalid {0} in {2}",
            alt=("bad-access in {2}",),
            stack=Stack((r"BUG: KFENCE: (?:[a-z\- ]+) in @FUNC", TRACE)),
        ),
        Format(
            r"BUG: KFENCE: memory corruption in @FUNC",
            "KFENCE: memory corruption in {1}",
            stack=Stack((r"BUG: KFENCE: (?:[a-z\- ]+) in @FUNC", TRACE)),
            no_trace=True,
        ),
        Format(
            r"BUG: (?:unable to handle kernel paging request"
            r"|unable to handle page fault for address|Unable to handle kernel data access)",
            "BUG: unable to handle kernel paging request in {0}",
            alt=(_BAD,),
            stack=_RIP_TRACE,
        ),
        Format(
            r"BUG: (?:unable to handle kernel NULL pointer dereference"
            r"|kernel NULL pointer dereference|Kernel NULL pointer dereference)",
            "BUG: unable to handle kernel NULL pointer dereference in {0}",
            alt=(_BAD,),
            stack=_RIP_TRACE,
        ),
        # The kernel prints the rest of this header with a second printk, which can be lost.
        Format(
            r"BUG: (?:unable to handle kernel|Unable to handle kernel)",
            "BUG: unable to handle kernel",
            corrupted=True,
        ),
        Format(
            r"BUG: (spinlock|rwlock) (lockup suspected|already unlocked|recursion|cpu recursion"
            r"|bad magic|wrong owner|wrong CPU|trylock failure on UP)",
            "BUG: {0} {1} in {2}",
            stack=Stack(_TRACE_ONLY, skip=("spin_", "_lock", "_unlock")),
        ),
        Format(
            r"BUG: soft lockup",
            "BUG: soft lockup in {0}",
            alt=("stall in {0}",),
            stack=Stack((RIP, CALL_TRACE, TRACE), extractor="stall"),
        ),
        Format(
            r"BUG: .*still has locks held!",
            "BUG: still has locks held in {0}",
            report=(r"BUG: .*still has locks held!", r"@PC +@FUNC"),
        ),
        Format(
            r"BUG: scheduling while atomic",
            "BUG: scheduling while atomic in {0}",
            stack=Stack(_TRACE_ONLY, skip=("schedule",)),
        ),
        Format(
            r"BUG: lock held when returning to user space",
            "BUG: lock held when returning to user space in {0}",
            report=(
                r"BUG: lock held when returning to user space",
                r"leaving the kernel with locks still held",
                r"at: (?:@PC +)?@FUNC",
            ),
            no_trace=True,
        ),
        Format(
            r"BUG: bad unlock balance detected!",
            "BUG: bad unlock balance in {0}",
            stack=Stack((r"@PC +@FUNC", CALL_TRACE, TRACE)),
        ),
        Format(
            r"BUG: held lock freed!",
            "BUG: held lock freed in {0}",
            report=(r"BUG: held lock freed!", r"@PC +@FUNC"),
        ),
        Format(r"BUG: Bad rss-counter state", "BUG: Bad rss-counter state", no_trace=True),
        Format(
            r"BUG: non-zero nr_ptes on freeing mm",
            "BUG: non-zero nr_ptes on freeing mm",
            no_trace=True,
        ),
        Format(
            r"BUG: non-zero nr_pmds on freeing mm",
            "BUG: non-zero nr_pmds on freeing mm",
            no_trace=True,
        ),
        # The filesystem and block device names vary between runs of one bug: left out.
        Format(
            r"BUG: Dentry .* still in use",
            "BUG: Dentry still in use in {0}",
            report=(r"BUG: Dentry .* still in use \([0-9]+\) \[(unmount) of ([^\]]+)\]",),
            alt=("BUG: Dentry still in use [{0} of {1}]",),
        ),
        Format(
            r"BUG: Bad page (state|cache)",
            "BUG: Bad page {0} in {1}",
            stack=Stack(
                (r"page last allocated", TRACE),
                skip=(
                    "(free|put|get|update|release)_page",
                    "free_unref",
                    "^_*folio",
                    "truncate_inode_pages",
                    "page_frag_free",
                    "alloc",
                    "vmap",
                    "page_owner",
                ),
            ),
        ),
        Format(r"BUG: Bad page map", "BUG: Bad page map"),
        Format(r"BUG: workqueue lockup", "BUG: workqueue lockup", no_trace=True),
        Format(
            r"BUG: sleeping function called from invalid context at (.*)",
            "BUG: sleeping function called from invalid context in {1}",
            stack=Stack(_TRACE_ONLY),
        ),
        Format(
            r"BUG: using ([a-z_]+)\(\) in preemptible",
            "BUG: using {0}() in preemptible code in {1}",
            stack=Stack(
                _TRACE_ONLY,
                skip=("dump_stack", "preemption", "preempt", "debug_", "processor_id", "this_cpu"),
            ),
        ),
        Format(
            r"BUG: workqueue leaked lock or atomic",
            "BUG: workqueue leaked lock or atomic in {0}",
            report=(r"BUG: workqueue leaked lock or atomic", r"last function: ([a-zA-Z0-9_]+)$"),
            no_trace=True,
        ),
        Format(
            r"BUG: memory leak",
            "memory leak in {0}",
            stack=Stack(
                (r"backtrace(?: \(crc [0-9a-fA-F]*\))?:", TRACE),
                skip=(
                    "kmemleak",
                    "mmap",
                    "kmem",
                    "slab",
                    "alloc",
                    "create_object",
                    "idr_get",
                    "list_lru_init",
                    "kasprintf",
                    "kvasprintf",
                    "pcpu_create",
                    "strdup",
                    "strndup",
                    "memdup",
                ),
            ),
        ),
        Format(
            r"BUG: .*stack guard page was hit at",
            "BUG: stack guard page was hit in {0}",
            alt=("stack-overflow in {0}",),
            stack=Stack((RIP, CALL_TRACE, TRACE), extractor="stall"),
        ),
        # arm64's spelling of a lockdep report; titled as amd64's to group them.
        Format(
            r"BUG: Invalid wait context",
            "WARNING: locking bug in {0}",
            stack=Stack(_TRACE_ONLY, skip=("lock_sock", "release_sock")),
        ),
        Format(r"BUG:\s*(?:\n|$)", "BUG: corrupted", corrupted=True),
    ),
    "guest-bug",
    ignore=(
        r"ODEBUG:",
        r"Boot_DEBUG:",
        r"xlog_status:",
        r"DEBUG:",
        r"BUG: no syscalls can create resource",
    ),
)

_WARNING = Group(
    "WARNING:",
    (
        Format(
            r"WARNING: .*lib/debugobjects\.c.* (?:debug_print|debug_check|at)",
            "WARNING: ODEBUG bug in {0}",
            stack=_warning(
                "debug_",
                "rcu",
                "hrtimer_",
                "timer_",
                "work_",
                "percpu_",
                "vunmap",
                "vfree",
                "__free_",
                "debug_check",
                "kobject_",
            ),
        ),
        Format(
            r"WARNING: .*mm/usercopy\.c.* (?:usercopy_warn|at)",
            "WARNING: bad usercopy in {0}",
            stack=_warning("usercopy", "__check"),
        ),
        Format(
            r"WARNING: .*lib/kobject\.c.* (?:kobject_|at)",
            "WARNING: kobject bug in {0}",
            stack=_warning("kobject_"),
        ),
        Format(
            r"WARNING: .*fs/proc/generic\.c.* (?:proc_register|at)",
            "WARNING: proc registration bug in {0}",
            stack=_warning("proc_"),
        ),
        Format(
            r"WARNING: .*lib/refcount\.c.* (?:refcount_|at)",
            "WARNING: refcount bug in {0}",
            stack=_warning("refcount", "kobject_"),
        ),
        Format(
            r"WARNING: .*kernel/locking/lockdep\.c.*lock_",
            "WARNING: locking bug in {0}",
            stack=_warning("lock_sock", "release_sock"),
        ),
        Format(
            r"WARNING: .*still has locks held!",
            "WARNING: still has locks held in {0}",
            report=(r"WARNING: .*still has locks held!", r"at: @FUNC"),
        ),
        Format(
            r"WARNING: Nested lock was not taken",
            "WARNING: nested lock was not taken in {0}",
            stack=_warning(),
        ),
        Format(
            r"WARNING: lock held when returning to user space",
            "WARNING: lock held when returning to user space in {0}",
            report=(
                r"WARNING: lock held when returning to user space",
                r"leaving the kernel with locks still held",
                r"at: (?:@PC +)?@FUNC",
            ),
            no_trace=True,
        ),
        Format(
            r"WARNING: .*mm/.*\.c.* k?.?malloc",
            "WARNING: kmalloc bug in {0}",
            stack=_warning("kmalloc", "krealloc", "slab", "kmem"),
        ),
        Format(
            r"WARNING: .*mm/vmalloc.c.*__vmalloc_node",
            "WARNING: zero-size vmalloc in {0}",
            stack=_warning(),
        ),
        Format(
            r"WARNING: .* usb_submit_urb",
            "WARNING in {0}/usb_submit_urb",
            stack=_warning(
                "usb_submit_urb",
                "usb_start_wait_urb",
                "usb_bulk_msg",
                "usb_interrupt_msg",
                "usb_control_msg",
            ),
        ),
        # Linux 6.19+ spelling: "WARNING: file.c:123 at 0x…, CPU#0: comm/1".
        Format(r"WARNING: @SRC at 0x\d+, CPU#\d+", "WARNING in {1}", stack=_warning()),
        Format(r"WARNING: .* at @SRC @FUNC", "WARNING in {2}", stack=_warning()),
        Format(r"WARNING: @SRC at @FUNC", "WARNING in {2}", stack=_warning()),
        Format(r"WARNING: \[.*\] @SRC at @FUNC.*", "WARNING in {2}", stack=_warning()),
        Format(
            r"WARNING: possible circular locking dependency detected",
            "possible deadlock in {0}",
            report=(
                r"WARNING: possible circular locking dependency detected",
                r"is trying to acquire lock",
            ),
            stack=Stack(
                (r"at: (?:@PC +)?@FUNC", r"at: (?:@PC +)?@FUNC", TRACE),
                skip=(
                    "process_one_work",
                    "flush_workqueue",
                    "drain_workqueue",
                    "destroy_workqueue",
                ),
            ),
        ),
        Format(
            r"WARNING: possible irq lock inversion dependency detected",
            "possible deadlock in {0}",
            report=_lockdep(
                r"WARNING: possible irq lock inversion dependency detected",
                r"just changed the state of lock",
            ),
        ),
        Format(
            r"WARNING: .*-safe -> .*-unsafe lock order detected",
            "possible deadlock in {0}",
            stack=Stack((r"which became (?:.*) at:", TRACE)),
        ),
        Format(
            r"WARNING: possible recursive locking detected",
            "possible deadlock in {0}",
            report=_lockdep(
                r"WARNING: possible recursive locking detected", r"is trying to acquire lock"
            ),
        ),
        Format(
            r"WARNING: inconsistent lock state",
            "inconsistent lock state in {1}",
            report=_lockdep(r"WARNING: inconsistent lock state", r"takes"),
            stack=Stack(_TRACE_ONLY),
        ),
        Format(
            r"WARNING: suspicious RCU usage",
            "WARNING: suspicious RCU usage in {1}",
            report=(r"WARNING: suspicious RCU usage", r"@SRC"),
            stack=Stack(_TRACE_ONLY, skip=("rcu", "kmem", "slab")),
        ),
        Format(
            r"WARNING: kernel stack regs at [0-9a-f]+ in [^ ]* has bad '([^']+)' value",
            "WARNING: kernel stack regs has bad '{0}' value",
            no_trace=True,
        ),
        Format(
            r"WARNING: kernel stack frame pointer at [0-9a-f]+ in [^ ]* has bad value",
            "WARNING: kernel stack frame pointer has bad value",
            no_trace=True,
        ),
        Format(
            r"WARNING: bad unlock balance detected!",
            "WARNING: bad unlock balance in {0}",
            stack=Stack((r"@PC +@FUNC", CALL_TRACE, TRACE)),
        ),
        Format(
            r"WARNING: held lock freed!",
            "WARNING: held lock freed in {0}",
            report=(r"WARNING: held lock freed!", r"at:(?: @PC)? +@FUNC"),
        ),
        Format(
            r"WARNING: kernel stack regs .* has bad 'bp' value",
            "WARNING: kernel stack regs has bad value",
            no_trace=True,
        ),
        Format(
            r"WARNING: kernel stack frame pointer .* has bad value",
            "WARNING: kernel stack regs has bad value",
            no_trace=True,
        ),
        Format(r"WARNING:\s*(?:\n|$)", "WARNING: corrupted", corrupted=True),
    ),
    "guest-bug",
    ignore=(
        r"WARNING: /etc/ssh/moduli does not exist, using fixed modulus",
        r"WARNING: workqueue cpumask: online intersect > possible intersect",
        r"WARNING: [Tt]he mand mount option",
        r"WARNING: Unsupported flag value\(s\) of 0x%x in DT_FLAGS_1",
        r"WARNING: Unprivileged eBPF is enabled with eIBRS",
        r"WARNING: fbcon: Driver '(.*)' missed to adjust virtual screen size",
        r"WARNING: See https.* for mitigation options.",
        r"WARNING: kernel not compiled with CPU_SRSO",
        r"EXT4-[Ff][Ss](?: \(.*\))?:",
        r"(?i)warning: .* uses (deprecated v2 capabilities|wireless extensions)",
        r"XFS \(\w+\): WARNING",
    ),
)


def _info_lockdep(what: str, then: str, template: str = "possible deadlock in {0}") -> Format:
    """The pre-4.x lockdep spelling: ``INFO: … detected ]``, then ``then``, then an ``at:``."""
    return Format(f"INFO: {what}", template, report=(f"INFO: {what} \\]", then, r"at: @PC +@FUNC"))


_INFO = Group(
    "INFO:",
    (
        _info_lockdep("possible circular locking dependency detected", "is trying to acquire lock"),
        _info_lockdep(
            "possible irq lock inversion dependency detected", "just changed the state of lock"
        ),
        _info_lockdep("SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected", "is trying to acquire"),
        _info_lockdep("possible recursive locking detected", "is trying to acquire lock"),
        _info_lockdep("inconsistent lock state", "takes", "inconsistent lock state in {0}"),
        Format(
            r"INFO: rcu_(?:preempt|sched|bh|tasks) (?:self-)?detected(?: expedited)? stall",
            "INFO: rcu detected stall in {0}",
            alt=("stall in {0}",),
            stack=Stack(
                (r"apic_timer_interrupt", RIP, TRACE),
                (r"(?:apic_timer_interrupt|Exception stack|el1h_64_irq)", TRACE),
                skip=("apic_timer_interrupt", "rcu"),
                extractor="stall",
            ),
        ),
        Format(
            r"INFO: trying to register non-static key",
            "INFO: trying to register non-static key in {0}",
            stack=Stack(_TRACE_ONLY, skip=("stack", "lock", "IRQ")),
        ),
        Format(
            r"INFO: suspicious RCU usage",
            "INFO: suspicious RCU usage in {1}",
            report=(r"INFO: suspicious RCU usage", r"@SRC"),
            stack=Stack(_TRACE_ONLY, skip=("rcu", "kmem", "slab")),
        ),
        Format(
            r"INFO: task @TASK blocked (?:in I/O wait )?for more than [0-9]+ seconds",
            "INFO: task hung in {0}",
            alt=("hang in {0}",),
            stack=Stack(_TRACE_ONLY, extractor="hang"),
        ),
        Format(
            r"INFO: task @TASK can't die for more than .* seconds",
            "INFO: task can't die in {0}",
            alt=("hang in {0}",),
            stack=Stack(_TRACE_ONLY, skip=("schedule",)),
        ),
        # Old KASAN reports whose header was lost.
        Format(r"INFO: (Freed|Allocated) in (.*)", "INFO: {0} in {1}", corrupted=True),
        Format(r"INFO:\s*(?:\n|$)", "INFO: corrupted", corrupted=True),
    ),
    "guest-bug",
    ignore=(
        r"INFO: lockdep is turned off",
        r"INFO: Stall ended before state dump start",
        r"INFO: NMI handler",
        r"INFO: recovery required on readonly filesystem",
        r"(handler|interrupt).*took too long",
        r"INFO: sys_.* is not present in /proc/kallsyms",
        r"INFO: no syscalls can create resource",
        r"rmt_storage:INFO:",
        r"_INFO:",
    ),
)


def _simple(
    header: str, title: str, template: str, cause: GroupCause, stack: Stack, alt: str = ""
) -> Group:
    return Group(header, (Format(title, template, alt=(alt,) if alt else (), stack=stack),), cause)


_PANIC = "Kernel panic - not syncing: "

_KERNEL_PANIC = Group(
    "Kernel panic",
    (
        # A corrupted stack may leave no symbol and no unwindable stack.
        Format(
            _PANIC + "stack-protector:",
            "kernel panic: stack is corrupted in {0}",
            report=(_PANIC + r"stack-protector: Kernel stack is corrupted in: @FUNC",),
            no_trace=True,
        ),
        Format(
            _PANIC + "stack-protector:",
            "kernel panic: stack is corrupted in {0}",
            report=(_PANIC + r"stack-protector: Kernel stack is corrupted in: [a-f0-9]+",),
            stack=Stack(_TRACE_ONLY, skip=("stack_chk",)),
        ),
        Format(
            _PANIC + "corrupted stack end",
            "kernel panic: corrupted stack end in {0}",
            report=(_PANIC + "corrupted stack end detected inside scheduler",),
            alt=("stack-overflow in {0}",),
            stack=Stack(_TRACE_ONLY, skip=("schedule", "retint_kernel"), extractor="stall"),
        ),
        Format(
            _PANIC + "kernel stack overflow",
            "kernel stack overflow in {0}",
            alt=("stack-overflow in {0}",),
            stack=Stack(_TRACE_ONLY, skip=("bad_stack",), extractor="stall"),
        ),
        Format(_PANIC + "Attempted to kill init!", "kernel panic: Attempted to kill init!"),
        Format(
            _PANIC + r"Couldn't open N_TTY ldisc for [^ ]+ --- error -[0-9]+",
            "kernel panic: Couldn't open N_TTY ldisc",
        ),
        # These follow the report that caused them: alone, that report was lost.
        Format(_PANIC + "Fatal exception", "kernel panic: Fatal exception", corrupted=True),
        Format(_PANIC + "panic_on_warn set", "kernel panic: panic_on_warn set", corrupted=True),
        Format(
            _PANIC + "hung_task: blocked tasks",
            "kernel panic: hung_task: blocked tasks",
            corrupted=True,
        ),
        Format(_PANIC + "(.*)", "kernel panic: {0}"),
    ),
    "guest-panic",
)

_KERNEL_BUG = Group(
    "kernel BUG",
    (
        Format(
            r"kernel BUG at mm/usercopy.c",
            "BUG: bad usercopy in {0}",
            stack=Stack(_TRACE_ONLY, skip=("usercopy", "__check")),
        ),
        Format(
            r"kernel BUG at lib/list_debug.c",
            "BUG: corrupted list in {0}",
            alt=(_BAD,),
            stack=Stack(_TRACE_ONLY),
        ),
        # Many skb helpers hold a BUG_ON; the bug is almost always in their caller.
        Format(
            r"kernel BUG at (.*)",
            "kernel BUG in {1}",
            stack=Stack((RIP, CALL_TRACE, TRACE), skip=("^skb_",)),
        ),
    ),
    "guest-bug",
)

_UBSAN_SKIP = ("ubsan", "overflow")
_UBSAN = Group(
    "UBSAN:",
    (
        Format(
            r"UBSAN:",
            "UBSAN: undefined-behaviour in {0}",
            report=(r"UBSAN: Undefined behaviour in",),
            stack=Stack(_TRACE_ONLY, skip=_UBSAN_SKIP),
        ),
        Format(
            r"UBSAN: array-index-out-of-bounds in",
            "UBSAN: array-index-out-of-bounds in {0}",
            alt=(_BAD,),
            stack=Stack(_TRACE_ONLY, skip=_UBSAN_SKIP),
        ),
        Format(
            r"UBSAN:",
            "UBSAN: {0} in {1}",
            report=(r"UBSAN: (.*?) in",),
            stack=Stack(_TRACE_ONLY, skip=_UBSAN_SKIP),
        ),
    ),
    "guest-bug",
)

_TRUSTY = Group(
    "trusty: panic",
    (
        Format(
            r"trusty: panic.* ASSERT FAILED",
            "trusty: ASSERT FAILED: {0}",
            report=(r"trusty: panic \(.*?\):(?: DEBUG)? ASSERT FAILED at \(.*?\): (.+)",),
            no_trace=True,
        ),
        Format(
            r"trusty: panic.* ASSERT FAILED.*: *(.*)", "trusty: ASSERT FAILED: {0}", corrupted=True
        ),
        Format(
            r"trusty: panic",
            "trusty: panic: {0}",
            report=(r"trusty: panic \(.*?\): (.+)",),
            no_trace=True,
        ),
    ),
    "guest-panic",
)


def _no_trace(header: str, title: str, template: str, cause: GroupCause = "guest-bug") -> Group:
    return Group(header, (Format(title, template, no_trace=True),), cause)


#: The table, in syzkaller's order (a line holding several headers belongs to the first).
#: Left out on purpose: ``panic:`` and ``fatal error:`` (Go programs' crashes: in a guest's
#: console they are user space), ``Booting the kernel.`` (every x86 boot prints it).
GROUPS: tuple[Group, ...] = (
    _BUG,
    _WARNING,
    _INFO,
    _simple(
        "Unable to handle kernel",
        r"Unable to handle kernel (paging request|NULL pointer dereference|access to user memory)",
        "BUG: unable to handle kernel {0} in {1}",
        "guest-oops",
        _RIP_TRACE,
        "bad-access in {1}",
    ),
    Group(
        "general protection fault",
        (
            Format(
                r"general protection fault.*:",
                "general protection fault in {0}",
                alt=(_BAD,),
                stack=_RIP_TRACE,
            ),
        ),
        "guest-oops",
        ignore=(r"general protection fault .* error:\d+ in ",),
    ),
    _simple(
        "stack segment: ",
        r"stack segment: ",
        "stack segment fault in {0}",
        "guest-oops",
        _RIP_TRACE,
    ),
    _KERNEL_PANIC,
    _simple(
        "PANIC: double fault",
        r"PANIC: double fault",
        "PANIC: double fault in {0}",
        "guest-oops",
        _rip_only(),
    ),
    Group(
        "rust_kernel: panicked",
        (
            Format(
                r"rust_kernel: panicked",
                "{0} in {1}",
                report=(r"rust_kernel: panicked at ", r"^(.+?)$"),
                stack=Stack(_TRACE_ONLY, skip=(re.escape("__rustc::rust_begin_unwind"),)),
            ),
        ),
        "guest-panic",
    ),
    _KERNEL_BUG,
    Group("Kernel BUG", (Format(r"Kernel BUG (.*)", "kernel BUG {0}"),), "guest-bug"),
    Group(
        "BUG kmalloc-",
        (Format(r"BUG kmalloc-.*: Object already free", "BUG: Object already free"),),
        "guest-bug",
    ),
    _simple("divide error:", r"divide error: ", "divide error in {0}", "guest-oops", _rip_only()),
    # The spelling of Linux 5.8 (9d06c4027f21, "x86/entry: Convert Divide Error to IDTENTRY").
    _simple("divide_error:", r"divide_error: ", "divide error in {0}", "guest-oops", _rip_only()),
    _simple(
        "invalid opcode:", r"invalid opcode: ", "invalid opcode in {0}", "guest-oops", _rip_only()
    ),
    _simple("int3:", r"int3: ", "int3 in {0}", "guest-oops", _RIP_TRACE),
    _UBSAN,
    _no_trace(
        "unregister_netdevice: waiting for",
        r"unregister_netdevice: waiting for (?:.*) to become free",
        "unregister_netdevice: waiting for DEV to become free",
    ),
    _no_trace(
        "VFS: Close: file count is 0",
        r"VFS: Close: file count is 0",
        "VFS: Close: file count is zero (use-after-free)",
    ),
    _no_trace(
        "VFS: Busy inodes after unmount",
        r"VFS: Busy inodes after unmount",
        "VFS: Busy inodes after unmount (use-after-free)",
    ),
    # arm64 and arm name one fault differently; the alternate title groups them.
    _simple(
        "Internal error:",
        r"Internal error:",
        "Internal error in {0}",
        "guest-oops",
        _RIP_TRACE,
        _BAD,
    ),
    _simple(
        "Unhandled fault:",
        r"Unhandled fault:",
        "Unhandled fault in {0}",
        "guest-oops",
        _RIP_TRACE,
        _BAD,
    ),
    _simple(
        "Alignment trap:", r"Alignment trap:", "Alignment trap in {0}", "guest-oops", _RIP_TRACE
    ),
    _TRUSTY,
    _no_trace("SYZFAIL:", r"SYZFAIL:(.*)", "SYZFAIL:{0}", "unknown"),
    _no_trace("SYZFATAL:", r"SYZFATAL:(.*)", "SYZFATAL:{0}", "unknown"),
)

#: Headers that do not start a second report inside a first one (they are part of it).
CONTINUATIONS: tuple[str, ...] = (
    r"invalid opcode: 0000",
    r"Kernel panic - not syncing",
    r"unregister_netdevice: waiting for",
    r"PANIC: double fault",
    r"Internal error:",
)

#: Messages that are not bugs but carry a stack: inside a report, they end it.
INFO_WITH_STACK: tuple[str, ...] = (
    "vmalloc: allocation failure:",
    "FAULT_INJECTION: forcing a failure",
    "FAULT_FLAG_ALLOW_RETRY missing",
)
