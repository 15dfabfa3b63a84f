"""Prefix peeling and paste-damage repair (sources/pasted.py), one example per shape listed in
docs/console-formats.md, plus properties: never raises, keeps the line count."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmha_forensics.sources import pasted
from kvmha_forensics.sources.pasted import (
    MAX_LINE_CHARS,
    clean_text,
    repair_lines,
    strip_outer_prefixes,
    strip_prefixes,
)

LINE = "BUG: kernel NULL pointer dereference, address: 0000000000000000"

PREFIXED = [
    "> ",
    "> > >> ",
    "<4>",
    "<30>",
    "6,1234,5678901,-;",
    "Jul 27 14:08:03 host kernel: ",
    "Jul  7 04:08:03 kernel: ",
    "июл 27 14:08:03 fedora kernel: ",
    "Mär  3 10:00:01 host kernel: ",
    "12月 3 10:00:01 host kernel: ",
    "2023-01-28T13:02:16.434346+01:00 host kernel: ",
    "2023-01-28T13:02:16.434346+01:00   ",
    "kernel: ",
    "[2023-07-23T14:47:36.887Z] ",
    "[Tue Jun  4 12:00:01 2024] ",
    "[一 9月  9 09:33:26 2024] ",  # dmesg -T in a Chinese locale
    "[Mo Sep  9 09:33:26 2024] ",
    "[lun. sept.  9 09:33:26 2024] ",
    "[Jun 4 12:00] ",
    "[  +0.000123] ",
    "[   12.345678] ",
    "[3.64] ",
    "[  240.] ",
    "<4>[169739.712650] c1 ",
    "16:56:35 [ 82.646346] ",
    "12.345678] ",
    "[...] ",
    "[  T123] ",
    "[    C1] ",
    "[guest0/uart0] ",
    "(qemu) ",
    "root@host:~# [   12.345678] ",
    "`",
    "> Jul 27 14:08:03 host kernel: [   12.345678] [  T123] <4>",
]


@pytest.mark.parametrize("prefix", PREFIXED)
def test_prefix_is_peeled(prefix: str) -> None:
    assert strip_prefixes(prefix + LINE) == LINE


@pytest.mark.parametrize(
    "line",
    [
        LINE,
        " <66> 0f ef 00 f4 eb fd",  # a wrapped Code= line, not a printk level
        "RIP: 0010:__list_del_entry_valid+0x43/0x80",
        " ? do_syscall_64+0x3d/0x90",
    ],
)
def test_text_is_kept(line: str) -> None:
    assert strip_prefixes(line) == line.lstrip() or strip_prefixes(line) == line


def test_quoted_printable_is_decoded_and_soft_breaks_joined() -> None:
    text = "CR0=3D80050033 CR2=3D0000\nCode=3D0f 0b <0f> 0b 66=\n 90 90\nRAX=3D00\n"
    lines = repair_lines(text)
    assert lines == ["CR0=80050033 CR2=0000", "Code=0f 0b <0f> 0b 66 90 90", "", "RAX=00", ""]


def test_line_number_column_is_removed_also_inside_quotes() -> None:
    text = "> 00034 kernel BUG at fs/x.c:1!\n> 00034 invalid opcode: 0000 [#1]\n> 00035 RIP: f\n"
    assert [strip_prefixes(line) for line in repair_lines(text)[:3]] == [
        "kernel BUG at fs/x.c:1!",
        "invalid opcode: 0000 [#1]",
        "RIP: f",
    ]


def test_grep_n_columns_are_removed() -> None:
    text = "1261929:Apr 13 18:52:32 h kernel: BUG: x\n1262024-Apr 13 18:52:32 h kernel: IP: y\n"
    assert [strip_prefixes(line) for line in repair_lines(text)[:2]] == ["BUG: x", "IP: y"]


def test_numbers_that_are_not_a_column_stay() -> None:
    text = "12 apples\n3 pears\nno number\n"
    assert repair_lines(text) == text.split("\n")


def test_clean_text_cuts_and_drops_controls() -> None:
    assert clean_text("\x1b[31mred\x1b[0m\tx\r") == "red x"
    assert len(clean_text("a" * (MAX_LINE_CHARS * 3))) == MAX_LINE_CHARS
    times = "\u00d7"  # a web page's multiplication sign for the x of "0x"
    assert clean_text(f"kobject_add+0{times}83/0{times}d7") == "kobject_add+0x83/0xd7"
    assert clean_text(f"2{times}3 and 10{times}4") == f"2{times}3 and 10{times}4"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_never_raises_and_keeps_line_count(text: str) -> None:
    lines = repair_lines(text)
    assert len(lines) == len(text.split("\n"))
    for line in lines:
        strip_prefixes(clean_text(line))


#: One alternation of the prefix patterns (tried in their order): one prefix peeled per match,
#: the definition that pasted's one-match peel implements.
_ONE_PREFIX = re.compile("|".join(f"(?:{p})" for p in pasted._PREFIX_PATTERNS))


def _peel_one_at_a_time(line: str, stop_at_stamp: bool = False) -> str:
    """The definition strip_prefixes implements in one match: the first prefix pattern that
    matches is peeled, again on the rest, at most _MAX_PEEL times; strip_outer_prefixes'
    (``stop_at_stamp``) stops before a printk stamp."""
    for _ in range(pasted._MAX_PEEL):
        if stop_at_stamp and pasted._PRINTK_STAMP.match(line):
            return line
        m = _ONE_PREFIX.match(line)
        if m is None or m.end() == 0:
            return line
        line = line[m.end() :]
    return line


@given(st.lists(st.sampled_from([*PREFIXED, " ", "[", "]", "1", ":", "a", "#"]), max_size=16),
       st.sampled_from([LINE, "", "x", " 0f 0b", "[ 1.0] y"]))  # fmt: skip
def test_one_match_peels_as_one_prefix_at_a_time(parts: list[str], rest: str) -> None:
    line = "".join(parts) + rest
    assert strip_prefixes(line) == _peel_one_at_a_time(line)


@given(st.lists(st.sampled_from([*PREFIXED, " ", "[", "]", "1", ":", "a", "#"]), max_size=16),
       st.sampled_from([LINE, "", "x", " 0f 0b", "[ 1.0] y"]))  # fmt: skip
def test_outer_peel_stops_at_the_printk_stamp(parts: list[str], rest: str) -> None:
    line = "".join(parts) + rest
    assert strip_outer_prefixes(line) == _peel_one_at_a_time(line, stop_at_stamp=True)


def test_relative_line_numbers_before_printk_stamps_are_removed() -> None:
    """An editor's relative line numbers (any order, one digit or more) before the stamps of
    most lines are a column to remove (real corpus 114); the stamps stay."""
    text = "\n".join(
        [
            "[   18.772166] general protection fault: 0000 1 SMP",
            "  2 [   18.776261] Modules linked in: x86_pkg_temp_thermal",
            "  1 [   18.782507] CPU: 1 PID: 1369 Comm: sampling-1366",
            "37 [   18.789847] I-pipe domain: Linux",
            "  1 [   18.792996] task: ffff88003c9a5100",
            "  2 [   18.798311] RIP: 0010:[<ffffffff81058c35>]  [<ffffffff81058c35>] f+0xc5/0x1d0",
        ]
    )
    lines = repair_lines(text)
    assert lines[1] == "[   18.776261] Modules linked in: x86_pkg_temp_thermal"
    assert lines[3] == "[   18.789847] I-pipe domain: Linux"
    assert lines[0] == text.split("\n")[0]


def test_numbers_out_of_order_without_stamps_stay() -> None:
    """Without printk stamps after them, numbers out of order are text, not a column."""
    text = "12 apples\n3 pears\n40 plums\n7 figs"
    assert repair_lines(text) == text.split("\n")
