"""syzkaller's titling rules (oops_formats / oops_frames / oops_title) on short reports written
for these tests, one or more per report kind, and the frame skip list and pickers on their own.
The agreement on syzkaller's own goldens is measured by bench/bench_syzkaller.py."""

from __future__ import annotations

import pytest

from kvmha_forensics.sources.console import clean_line, parse_console
from kvmha_forensics.sources.oops_formats import GROUPS
from kvmha_forensics.sources.oops_frames import pick_hang, pick_stall, strip_prefix
from kvmha_forensics.sources.oops_title import (
    ConsoleLines,
    Description,
    describe,
    match_group,
    normalize,
)


def frames(*names: str) -> str:
    return "".join(f" {n}+0x1c/0x80\n" for n in names)


def trace(*names: str) -> str:
    return "Call Trace:\n <TASK>\n" + frames(*names) + " </TASK>\n"


def first_report(text: str) -> Description:
    raw = text.split("\n")
    clean = [clean_line(r) for r in raw]
    first = next(i for i, line in enumerate(clean) if match_group(line) is not None)
    d = describe(ConsoleLines(raw, clean), first)
    assert d is not None
    return d


REGS = "RSP: 0018:ffffc900001f3d48 EFLAGS: 00010246\nCode: 48 89 e5 <0f> 0b 5d c3\n"
RIP = "RIP: 0010:{}+0x15/0x30\n" + REGS

