"""Text that quotes a guest (or a file name) made safe for a terminal.

A guest writes what it likes to its console; a file name may hold any byte but ``/``. Control
characters (C0, DEL, C1 — ``ESC ]0;…``, ``ESC [2J``, the one-byte CSI ``\\x9b``) and the
Unicode bidirectional overrides are shown as ``\\xHH`` / ``\\uHHHH`` instead of reaching the
terminal. JSON output needs none of this: ``json.dumps`` escapes them already.
"""

from __future__ import annotations

import re

_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_MULTILINE = re.compile(f"[{_CONTROLS}]")
_ONE_LINE = re.compile(f"[{_CONTROLS}\t\n]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, one_line: bool = False) -> str:
    """``text`` with its control characters shown escaped; line ends (``\\n``, ``\\r\\n``) and
    tabs are kept unless ``one_line``."""
    if one_line:
        return _ONE_LINE.sub(_escape, text)
    return _MULTILINE.sub(_escape, text.replace("\r\n", "\n"))
