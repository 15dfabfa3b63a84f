"""LazyPattern: compiled on first use, and then finds what ``re.compile`` finds."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from kvmha_forensics.sources import console, oops_frames, pasted
from kvmha_forensics.sources.lazy_re import LazyPattern

TEXT = "BUG: kernel NULL pointer dereference, address: 0000000000000008\nRIP: 0010:foo+0x1/0x2"
PATTERNS = [r"address: (?P<addr>[0-9a-f]+)", r"^RIP: \d+:(\w+)", r"o+", r"(?!)", r"BUG: \w+"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_compiled_on_first_use_only(pattern: str) -> None:
    lazy = LazyPattern(pattern)
    assert not lazy.is_compiled and lazy.pattern == pattern
    lazy.search(TEXT)
    assert lazy.is_compiled
    compiled = lazy.compiled
    lazy.match(TEXT)
    assert lazy.compiled is compiled  # once


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("flags", [0, re.MULTILINE, re.ASCII | re.IGNORECASE])
def test_same_results_as_re_compile(pattern: str, flags: int) -> None:
    lazy, eager = LazyPattern(pattern, flags), re.compile(pattern, flags)

    def same(a: re.Match[str] | None, b: re.Match[str] | None) -> bool:
        return (a and (a.span(), a.groups(), a.groupdict())) == (
            b and (b.span(), b.groups(), b.groupdict())
        )

    for pos, endpos in [(0, len(TEXT)), (5, 40), (60, len(TEXT)), (0, 3)]:
        assert same(lazy.search(TEXT, pos, endpos), eager.search(TEXT, pos, endpos))
        assert same(lazy.match(TEXT, pos, endpos), eager.match(TEXT, pos, endpos))
        assert same(lazy.fullmatch(TEXT, pos, endpos), eager.fullmatch(TEXT, pos, endpos))
        assert [m.span() for m in lazy.finditer(TEXT, pos, endpos)] == [
            m.span() for m in eager.finditer(TEXT, pos, endpos)
        ]
    assert lazy.sub("X", TEXT) == eager.sub("X", TEXT)
    assert lazy.sub(lambda m: m[0].upper(), TEXT, 1) == eager.sub(lambda m: m[0].upper(), TEXT, 1)
    assert lazy.groupindex == dict(eager.groupindex) and lazy.flags == flags


def test_a_bad_pattern_fails_at_first_use() -> None:
    lazy = LazyPattern(r"(unclosed")
    with pytest.raises(re.error):
        lazy.search("text")


def _lazy_patterns() -> list[LazyPattern]:
    """Every LazyPattern of the rule modules: module values, in tuples, in formats."""
    found: list[LazyPattern] = []

    def walk(value: object) -> None:
        if isinstance(value, LazyPattern):
            found.append(value)
        elif isinstance(value, tuple):
            for v in value:
                walk(v)
        elif isinstance(value, console.OopsFormat):
            walk((value.header, value.detail))

    for module in (console, oops_frames, pasted):
        for value in vars(module).values():
            walk(value)
    return found


def test_every_rule_pattern_compiles() -> None:
    """The rule tables' patterns compile on first use now, not at import: a bad one would
    otherwise only fail on the first console that reaches it."""
    patterns = _lazy_patterns()
    assert len(patterns) > 100
    for lazy in patterns:
        assert isinstance(lazy.compiled, re.Pattern), lazy.pattern


def test_import_compiles_no_console_header() -> None:
    """Importing the console parser compiles none of its formats' headers; parsing a console
    compiles those of the lines it reads, and finds the same report as before."""
    code = (
        "from kvmha_forensics.sources import console\n"
        "before = sum(f.header.is_compiled for f in console.FORMATS)\n"
        "r = console.parse_console(" + repr(TEXT) + ")\n"
        "after = sum(f.header.is_compiled for f in console.FORMATS)\n"
        "print(before, after, len(console.FORMATS), r.reports[0].title)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after, total, *title = out.stdout.split()
    assert before == "0" and 0 < int(after) < int(total)
    assert " ".join(title) == console.parse_console(TEXT).reports[0].title