CASES: list[tuple[str, str, str, str | None]] = [
    (
        "kasan",
        "BUG: KASAN: use-after-free in memcpy+0x1/0x2\n"
        "Read of size 8 at addr ffff8880 by task a/1\n"
        + trace("dump_stack_lvl", "print_report", "kasan_report", "memcpy", "tun_chr_write"),
        "KASAN: use-after-free Read in tun_chr_write",
        "tun_chr_write",
    ),
    (
        "kasan-invalid-free",
        "BUG: KASAN: double-free or invalid-free in kfree+0x1/0x2\n"
        + trace("kasan_report_invalid_free", "slab_free", "kfree", "ext4_put_super"),
        "KASAN: invalid-free in ext4_put_super",
        "ext4_put_super",
    ),
    (
        "kmsan",
        "BUG: KMSAN: uninit-value in hash_net4_add+0x1/0x2\n"
        + frames("hash_net4_add", "ip_set_utest")
        + "Uninit was created at:\n"
        + frames("kmsan_internal_poison", "__alloc_skb", "netlink_sendmsg"),
        "KMSAN: uninit-value in hash_net4_add",
        "hash_net4_add",
    ),
    (
        "kcsan",
        "BUG: KCSAN: data-race in ext4_mark_iloc_dirty / ext4_free_inode\n\n"
        "write to 0x1 of 4 bytes\n",
        "KCSAN: data-race in ext4_mark_iloc_dirty / ext4_free_inode",
        "ext4_mark_iloc_dirty",
    ),
    (
        "kfence",
        "BUG: KFENCE: use-after-free read in bpf_prog_put+0x1/0x2\n\n"
        + frames("bpf_prog_put", "bpf_link_free"),
        "KFENCE: use-after-free read in bpf_prog_put",
        "bpf_prog_put",
    ),
    (
        "null-deref",
        "BUG: kernel NULL pointer dereference, address: 0000000000000008\n"
        + RIP.format("kvmha_lab_oops")
        + trace("kvmha_lab_write", "proc_reg_write", "vfs_write"),
        "BUG: unable to handle kernel NULL pointer dereference in kvmha_lab_oops",
        "kvmha_lab_oops",
    ),
    (
        "paging-request, RIP in a skipped helper",
        "BUG: unable to handle page fault for address: ffffc90000a3b000\n"
        + RIP.format("memset_orig")
        + trace("arkfb_set_par", "fb_set_var"),
        "BUG: unable to handle kernel paging request in arkfb_set_par",
        "arkfb_set_par",
    ),
    (
        "arm64 paging request",
        "Unable to handle kernel paging request at virtual address dead000000000108\n"
        "pc : __list_del_entry+0x1/0x2\nlr : binder_free_thread+0x1/0x2\n"
        + trace("__list_del_entry", "binder_free_thread", "binder_ioctl"),
        "BUG: unable to handle kernel paging request in binder_free_thread",
        "binder_free_thread",
    ),
    (
        "spinlock",
        "BUG: spinlock recursion on CPU#0, a/1\n"
        + trace("dump_stack", "do_raw_spin_lock", "_raw_spin_lock", "sock_map_update"),
        "BUG: spinlock recursion in sock_map_update",
        "sock_map_update",
    ),
    (
        "soft lockup: the frame above the dispatcher",
        "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [init:1]\n"
        + RIP.format("kvmha_lab_spin")
        + trace("kvmha_lab_write", "proc_reg_write", "vfs_write", "ksys_write", "do_syscall_64"),
        "BUG: soft lockup in kvmha_lab_write",
        "kvmha_lab_write",
    ),
    (
        "scheduling while atomic",
        "BUG: scheduling while atomic: a/1/0x00000002\n"
        + trace("dump_stack", "__schedule_bug", "__schedule", "schedule", "xfs_buf_lock"),
        "BUG: scheduling while atomic in xfs_buf_lock",
        "xfs_buf_lock",
    ),
    (
        "sleeping function",
        "BUG: sleeping function called from invalid context at mm/slab.h:421\n"
        "in_atomic(): 1, irqs_disabled(): 0, pid: 1, name: a\n"
        + trace(
            "dump_stack", "___might_sleep", "__might_sleep", "kmem_cache_alloc", "nf_tables_newset"
        ),
        "BUG: sleeping function called from invalid context in nf_tables_newset",
        "nf_tables_newset",
    ),
    (
        "using smp_processor_id",
        "BUG: using smp_processor_id() in preemptible [00000000] code: a/1\n"
        + trace("dump_stack", "check_preemption_disabled", "debug_smp_processor_id", "tcp_v4_rcv"),
        "BUG: using smp_processor_id() in preemptible code in tcp_v4_rcv",
        "tcp_v4_rcv",
    ),
    (
        "memory leak",
        'BUG: memory leak\nunreferenced object 0xffff888 (size 64):\n  comm "a", pid 1\n'
        "  backtrace:\n"
        + "".join(
            f"    [<ffffffff8123>] {n}+0x1/0x2\n"
            for n in ("kmalloc_trace", "kvmalloc_node", "bpf_map_alloc", "map_create")
        ),
        "memory leak in map_create",  # "alloc" is in the name: skipped
        "map_create",
    ),
    (
        "bad page state",
        "BUG: Bad page state in process a  pfn:1a2b3\npage last allocated via order 0\n"
        + frames("post_alloc_hook", "get_page_from_freelist", "__alloc_pages", "io_uring_setup"),
        "BUG: Bad page state in io_uring_setup",
        "io_uring_setup",
    ),
    (
        "stack guard page",
        "BUG: TASK stack guard page was hit at ffffc90000a3ffe8 (stack is ffffc90000a40000..)\n"
        + RIP.format("deep_recurse")
        + trace("deep_recurse", "vfs_read", "ksys_read"),
        "BUG: stack guard page was hit in deep_recurse",
        "deep_recurse",
    ),
    (
        "WARNING",
        "WARNING: CPU: 1 PID: 42 at drivers/net/tun.c:123 tun_chr_ioctl+0x1/0x2\n"
        + RIP.format("tun_chr_ioctl")
        + trace("__x64_sys_ioctl", "do_syscall_64"),
        "WARNING in tun_chr_ioctl",
        "tun_chr_ioctl",
    ),
    (
        "WARNING, 6.19 spelling",
        "WARNING: net/core/dev.c:123 at 0x0, CPU#1: a/1\n"
        + RIP.format("dev_close")
        + trace("dev_close", "unregister_netdev"),
        "WARNING in dev_close",
        "dev_close",
    ),
    (
        "WARNING refcount",
        "WARNING: CPU: 0 PID: 1 at lib/refcount.c:25 refcount_warn_saturate+0x1/0x2\n"
        + RIP.format("refcount_warn_saturate")
        + trace("__refcount_add", "sk_psock_get", "tcp_bpf_update"),
        "WARNING: refcount bug in sk_psock_get",
        "sk_psock_get",
    ),
    (
        "WARNING ODEBUG",
        "WARNING: CPU: 0 PID: 1 at lib/debugobjects.c:505 debug_print_object+0x1/0x2\n"
        + RIP.format("debug_print_object")
        + trace("debug_object_free", "__timer_delete_sync", "nfc_llcp_destroy"),
        "WARNING: ODEBUG bug in nfc_llcp_destroy",
        "nfc_llcp_destroy",
    ),
    (
        "bad usercopy (kernel BUG at mm/usercopy.c)",
        "kernel BUG at mm/usercopy.c:99!\n"
        + RIP.format("usercopy_abort")
        + trace("__check_heap_object", "__check_object_size", "vmci_host_do_receive_datagram"),
        "BUG: bad usercopy in vmci_host_do_receive_datagram",
        "vmci_host_do_receive_datagram",
    ),
    (
        "possible deadlock",
        "WARNING: possible circular locking dependency detected\n6.1.0 Not tainted\n"
        "------------------------------------------------------\n"
        "a/1 is trying to acquire lock:\n"
        "ffff888 (&sb->s_type->i_mutex_key#9){+.+.}-{3:3}, at: inode_lock+0x1/0x2\n\n"
        "but task is already holding lock:\n"
        "ffff889 (sb_writers#4){.+.+}-{0:0}, at: ovl_write_iter+0x1/0x2\n\n"
        "which lock already depends on the new lock.\n",
        "possible deadlock in inode_lock",
        "inode_lock",
    ),
    (
        "inconsistent lock state",
        "WARNING: inconsistent lock state\n--------------------------------\n"
        "inconsistent {SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W} usage.\n"
        "a/1 [HC0[0]:SC1[1]:HE1:SE0] takes:\n"
        "ffff888 (&q->lock){+.?.}-{2:2}, at: sctp_sched_dequeue+0x1/0x2\n"
        "{SOFTIRQ-ON-W} state was registered at:\n"
        + trace("lock_acquire", "_raw_spin_lock", "sctp_outq_flush"),
        "inconsistent lock state in sctp_outq_flush",
        "sctp_outq_flush",
    ),
    (
        "suspicious RCU usage",
        "WARNING: suspicious RCU usage\n6.1.0 Not tainted\n-----------------------------\n"
        "net/ipv6/addrconf.c:1234 suspicious rcu_dereference_check() usage!\n"
        + trace("dump_stack", "lockdep_rcu_suspicious", "rcu_read_lock_held", "addrconf_dad_work"),
        "WARNING: suspicious RCU usage in addrconf_dad_work",
        "addrconf_dad_work",
    ),
    (
        "rcu stall: the interrupted work's dispatcher",
        "rcu: INFO: rcu_preempt self-detected stall on CPU\n"
        "rcu: \t0-....: (10500 ticks this GP)\n"
        + trace(
            "rcu_dump_cpu_stacks",
            "rcu_sched_clock_irq",
            "update_process_times",
            "sysvec_apic_timer_interrupt",
        )
        + "RIP: 0010:loop_forever+0x1/0x2\n"
        + frames("nbd_ioctl", "blkdev_ioctl", "__x64_sys_ioctl", "do_syscall_64"),
        "INFO: rcu detected stall in nbd_ioctl",
        "nbd_ioctl",
    ),
    (
        "hung task: the RCU bucket",
        "INFO: task kworker/0:1:12 blocked for more than 143 seconds.\n"
        + trace(
            "__schedule",
            "schedule",
            "schedule_timeout",
            "wait_for_completion",
            "__synchronize_srcu",
            "fs_remove",
        ),
        "INFO: task hung in synchronize_rcu",
        "synchronize_rcu",
    ),
    (
        "hung task: first frame outside waiting",
        "INFO: task init:93 blocked for more than 122 seconds.\n"
        + trace(
            "__schedule", "schedule", "schedule_preempt_disabled", "__mutex_lock", "kvmha_lab_write"
        ),
        "INFO: task hung in kvmha_lab_write",
        "kvmha_lab_write",
    ),
    (
        "non-static key",
        "INFO: trying to register non-static key.\nThe code is fine but needs lockdep annotation.\n"
        + trace(
            "dump_stack", "register_lock_class", "__lock_acquire", "lock_acquire", "hci_sock_bind"
        ),
        "INFO: trying to register non-static key in hci_sock_bind",
        "hci_sock_bind",
    ),
    (
        "general protection fault",
        "general protection fault, probably for non-canonical address 0xdffffc0000000001: "
        "0000 [#1] SMP KASAN\n"
        + RIP.format("smc_diag_dump_proto")
        + trace("smc_diag_dump", "netlink_dump"),
        "general protection fault in smc_diag_dump_proto",
        "smc_diag_dump_proto",
    ),
    (
        "stack segment",
        "stack segment: 0000 [#1] PREEMPT SMP KASAN\n"
        + RIP.format("nfc_llcp_send")
        + trace("nfc_llcp_send"),
        "stack segment fault in nfc_llcp_send",
        "nfc_llcp_send",
    ),
    (
        "kernel BUG",
        "kernel BUG at fs/ext4/inode.c:2712!\ninvalid opcode: 0000 [#1] SMP\n"
        + RIP.format("ext4_writepages")
        + trace("do_writepages", "filemap_fdatawrite_wbc"),
        "kernel BUG in ext4_writepages",
        "ext4_writepages",
    ),
    (
        "kernel BUG in an skb helper",
        "kernel BUG at net/core/skbuff.c:2606!\n"
        + RIP.format("skb_pull")
        + trace("skb_pull", "ipgre_rcv"),
        "kernel BUG in ipgre_rcv",
        "ipgre_rcv",
    ),
    (
        "list corruption",
        "list_del corruption. prev->next should be ffff888, but was ffff889\n"
        "kernel BUG at lib/list_debug.c:53!\n"
        + RIP.format("__list_del_entry_valid")
        + trace("__list_del_entry_valid", "__dentry_kill", "dput"),
        "BUG: corrupted list in __dentry_kill",
        "__dentry_kill",
    ),
    (
        "stack protector",
        "Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: "
        "sctp_auth_asoc_set+0x1/0x2\n",
        "kernel panic: stack is corrupted in sctp_auth_asoc_set",
        "sctp_auth_asoc_set",
    ),
    (
        "panic with a message",
        "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n"
        + trace("dump_stack", "panic", "mount_block_root", "prepare_namespace"),
        "kernel panic: VFS: Unable to mount root fs on unknown-block(NUM,NUM)",
        None,
    ),
    (
        "double fault",
        "PANIC: double fault, error_code: 0x0\n" + RIP.format("do_recursion"),
        "PANIC: double fault in do_recursion",
        "do_recursion",
    ),
    (
        "divide error",
        "divide error: 0000 [#1] PREEMPT SMP\n" + RIP.format("tcp_select_window"),
        "divide error in tcp_select_window",
        "tcp_select_window",
    ),
    (
        "divide error, Linux 5.8 spelling",
        "divide_error: 0000 [#1] PREEMPT SMP\n" + RIP.format("tcp_select_window"),
        "divide error in tcp_select_window",
        "tcp_select_window",
    ),
    (
        "invalid opcode",
        "invalid opcode: 0000 [#1] SMP\n" + RIP.format("kvm_fastop_exception"),
        "invalid opcode in kvm_fastop_exception",
        "kvm_fastop_exception",
    ),
    (
        "int3",
        "int3: 0000 [#1] PREEMPT SMP\n" + RIP.format("bpf_prog_run") + trace("bpf_prog_run"),
        "int3 in bpf_prog_run",
        "bpf_prog_run",
    ),
    (
        "UBSAN",
        "UBSAN: shift-out-of-bounds in net/sched/sch_taprio.c:1234:12\n"
        "shift exponent 64 is too large\n"
        + trace(
            "dump_stack", "ubsan_epilogue", "__ubsan_handle_shift_out_of_bounds", "taprio_change"
        ),
        "UBSAN: shift-out-of-bounds in taprio_change",
        "taprio_change",
    ),
    (
        "UBSAN array index",
        "UBSAN: array-index-out-of-bounds in drivers/net/bonding/bond_main.c:42:3\n"
        + trace("dump_stack", "__ubsan_handle_out_of_bounds", "bond_xmit"),
        "UBSAN: array-index-out-of-bounds in bond_xmit",
        "bond_xmit",
    ),
    (
        "unregister_netdevice",
        "unregister_netdevice: waiting for lo to become free. Usage count = 2\n",
        "unregister_netdevice: waiting for DEV to become free",
        None,
    ),
    (
        "VFS busy inodes",
        "VFS: Busy inodes after unmount of sda1. Self-destruct in 5 seconds.\n",
        "VFS: Busy inodes after unmount (use-after-free)",
        None,
    ),
    (
        "VFS file count",
        "VFS: Close: file count is 0\n",
        "VFS: Close: file count is zero (use-after-free)",
        None,
    ),
    (
        "arm64 internal error",
        "Internal error: Oops: 96000004 [#1] PREEMPT SMP\n"
        "pc : __ip_append_data+0x1/0x2\nlr : ip_append_data+0x1/0x2\n"
        + trace("__ip_append_data", "ip_append_data"),
        "Internal error in __ip_append_data",
        "__ip_append_data",
    ),
    (
        "arm unhandled fault",
        "Unhandled fault: page domain fault (0x01b) at 0x00000000\n"
        "PC is at vhci_send+0x1/0x2\n" + trace("vhci_send"),
        "Unhandled fault in vhci_send",
        "vhci_send",
    ),
    (
        "arm alignment trap",
        "Alignment trap: not handling instruction e1932f9f at [<c0100>]\n"
        "PC is at ipv6_rcv+0x1/0x2\n" + trace("ipv6_rcv"),
        "Alignment trap in ipv6_rcv",
        "ipv6_rcv",
    ),
    (
        "Kernel BUG (ppc)",
        "Kernel BUG at c000000000123456 [verbose debug info unavailable]\n",
        "kernel BUG at ADDR [verbose debug info unavailable]",
        None,
    ),
    (
        "slab object already free",
        "BUG kmalloc-512 (Not tainted): Object already free\n",
        "BUG: Object already free",
        None,
    ),
    (
        "rust panic",
        "rust_kernel: panicked at rust/kernel/lib.rs:1:1:\nattempt to add with overflow\n"
        + trace("binder_update_ref", "binder_ioctl"),
        "attempt to add with overflow in binder_update_ref",
        "binder_update_ref",
    ),
    (
        "trusty",
        "trusty: panic (apps/x): ASSERT FAILED at (lib/x.c:12): list_in_list(&n)\n",
        "trusty: ASSERT FAILED: list_in_list(&n)",
        None,
    ),
    (
        "SYZFAIL",
        "SYZFAIL: negative running\n",
        "SYZFAIL: negative running",
        None,
    ),
    (
        "SYZFATAL",
        "SYZFATAL: executor 3 failed 11 times: mkdir ./syzkaller-testdir052397561: read-only\n",
        "SYZFATAL: executor NUM failed NUM times: mkdir ./syzkaller-testdirNUM: read-only",
        None,
    ),
]


