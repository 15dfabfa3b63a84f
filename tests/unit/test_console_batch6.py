"""The sixth batch's console rules (fixtures/real/README.md): reports named by a line of
their body, frames whose address HTML ate, 2.6's register dump opening, panics in an NMI."""

from __future__ import annotations

from kvmha_forensics.sources.console import parse_console

#: A soft lockup excerpt that starts at its RIP line (fixtures/real consoles 210).
_LOCKUP = """\
Oct 24 01:36:33 sn01 kernel: RIP: 0010:smp_call_function_many_cond+0x11e/0x4f0
Oct 24 01:36:33 sn01 kernel: Code: 8b 56 08 83 e2 01 74 0a f3 90 <8b> 4e 08 83 e1 01 75 f6
Oct 24 01:36:33 sn01 kernel: RSP: 0018:ffffbd7940c0fd70 EFLAGS: 00000202
Oct 24 01:36:33 sn01 kernel: RAX: 0000000000000001 RBX: 0000000000000246 RCX: 0000000000000001
Oct 24 01:36:33 sn01 kernel: Call Trace:
Oct 24 01:36:33 sn01 kernel:  <IRQ>
Oct 24 01:36:33 sn01 kernel:  ? watchdog_timer_fn+0x1b8/0x220
"""


def test_the_watchdog_timer_in_the_stack_names_a_soft_lockup() -> None:
    (report,) = parse_console(_LOCKUP).reports
    assert (report.title, report.cause, report.culprit) == (
        "BUG: soft lockup in smp_call_function_many_cond",
        "guest-lockup",
        "smp_call_function_many_cond",
    )
    without = _LOCKUP.replace("watchdog_timer_fn", "irq_exit_rcu")
    (oops,) = parse_console(without).reports
    assert (oops.title, oops.cause) == ("Oops in smp_call_function_many_cond", "guest-oops")


#: A KFENCE excerpt that starts at the object's line (consoles 198): the allocation and free
#: stacks come before the faulting context's registers.
_KFENCE = """\
[    4.257865] kfence-#31 [0xc2ae2400-0xc2ae241f, size=32, cache=kmalloc-32] allocated by task 114:
[    4.258952]  test_alloc+0xf0/0x6ff
[    4.259320]  test_use_after_free_read+0x76/0x143
[    4.261540] freed by task 114:
[    4.262037]  test_use_after_free_read+0xa8/0x143
[    4.264559] CPU: 5 PID: 114 Comm: kunit_try_catch Tainted: G    B             5.11.0-rc2+ #1
[    4.266585] RIP: 0010:test_use_after_free_read+0xb3/0x143
[    4.269503] RSP: 0000:ffffa226013ffe48 EFLAGS: 00010246
"""


def test_a_kfence_object_line_names_the_report_and_the_rip_the_access() -> None:
    (report,) = parse_console(_KFENCE).reports
    assert (report.title, report.cause, report.culprit) == (
        "KFENCE in test_use_after_free_read",
        "guest-bug",
        "test_use_after_free_read",
    )
    assert (report.first_line, report.last_line) == (0, 7)
    cut = "\n".join(_KFENCE.splitlines()[:5])  # no registers: the access is not shown
    assert [r.culprit for r in parse_console(cut).reports] in ([], [None])


def test_frames_whose_address_was_eaten_are_frames() -> None:
    """A 2.6 i386 oops from a web page: ``[<c01de4f9>]`` lost to HTML, ``0x`` typeset as
    ``0`` and a multiplication sign (consoles 215); syzkaller never blames kobject_*."""
    text = (
        "Unable to handle kernel paging request at virtual address f899b670\n"
        "EIP is at kobject_add+0\u00d783/0xd7\n"
        "Call Trace:\n"
        "[] kobject_register+0\u00d719/0\u00d739\n"
        "[] bus_add_driver+0\u00d736/0\u00d797\n"
    )
    (report,) = parse_console(text).reports
    assert report.culprit == "bus_add_driver"
    assert report.title == "BUG: unable to handle kernel paging request in bus_add_driver"


def test_the_2_6_register_dump_opens_with_the_task() -> None:
    text = (
        "Pid: 491, comm: scsi_eh_0 Tainted: G        W  2.6.32-220.13.1.el6.x86_64 #1\n"
        "RIP: 0010:[<ffffffff8124e424>]  [<ffffffff8124e424>] blk_requeue_request+0x94/0xa0\n"
        "RSP: 0018:ffff881057eefd60  EFLAGS: 00010012\n"
        "Process scsi_eh_0 (pid: 491, threadinfo ffff881057eee000, task ffff881057e29540)\n"
    )
    (report,) = parse_console(text).reports
    assert (report.title, report.first_line) == ("Oops in blk_requeue_request", 0)


_NMI_PANIC = """\
[    4.178592] Uhhuh. NMI received for unknown reason 20 on CPU 0.
[    4.178595] Kernel panic - not syncing: NMI: Not continuing
[    4.178598] Call Trace:
[    4.178610]  <NMI>
[    4.178611]  dump_stack_lvl+0x3b/0x59
[    4.178615]  panic+0xfb/0x274
[    4.178619]  nmi_panic.cold+0xc/0xc
[    4.178622]  exc_nmi+0x11d/0x160
[    4.178625] RIP: 0010:default_idle+0x13/0x20
"""


def test_a_panic_in_an_nmi_handler_does_not_blame_the_interrupted_code() -> None:
    (report,) = parse_console(_NMI_PANIC).reports
    assert (report.title, report.culprit) == ("kernel panic: NMI: Not continuing", None)
    (outside,) = parse_console(_NMI_PANIC.replace("<NMI>", "<TASK>")).reports
    assert outside.culprit == "default_idle"
