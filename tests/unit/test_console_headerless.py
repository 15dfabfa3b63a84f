"""Reports whose header is not in the text, and the fourth batch's other console rules."""

from __future__ import annotations

from kvmha_forensics.sources.console import parse_console
from kvmha_forensics.sources.pasted import repair_lines

#: The tail of an x86 oops as an excerpt that starts mid-report (shape of real pastes).
_TAIL = """\
[  773.056707] R10: 0000000000000000 R11: 0000000000000246 R12: 00007ffe0a9e4a1e
[  773.058556] R13: 00007ffe0a9e4a1f R14: 00000000020112a0 R15: 00007ffe0a9e4b10
[  773.060381] Code: 00 00 00 00 80 48 09 f9 66 81 fe fe 07 0f 87 90 00 00 00 f7 c6 00 08 00
[  773.064504] RIP: load_new_mm_cr3+0x7d/0x170 RSP: ffffbe26c1707e70
[  773.066236] ---[ end trace 07b30e4a812918a3 ]---
"""


def test_an_excerpt_starting_mid_report_is_an_oops_in_its_rip_function() -> None:
    (report,) = parse_console(_TAIL).reports
    assert (report.title, report.cause, report.culprit) == (
        "Oops in load_new_mm_cr3",
        "guest-oops",
        "load_new_mm_cr3",
    )
    assert (report.first_line, report.last_line) == (0, 4)


def test_a_trap_in_the_code_line_makes_it_a_bug() -> None:
    text = _TAIL.replace("f7 c6 00 08 00", "f7 c6 00 <0f> 0b")
    (report,) = parse_console(text).reports
    assert (report.title, report.cause) == ("kernel BUG in load_new_mm_cr3", "guest-bug")


def test_a_tail_without_a_die_mark_or_registers_is_no_report() -> None:
    no_die = "\n".join(
        line for line in _TAIL.splitlines() if "Code:" not in line and "end" not in line
    )
    assert parse_console(no_die).reports == ()
    frames_only = "[  1.0] Call Trace:\n[  1.0]  schedule+0x1/0x2\n[  1.0] ---[ end trace 1 ]---\n"
    assert parse_console(frames_only).reports == ()


def test_dump_stack_with_user_registers_is_not_a_lost_header() -> None:
    """dump_stack() (fault injection, a driver) prints the syscall's user registers and a Code
    line too; its own first line means the text did not start mid-report."""
    text = "[  602.265237] FAULT_INJECTION: forcing a failure.\n" + _TAIL
    assert parse_console(text).reports == ()


def test_a_nameless_tail_does_not_hide_the_report_after_it() -> None:
    nameless = _TAIL.replace("RIP: load_new_mm_cr3+0x7d/0x170", "RIP: 0x7d")
    text = nameless + "[  773.984822] general protection fault: 0000 [#2] SMP PTI\n"
    assert [r.format for r in parse_console(text).reports] == ["gpf"]
    named = parse_console(_TAIL + "[  773.984822] general protection fault: 0000 [#2] SMP PTI\n")
    assert [r.format for r in named.reports] == ["headerless", "gpf"]


def test_asm_generic_bug_names_its_function() -> None:
    text = "[    2.685029] BUG: failure at kernel/irq_work.c:135/irq_work_run_list()!\n"
    (report,) = parse_console(text).reports
    assert (report.title, report.culprit) == (
        "kernel BUG in irq_work_run_list",
        "irq_work_run_list",
    )


def test_old_warning_at_file_line_function() -> None:
    text = (
        "[   1.0] WARNING: at fs/seq_file.c:65 seq_open+0x9c/0xa8()\n[   1.0] Modules linked in:\n"
    )
    (report,) = parse_console(text).reports
    assert (report.title, report.cause) == ("WARNING in seq_open", "guest-bug")


def test_an_oom_that_panicked_is_titled_by_the_panic() -> None:
    kill = "[ 1.0] Out of memory: Killed process 472 (whiptail) total-vm:10276kB\n"
    assert parse_console(kill).reports[0].title == "out of memory"
    panic = (
        "[ 1.0] Out of memory and no killable processes...\n"
        "[ 1.0] Kernel panic - not syncing: System is deadlocked on memory\n"
    )
    (report,) = parse_console(panic).reports
    assert (report.title, report.cause) == (
        "kernel panic: System is deadlocked on memory",
        "guest-oom",
    )


def test_arm_die_line_after_kernel_bug_is_one_report() -> None:
    text = (
        "[  408.46] kernel BUG at /tmp/build/net/core/skbuff.c:1433!\n"
        "[  408.46] Internal error: Oops - BUG: 0 [#2] ARM\n"
        "[  408.46] PC is at skb_put+0x4c/0x60\n"
        "[  408.46] LR is at ftgmac100_poll+0x324/0x4a8\n"
    )
    (report,) = parse_console(text).reports
    assert report.format == "kernel-bug"


def test_iso_dates_are_not_a_line_number_column() -> None:
    lines = [f"2024-12-17T16:36:{s:02d}+01:00 ds418 kernel: [  235.9] line {s}" for s in range(5)]
    assert repair_lines("\n".join(lines)) == lines