@pytest.mark.parametrize(
    ("text", "title", "frame"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_title_and_frame(text: str, title: str, frame: str | None) -> None:
    d = first_report("[   12.345678] boot line\n" + text)
    assert (d.title, d.frame) == (title, frame)


def test_every_group_has_a_case() -> None:
    covered = {match_group(case[1].split("\n")[0]) for case in CASES}
    missing = [g.header for g in GROUPS if g not in covered]
    assert missing == []


def test_timestamps_and_caller_ids_are_read_through() -> None:
    text = "".join(
        f"[   {i}.000000][ T1234] {line}\n" for i, line in enumerate(CASES[0][1].split("\n"))
    )
    assert first_report(text).title == "KASAN: use-after-free Read in tun_chr_write"


def test_other_tasks_lines_are_not_read() -> None:
    """With printk caller ids, another task's frames interleaved are not the report's."""
    lines = ["BUG: scheduling while atomic: a/1/0x00000002", "Call Trace:", " dump_stack+0x1/0x2"]
    text = "".join(f"[    1.{i:06d}][ T7] {line}\n" for i, line in enumerate(lines))
    text += "[    1.100000][ T8]  intruder_func+0x1/0x2\n"
    text += "[    1.200000][ T7]  real_caller+0x1/0x2\n"
    assert first_report(text).title == "BUG: scheduling while atomic in real_caller"


def test_unreliable_frames_are_not_guilty() -> None:
    text = "[ 1.0] BUG: scheduling while atomic: a/1/0x2\n[ 1.1] Call Trace:\n"
    text += "[ 1.2]  ? stray_func+0x1/0x2\n[ 1.3]  real_caller+0x1/0x2\n[ 1.4]  x+0x1/0x2\n"
    assert first_report(text).frame == "real_caller"


def test_no_frames_is_corrupted() -> None:
    d = first_report("general protection fault: 0000 [#1] SMP\nRIP: 0010:0x0\nCode: 00\n")
    assert (d.title, d.frame, d.corrupted) == ("general protection fault in corrupted", None, True)


def test_no_stack_trace_is_corrupted_but_titled() -> None:
    d = first_report("WARNING: CPU: 0 PID: 1 at fs/a.c:1 a_func+0x1/0x2\n" + RIP.format("a_func"))
    assert (d.title, d.corrupted) == ("WARNING in a_func", True)


def test_second_report_ends_the_first() -> None:
    text = "BUG: scheduling while atomic: a/1/0x2\n"
    text += "general protection fault: 0000 [#1] SMP\n" + trace("not_this_one")
    d = first_report(text)
    assert (d.title, d.corrupted) == ("BUG: scheduling while atomic in corrupted", True)


def test_symbolized_header_repeats_are_one_report() -> None:
    text = (
        "BUG: KASAN: slab-use-after-free in instrument_atomic_read_write "
        "include/linux/x.h:96 [inline]\n"
        "BUG: KASAN: slab-use-after-free in recv_work+0x694/0xa80 drivers/block/nbd.c:1022\n"
        "Write of size 4 at addr ffff8880295de478 by task kworker/u33:0/67\n"
        + trace("dump_stack_lvl", "kasan_report", "recv_work", "process_one_work")
    )
    assert first_report(text).title == "KASAN: slab-use-after-free Write in recv_work"


def test_module_of_the_guilty_frame() -> None:
    text = "BUG: kernel NULL pointer dereference, address: 8\n"
    text += "RIP: 0010:kvmha_lab_oops+0x15/0x30 [kvmha_lab]\n" + trace("vfs_write")
    d = first_report(text)
    assert (d.frame, d.module) == ("kvmha_lab_oops", "kvmha_lab")


def test_suppressed_lines_are_no_report() -> None:
    assert match_group("WARNING: /etc/ssh/moduli does not exist, using fixed modulus") is None
    assert match_group("INFO: lockdep is turned off.") is None
    assert match_group("ODEBUG: object is on stack, but not annotated") is None
    assert match_group("gcc: fatal error: no input files") is None  # left out on purpose


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("KASAN: use-after-free Read in fn+0x1a/0x2b0", "KASAN: use-after-free Read in fn"),
        ("BUG: soft lockup - CPU#3 stuck", "BUG: soft lockup - CPU stuck"),
        (
            "kernel panic: Out of memory: 12 of 0xffff888012345678",
            "kernel panic: Out of memory: NUM of ADDR",
        ),
        ("WARNING in net/ipv4/tcp.c:1234", "WARNING in net/ipv4/tcp.c:LINE"),
        ("task syz-executor.3:1234 died", "task syz-executor died"),
        ("a\tb  c", "a b c"),
        ("x" * 200, "x" * 120),
    ],
)
def test_normalize(raw: str, want: str) -> None:
    assert normalize(raw) == want


