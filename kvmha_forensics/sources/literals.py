"""One regex that finds whether a line holds any of many plain words, fast.

Python's ``re`` tries each branch of ``a|b|c`` at every position; a line holding none of 50
words (most console lines) costs 50 tries per character. :func:`any_of` builds the same
alternation as a trie (``B(?:UG:|ad page state)``), so one character decides most branches.
A word that holds another is dropped: whether a line matches is unchanged, only which word.
Use the result for ``search(...) is None`` tests, not for what it matched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_Trie = dict[str, "_Trie"]
_END = ""


def any_of(words: Iterable[str]) -> re.Pattern[str]:
    """A pattern that ``search``es a line for any of ``words`` (at least one, none empty)."""
    unique = set(words)
    if not unique or _END in unique:
        raise ValueError("any_of needs at least one word, and no empty one")
    kept = sorted(w for w in unique if not any(o != w and o in w for o in unique))
    trie: _Trie = {}
    for word in kept:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[_END] = {}
    return re.compile(_pattern(trie))


def _pattern(node: _Trie) -> str:
    branches = [re.escape(ch) + _pattern(sub) for ch, sub in sorted(node.items()) if ch]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return body if _END not in node else f"(?:{body})?"
