"""Which stack frame is guilty: syzkaller's frame rules (``pkg/report/linux.go``
``linuxStackParams``, the stall and hang extractors) as data, and the three small pickers.

A frame is a function name read from a report line. It is *skipped* when any of
:data:`SKIP` (or its format's own ``skip``) is found in it (a regex search, not a full match:
``"kasan"`` skips ``__kasan_check_read`` and ``kasan_report``). The guilty frame is the first
frame left, with syscall-wrapper prefixes (:data:`STRIP_PREFIXES`) taken off, except for stalls
(:func:`pick_stall`) and hung tasks (:func:`pick_hang`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .lazy_re import LazyPattern
from .oops_formats import expand

#: Lines where a stack trace starts (a new one ends the previous).
TRACE_STARTS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.MULTILINE)
    for p in (
        r"Call (?:T|t)race",
        r"Allocated:",
        r"Allocated by task [0-9]+:",
        r"Freed:",
        r"Freed by task [0-9]+:",
        # "backtrace:" (kmemleak, with an optional crc) but not lockdep's "stack backtrace:".
        r"(?:^ *|[^k] )backtrace(?: \(crc [0-9a-fA-F]*\))?:",
        r"Backtrace:",
        r"Uninit was stored to memory at",
        # RISC-V's show_regs() ends with this line, then prints the stack without a header.
        r"status: [0-9a-f]{16} badaddr: [0-9a-f]{16} cause: [0-9a-f]{16}",
    )
)
RISCV_TRACE_START = TRACE_STARTS[-1]

#: Lines that are a frame; group 1 (and 2) the function.
FRAME_LINES: tuple[re.Pattern[str], ...] = (
    re.compile(expand(r"^ *(?:@PC ){0,2}@FUNC")),
    # arm: "[<c0100>] (caller) from [<c0200>] (callee+0x1/0x2)" names two frames.
    re.compile(expand(r"^ *@PC \(([a-zA-Z0-9_.]+)\) from @PC \(@FUNC")),
)

#: A frame of fault injection inside a report: the report is mixed with another stack.
CORRUPTED_LINES: tuple[re.Pattern[str], ...] = (
    re.compile(r"^ *(\[<?(?:0x)?[0-9a-f]+>?\] )?should_fail(slab)?(\.[a-z0-9.]+)?\+0x"),
)

#: Syscall and wrapper prefixes; the shortest name left after taking one off is the frame.
STRIP_PREFIXES: tuple[str, ...] = (
    "SYSC_",
    "SyS_",
    "sys_",
    "__x64_",
    "__ia32_",
    "__arm64_",
    "____sys_",
    "___sys_",
    "__sys_",
    "__se_",
    "__se_sys_",
    "__do_sys_",
    "compat_SYSC_",
    "compat_SyS_",
    "ksys_",
)

#: Frames that are never guilty: sanitizers, printing, trapping, allocation, locking, string
#: and list helpers, reference counting, device-model and workqueue plumbing …
SKIP: tuple[str, ...] = (
    # sanitizers and their checks
    "__sanitizer",
    "__asan",
    "kasan",
    "hwasan",
    "__msan",
    "kmsan",
    "kcsan_setup_watchpoint",
    "check_memory_region",
    "check_heap_object",
    "check_object",
    "read_word_at_a_time",
    "(read|write)_once_.*nocheck",
    "print_address_description",
    # reporting, trapping, printing a stack
    "panic",
    "invalid_op",
    "report_bug",
    "fixup_bug",
    "print_report",
    "print_usage_bug",
    "do_error",
    "_trap$|do_trap",
    "show_stack",
    "dump_stack",
    "walk_stack",
    "dump_backtrace",
    "warn_slowpath",
    "warn_alloc",
    "warn_bogus",
    "__warn",
    # allocation and the page cache
    "alloc_page",
    "k?v?(?:m|z|c)alloc",
    "krealloc",
    "kmem_cache",
    "allocate_slab",
    "__alloc_frozen_pages_noprof",
    "folio_(?:alloc|unlock)",
    "filemap_alloc_folio",
    "__filemap_get_folio",
    "find_or_create_page",
    "do_read_cache_folio",
    "read_cache_page",
    "pagecache_get_page",
    "grab_cache_page_write_begin",
    "slab_",
    "debug_object",
    "timer_is_static_object",
    "work_is_static_object",
    "__might_fault",
    # locking and lockdep
    "print_unlock",
    "imbalance_bug",
    "lockdep",
    "bh_enable",
    "bh_disable",
    "perf_trace",
    "lock_acquire",
    "lock_release",
    "lock_class",
    "mark_lock",
    "(reacquire|mark)_held_locks",
    "raw_spin_rq",
    "spin_lock",
    "spin_trylock",
    "spin_unlock",
    "read_lock",
    "read_trylock",
    "write_lock",
    "write_trylock",
    "read_unlock",
    "write_unlock",
    "^down$",
    "down_read",
    "down_write",
    "down_read_trylock",
    "down_write_trylock",
    "down_trylock",
    "up_read",
    "up_write",
    "^mutex_",
    "^__mutex_",
    "^rt_mutex_",
    "owner_on_cpu",
    "osq_lock",
    "osq_unlock",
    "atomic(64)?_(dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)",
    "(set|clear|change|test)_bit",
    "__wake_up",
    # reference counting
    "^refcount_",
    "^kref_",
    "ref_tracker",
    "seqprop_assert",
    # memory, string and user-copy helpers
    "memcpy",
    "memcmp",
    "memset",
    "memchr",
    "memmove",
    "memdup",
    "strcmp",
    "strncmp",
    "strcpy",
    "strlcpy",
    "strncpy",
    "strscpy",
    "strlen",
    "strstr",
    "strnstr",
    "strnlen",
    "strchr",
    "strdup",
    "strndup",
    "copy_to_user",
    "copy_from_user",
    "copy_to_iter",
    "copy_from_iter",
    "copy_page_to_iter",
    "copy_page_from_iter",
    "copy_folio_to_iter",
    "^copyin$",
    "^copyout$",
    "put_user",
    "get_user",
    "might_fault",
    "might_sleep",
    # list and tree helpers
    "list_add",
    "list_del",
    "list_replace",
    "list_move",
    "list_splice",
    "^rb_",
    "^__rb_",
    # retpolines
    "_indirect_thunk_",
    # formatting and printing
    "string",
    "pointer",
    "snprintf",
    "scnprintf",
    "kasprintf",
    "kvasprintf",
    "printk",
    "va_format",
    "dev_info",
    "dev_notice",
    "dev_warn",
    "dev_err",
    "dev_alert",
    "dev_crit",
    "dev_emerg",
    "program_check_exception",
    "program_check_common",
    # timers and workqueues
    "del_timer",
    "flush_work",
    "__cancel_work_timer",
    "cancel_work_sync",
    "try_to_grab_pending",
    "flush_workqueue",
    "drain_workqueue",
    "destroy_workqueue",
    "queue_work",
    "finish_wait",
    "kthread_stop",
    # the device model
    "kobject_",
    "add_uevent_var",
    "get_device_parent",
    "device_add",
    "device_del",
    "device_unregister",
    "device_destroy",
    "device_release",
    "devres_release_all",
    "hwrng_unregister",
    "i2c_del_adapter",
    "__unregister_client",
    "device_for_each_child",
    "rollback_registered",
    "unregister_netdev",
    "sysfs_remove",
    "device_remove_file",
    "tty_unregister_device",
    # USB submission (a WARNING there is the driver's)
    "dummy_urb_enqueue",
    "usb_kill_urb",
    "usb_kill_anchored_urbs",
    "usb_control_msg",
    "usb_hcd_submit_urb",
    "usb_submit_urb",
    # completion, freeing, MMIO accessors
    "^complete$",
    "wait_for_completion",
    "^kv?free$",
    "kfree_skb",
    "readb$",
    "readw$",
    "readl$",
    "readq$",
    "writeb$",
    "writew$",
    "writel$",
    "writeq$",
    "logic_in",
    "logic_out",
    "^crc\\d+",
    "crc_itu_t",
    "__might_resched",
    "assertfail",
    # inodes, hex dumps, klists, irq tracing, page locks
    "^iput$",
    "^iput_final$",
    "^ihold$",
    "hex_dump_to_buffer",
    "print_hex_dump",
    "^klist_",
    "(trace|lockdep)_(hard|soft)irq",
    "^(un)?lock_page",
    # stack walking
    "stack_trace_consume_entry",
    "arch_stack_walk",
    "stack_trace_save",
    "insert_work",
    "__queue_delayed_work",
    "queue_delayed_work_on",
    "ida_free",
    # arm64's translation-fault path
    "do_(kernel|translation)_fault",
    "do_mem_abort",
    "el1_abort",
    "el1h_64_sync(?:_handler)?",
    "print_tainted",
    # page cache and misc helpers
    "xas_(?:start|load|find)",
    "find_lock_entries",
    "truncate_inode_pages_range",
    "__phys_addr",
    "__fortify_report",
    "cleanup_srcu_struct",
    "rhashtable_lookup",
    "extract_(user|iter)_to_sg",
    "drop_nlink",
    "^get_taint$",
    "^put_device$",
    "lock_timer_base",
    "__timer_delete_sync",
    "sk_stop_timer_sync",
    "__mod_timer",
    "fast_dput",
    "dput",
    "mark_buffer_dirty",
)

#: Generic dispatchers (work, syscalls, softirq, timers, kthreads, file and socket operations,
#: page faults). A stall's frame is the one just above the first of them: the stalled work
#: itself, stable across reports where the looping leaf varies.
STALL_ANCHORS: tuple[LazyPattern, ...] = tuple(
    LazyPattern(p)
    for p in (
        "process_one_work",
        "do_syscall_",
        "do_fast_syscall_",
        "sysenter_dispatch",
        "tracesys_phase2",
        "el0_svc_handler",
        "invoke_syscall",
        "ret_fast_syscall",
        "netif_receive_skb",
        "do_softirq",
        "call_timer_fn",
        "_run_timers",
        "run_timer_softirq",
        "hrtimer_run",
        "run_ksoftirqd",
        "smpboot_thread_fn",
        "^kthread$",
        "start_secondary",
        "cpu_startup_entry",
        "ret_from_fork",
        "vfs_write",
        "vfs_read",
        "vfs_iter_read",
        "vfs_iter_write",
        "do_iter_read",
        "do_iter_write",
        "call_read_iter",
        "call_write_iter",
        "new_sync_read",
        "new_sync_write",
        "vfs_ioctl",
        "ksys_ioctl",
        "compat_ioctl",
        "compat_sys_ioctl",
        "blkdev_driver_ioctl",
        "blkdev_ioctl",
        "do_iter_readv_writev",
        "^call_mmap",
        "mmap_region",
        "do_mmap",
        "do_dentry_open",
        "vfs_open",
        "^sock_sendmsg",
        "^sock_recvmsg",
        "^sock_release",
        "^__sock_release",
        "^setsockopt$",
        "kernel_setsockopt",
        "sock_common_setsockopt",
        "^listen$",
        "kernel_listen",
        "sk_common_release",
        "^sock_mmap",
        "^accept$",
        "kernel_accept",
        "^sock_do_ioctl",
        "^sock_ioctl",
        "^compat_sock_ioctl",
        "^nfnetlink_rcv_msg",
        "^rtnetlink_rcv_msg",
        "^netlink_dump",
        "^(sys_)?(socketpair|connect|ioctl)",
        "__do_fault",
        "do_page_fault",
        "^page_fault$",
        "__fput",
        "task_work_run",
        "exit_to_usermode",
        "smp_call_function",
        "tasklet_action",
        "tasklet_hi_action",
        # Not syzkaller's: procfs hands a write to the file's own handler, the frame above.
        "^proc_reg_",
    )
)

_ANCHOR = LazyPattern("|".join(a.pattern for a in STALL_ANCHORS))

#: Hung tasks bucketed by what they wait for: a frame holding the key names the hang (its
#: value, when not empty, replaces it: all RCU-grace-period waits are one bucket).
HANG_BUCKETS: tuple[tuple[str, str], ...] = (
    ("rtnl_lock", ""),
    ("synchronize_rcu", "synchronize_rcu"),
    ("synchronize_srcu", "synchronize_rcu"),
    ("synchronize_net", "synchronize_rcu"),
    ("synchronize_sched", "synchronize_rcu"),
)
#: Waiting primitives a hung task's frame is not (substring match).
HANG_SKIP: tuple[str, ...] = (
    "sched",
    "_lock",
    "_slowlock",
    "down",
    "rwsem",
    "completion",
    "kthread",
    "wait",
    "synchronize",
    "context_switch",
    "__switch_to",
    "cancel_delayed_work",
    "rcu_barrier",
    # Not syzkaller's: a thread's entry glue is the bottom of every kthread's stack, never
    # what it waits in (a kthread that never ran its function shows nothing else).
    "ret_from_fork",
    "ret_from_kernel_thread",
    "kernel_thread_helper",
)


def strip_prefix(frame: str) -> str:
    """``frame`` without its syscall-wrapper prefix (the shortest of the candidates)."""
    best = frame
    for prefix in STRIP_PREFIXES:
        if frame.startswith(prefix) and len(frame) - len(prefix) < len(best):
            best = frame[len(prefix) :]
    return best


def pick_stall(frames: Sequence[str]) -> tuple[int, str | None]:
    """The frame just above the first dispatch anchor, or ``smp_call_function`` when that is
    the anchor (index, name to use instead); (-1, None) when no anchor is on the stack."""
    prev = 0
    for i, frame in enumerate(frames):
        if _ANCHOR.search(frame) is not None:
            return (i, "smp_call_function") if "smp_call_function" in frame else (prev, None)
        prev = i
    return -1, None


def pick_hang(frames: Sequence[str]) -> tuple[int, str | None]:
    """A hung task's frame: its wait bucket if any (index, bucket name), else the first frame
    outside waiting primitives; (-1, None) when every frame waits."""
    for i, frame in enumerate(frames):
        for key, bucket in HANG_BUCKETS:
            if key in frame:
                return i, bucket or None
    for i, frame in enumerate(frames):
        if not any(s in frame for s in HANG_SKIP):
            return i, None
    return -1, None
