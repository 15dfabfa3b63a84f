"""literals.any_of: the trie pattern finds a word exactly when a plain alternation does."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvmha_forensics.sources.literals import any_of

WORDS = ("BUG:", "BUG: KASAN", "Bad page state", "INFO: task ", "INFO:", "a.b", "[x]", "ut of")
_ALPHABET = "BUGINFOKASad pgestkx.[]:bu "


def _plain(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(w) for w in words))


@given(st.text(alphabet=_ALPHABET, max_size=40))
def test_same_lines_match_as_the_plain_alternation(line: str) -> None:
    assert (any_of(WORDS).search(line) is None) == (_plain(WORDS).search(line) is None)


@given(st.lists(st.text(alphabet="abc", min_size=1, max_size=4), min_size=1, max_size=6),
       st.text(alphabet="abc", max_size=20))  # fmt: skip
def test_any_word_set(words: list[str], line: str) -> None:
    assert (any_of(words).search(line) is None) == (_plain(tuple(words)).search(line) is None)


def test_metacharacters_are_literal() -> None:
    assert any_of(WORDS).search("axb") is None
    assert any_of(WORDS).search("see [x] here") is not None


@pytest.mark.parametrize("words", [(), ("",), ("a", "")])
def test_no_word_or_an_empty_one_is_refused(words: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="any_of"):
        any_of(words)