def test_strip_prefix_takes_the_shortest() -> None:
    assert strip_prefix("__x64_sys_ioctl") == "sys_ioctl"
    assert strip_prefix("__do_sys_bpf") == "bpf"
    assert strip_prefix("SyS_connect") == "connect"
    assert strip_prefix("tcp_sendmsg") == "tcp_sendmsg"


def test_pick_stall() -> None:
    assert pick_stall(["loop", "nbd_ioctl", "blkdev_ioctl", "ioctl"]) == (1, None)
    assert pick_stall(["loop", "smp_call_function_many", "x"]) == (1, "smp_call_function")
    assert pick_stall(["a", "b"]) == (-1, None)


def test_pick_hang() -> None:
    assert pick_hang(["schedule", "rtnl_lock", "x"]) == (1, None)
    assert pick_hang(["schedule", "synchronize_net", "x"]) == (1, "synchronize_rcu")
    assert pick_hang(["schedule", "down_write", "ext4_evict"]) == (2, None)
    assert pick_hang(["schedule", "io_schedule"]) == (-1, None)


@pytest.mark.parametrize(
    "helper",
    ["memcpy", "__asan_load8", "kasan_check_range", "_raw_spin_lock_irqsave", "mutex_lock_nested",
     "__warn", "dump_stack_lvl", "copy_from_user", "list_del_entry", "refcount_inc", "kfree",
     "__kmalloc", "usb_submit_urb", "kthread_stop", "down_write"],
)  # fmt: skip
def test_helpers_are_never_guilty(helper: str) -> None:
    text = "BUG: scheduling while atomic: a/1/0x2\n" + trace(helper, "the_caller")
    assert first_report(text).frame == "the_caller"


def test_console_uses_the_rules() -> None:
    """parse_console titles a report syzkaller knows with syzkaller's rules, and a report it
    does not know (a lockdep splat) is found at all."""
    text = "[ 1.0] boot\n" + next(c[1] for c in CASES if c[0] == "possible deadlock")
    r = parse_console(text).primary
    assert r is not None
    assert (r.title, r.culprit, r.cause) == (
        "possible deadlock in inode_lock",
        "inode_lock",
        "guest-bug",
    )


def test_a_drivers_keyword_line_is_no_report() -> None:
    """A bare ``WARNING:`` / ``INFO:`` line (no kind syzkaller's table names) is not taken for a
    report by the console, so the crash after it stays the primary report."""
    text = "usb 5-1: WARNING: ath10k USB support is incomplete\nINFO: card ready\n"
    text += "general protection fault: 0000 [#1] SMP\n" + RIP.format("nfc_llcp_send")
    text += trace("nfc_llcp_send")
    analysis = parse_console(text)
    assert [r.title for r in analysis.reports] == ["general protection fault in nfc_llcp_send"]
