"""The parsers' shortcuts (tests before a costly regex, sets for tuples, a memo) give what the
regexes alone give, on generated lines."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from kvmha_forensics.sources import oops_title, pasted
from kvmha_forensics.sources.oops_frames import SKIP

_SPACES = [c for c in map(chr, range(0x110000)) if c.isspace()]


def test_space_or_quote_is_what_backslash_s_matches_and_a_quote() -> None:
    space = re.compile(r"\s")
    assert [c for c in map(chr, range(0x110000)) if space.match(c)] == _SPACES
    assert sorted(pasted._SPACE_OR_QUOTE) == sorted([">", *_SPACES])


_COLUMN_PARTS = st.lists(
    st.sampled_from(
        [
            " ",
            "\t",
            "\u3000",
            "\xa0",
            ">",
            "> ",
            "12",
            "7",
            "٣٤",
            "²",
            "[",
            "]",
            "[  12.5] ",
            "x",
            ":",
            "-",
            "1261929:",
            "  11745 ",
            "ab",
            "\r",
        ]
    ),
    max_size=8,
).map("".join)


@settings(max_examples=400)
@given(_COLUMN_PARTS)
def test_a_line_the_number_column_test_passes_over_matches_neither_pattern(line: str) -> None:
    if not line.lstrip(pasted._SPACE_OR_QUOTE)[:1].isdecimal():
        assert pasted._STAMPED_NUMBER.match(line) is None
        assert pasted._NUMBER_COLUMN.match(line) is None


_TRACE_PARTS = st.lists(
    st.sampled_from(
        [
            "Call Trace",
            "Call trace:",
            "call trace",
            "Allocated:",
            "Allocated by task 12:",
            "Freed:",
            "Freed by task 3:",
            "backtrace:",
            " backtrace (crc 1a):",
            "kbacktrace:",
            "Backtrace:",
            "Uninit was stored to memory at",
            "status: 0000000200000100 badaddr: 0000000000000000 cause: 000000000000000d",
            " ",
            "\n",
            "x",
            "RIP: 0010:f+0x1/0x2",
        ]
    ),
    max_size=5,
).map("".join)


@settings(max_examples=400)
@given(_TRACE_PARTS)
def test_trace_start_is_the_trace_start_regex(line: str) -> None:
    assert oops_title._trace_start(line) == (oops_title._TRACE_START.search(line) is not None)


@given(st.sampled_from(["do_syscall_64", "kasan_report", "__asan_load8", "memcpy_erms", "f"]))
def test_skip_memo_is_the_skip_search(frame: str) -> None:
    skip = oops_title._skip(SKIP)
    assert oops_title._skipped(skip, frame) == (skip.search(frame) is not None)
