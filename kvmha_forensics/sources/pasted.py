"""Undo what transports and pasting do to log lines, for the console and QEMU log parsers.

Two steps, both linear and never raising:

* :func:`repair_lines` works on the whole text: a quoted-printable mail body (``=3D`` for
  ``=``, soft line breaks ending in ``=``) is decoded, and a column of line numbers added by
  an editor or a test harness (``  11745 [46223316.649832] ...``, ktest's ``00034 ...``, an
  editor's relative numbers before printk stamps) is removed; syslogd's wall broadcasts
  (``Message from syslogd@HOST at DATE ...`` and the `` kernel:...`` line under it, which
  syslogd writes to terminals for emergency messages) become empty where the same kernel line
  is in the log too, so a report is read once, from the log. Lines keep their original
  index: a line joined to the one before it becomes empty.
* :func:`strip_prefixes` peels what is in front of one line, as often as it repeats: mail
  quotes (``> >> ``), syslog and journal prefixes (any month name, with or without a host,
  ISO 8601 stamps, ``kernel:`` or ``QEMU[pid]:``), ``dmesg -T``/``-H`` stamps, printk times
  (also unpadded ``[3.64]``, ``[  240.]`` and one that lost its ``[``), caller ids
  (``[  T123]``, ``[    C1]``), levels (``<4>``), ``/dev/kmsg`` and extended netconsole
  records (``6,1234,5678901,-;``), bracketed tags (``[guest0/uart0]``), CI timestamps
  (``[2023-07-23T14:47:36.887Z]``), shell and monitor prompts and a stray Markdown backtick.

``docs/console-formats.md`` lists the shapes with an example of each.
"""

from __future__ import annotations

import itertools
import re

#: Lines longer than this are cut before matching (a lost newline must not cost quadratic work).
MAX_LINE_CHARS = 2048
#: Where a raw line is cut before it is repaired: room for prefixes that
#: :func:`clean_text` will not count, and a bound on every pattern run over the line.
RAW_LINE_CHARS = 2 * MAX_LINE_CHARS

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: WordPress's texturize (and editors like it) turn "0x83" into 0, U+00D7 (a multiplication
#: sign), 83.
_TIMES = "\u00d7"
_TIMES_HEX = re.compile(r"(?<![\w.])0" + _TIMES + r"(?=[0-9a-fA-F])")
_QP_ESCAPE = re.compile(r"=([0-9A-F]{2})")
_QP_MIN_HINTS = 2
# Also inside mail quotes, and grep -n's "1261929:" / context "1262024-" columns.
# An ISO date ("2024-12-17T16:36:30") is a stamp, not a "2024-" context column.
_NUMBER_COLUMN = re.compile(r"^(?:\s*>)*\s*(\d{2,9})(?!-\d\d-\d\d[T ])(?:\s+|[:-](?=\S))\S")
_NUMBER_COLUMN_SHARE = 0.6
_STAMPED_NUMBER = re.compile(r"^((?:\s*>)*)\s*\d{1,9}\s+(?=\[\s*\d+\.\d+\])")
_NUMBER_COLUMN_STRIP = re.compile(r"^((?:\s*>)*)\s*\d{2,9}(?:\s|[:-](?=\S))")
#: The characters ``(?:\s*>)*\s*`` matches: ``>`` and every ``str.isspace`` character (what
#: ``\s`` matches; tests/unit/test_pasted.py checks the list against this Python's).
_SPACE_OR_QUOTE = (
    ">\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

_MONTH = r"(?:[^\W\d_]{3,9}\.?|\d{1,2}\s?[月월])"
#: A weekday as strftime's %a prints it in any locale ("Mon", "Mo", "lun.", "一", "월").
_WEEKDAY = r"[^\W\d_]{1,9}\.?"
_CLOCK = r"\d\d:\d\d:\d\d(?:[.,]\d+)?"
_ISO = r"\d{4}-\d\d-\d\d[T ]" + _CLOCK + r"(?:Z|[+-]\d\d:?\d\d)?"
_PROCESS = r"(?:kernel|[\w.@/-]+\[\d+\])"
_PREFIX_PATTERNS: tuple[str, ...] = (
    r"^\s*(?:>[ \t]?)+",  # mail quotes, any depth
    r"^<\d{1,3}>(?! [0-9a-f]{2}\b)",  # syslog / printk level, not a wrapped "<66> 0f"
    r"^\d{1,3},\d+,\d+,[-c+][^;]{0,40};",  # /dev/kmsg, extended netconsole
    # syslog: "Jul 27 14:08:03 host kernel: ", "июл 27 ...", host optional
    rf"^\s*{_MONTH}\s+\d{{1,2}},?\s+{_CLOCK}\s+(?:\S+\s+)?{_PROCESS}:\s?",
    rf"^\s*{_ISO}\s+(?:\S+\s+)?{_PROCESS}:\s?",  # rsyslog / journalctl -o short-iso
    rf"^\s*{_ISO}\s+",  # bare ISO stamp (rsyslog, -msg timestamp=on style)
    r"^\s*kernel:\s?",  # syslogd wall messages, journal lines cut to the tag
    r"^\s*\[\d{4}-\d\d-\d\dT[\d:.]+Z?\]\s?",  # CI log timestamps
    r"^\s*\d\d:\d\d:\d\d(?:[.,]\d+)?\s+",  # a bare wall clock (CI and serial-capture tools)
    # dmesg -T, strftime's "%a %b %e %H:%M:%S %Y" in any locale ("[一 9月  9 09:33:26 2024]")
    rf"^\s*\[{_WEEKDAY}\s+{_MONTH}\s+\d{{1,2}}\s+{_CLOCK}\s+\d{{4}}\]\s?",
    r"^\s*\[[A-Z][a-z]{2}\s*\d{1,2} \d\d:\d\d\]\s?",  # dmesg -H, first line of a minute
    r"^\s*\[\s*\+\d+\.\d+\]\s?",  # dmesg -H deltas
    r"^\s*\[\s*\d+\.\d*\]\s?(?:c\d{1,2} )?",  # printk time, "[3.64]", "[  240.]"; Android "c1 "
    r"^\s*\d+\.\d{6}\]\s?",  # printk time that lost its "["
    r"^\s*\[\.{3,}\]\s?",  # time dotted out by hand
    r"^\[\s*[CT]\d+\]\s?",  # CONFIG_PRINTK_CALLER
    r"^\[[\w.-]+/[\w.-]+\]\s",  # hypervisor tags such as "[guest0/uart0] "
    r"^(?:\(qemu\)\s?)+",  # monitor prompt
    r"^[^\s\[\]]{0,24}[#$]\s+(?=\[\s*\d)",  # shell prompt glued before a timestamp
    r"^`+(?=\S)",  # Markdown inline-code backtick
)
_MAX_PEEL = 12
#: The same prefixes peeled up to :data:`_MAX_PEEL` times in one match (each pattern's ``^``
#: dropped: ``match`` anchors the first, the next starts where the last ended).
_PREFIX_RUN = re.compile(
    "(?:" + "|".join(p.removeprefix("^") for p in _PREFIX_PATTERNS) + f"){{0,{_MAX_PEEL}}}"
)


def clean_text(raw: str) -> str:
    """Cut, and drop ANSI escapes, CR and control characters (tabs become spaces); a hex
    prefix a web page typeset with a multiplication sign reads ``0x`` again."""
    line = raw[:MAX_LINE_CHARS]
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    if _TIMES in line:
        line = _TIMES_HEX.sub("0x", line)
    return _CONTROL.sub("", line.replace("\t", " "))


def strip_prefixes(line: str) -> str:
    """``line`` without the transport, time and quote prefixes in front of it."""
    m = _PREFIX_RUN.match(line)  # {0,n}: it always matches, maybe empty
    return line[m.end() :] if m is not None and m.end() else line


_PRINTK_STAMP = re.compile(r"^(?:<\d{1,3}>)?\[ *\d+\.\d+\]")
#: :data:`_PREFIX_RUN` that stops before a printk stamp.
_OUTER_RUN = re.compile(
    "(?:(?!" + _PRINTK_STAMP.pattern.removeprefix("^") + ")(?:"
    + "|".join(p.removeprefix("^") for p in _PREFIX_PATTERNS) + f")){{0,{_MAX_PEEL}}}"
)  # fmt: skip


def strip_outer_prefixes(line: str) -> str:
    """``line`` without what is in front of the kernel's own ``[   12.345678]`` stamp (mail
    quotes, syslog, journal, shell prompts), the stamp and caller id kept; a line without such
    a stamp loses every prefix. Rules that read the printk context use this."""
    m = _OUTER_RUN.match(line)  # {0,n}: it always matches, maybe empty
    return line[m.end() :] if m is not None and m.end() else line


def _is_quoted_printable(text: str) -> bool:
    return text.count("=3D") + text.count("=20\n") >= _QP_MIN_HINTS


def decode_qp(line: str) -> str:
    """``=XX`` escapes of a quoted-printable line decoded (soft breaks are the caller's)."""
    return _QP_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), line)


def _join_soft_breaks(lines: list[str]) -> list[str]:
    """Quoted-printable soft line breaks (a line ending in ``=``) joined, indices kept."""
    out = list(lines)
    anchor: int | None = None
    for index, line in enumerate(lines):
        target = index if anchor is None else anchor
        if anchor is not None:
            out[anchor] = out[anchor][:-1] + line
            out[index] = ""
        joined = out[target]
        anchor = target if joined.endswith("=") and len(joined) <= RAW_LINE_CHARS else None
    return out


def _number_column(lines: list[str]) -> re.Pattern[str] | None:
    """How to strip the column of numbers most non-empty lines start with, if they do:
    non-decreasing numbers (an editor's or grep's line numbers), or numbers in any order
    right before a printk stamp (an editor's relative line numbers, ``  2 [   18.77] ...``)."""
    numbers: list[int] = []
    stamped = filled = 0
    for line in lines:
        if not line.strip():
            continue
        filled += 1
        if not line.lstrip(_SPACE_OR_QUOTE)[:1].isdecimal():
            continue  # neither pattern can match: both want a digit after these
        stamped += _STAMPED_NUMBER.match(line) is not None
        m = _NUMBER_COLUMN.match(line)
        if m is not None:
            numbers.append(int(m.group(1)))
    if filled < 2:
        return None
    if stamped >= filled * _NUMBER_COLUMN_SHARE:
        return _STAMPED_NUMBER
    if len(numbers) < filled * _NUMBER_COLUMN_SHARE:
        return None
    ordered = all(a <= b for a, b in itertools.pairwise(numbers))
    return _NUMBER_COLUMN_STRIP if ordered else None


_WALL = re.compile(r"^(?:\s*>)*\s*Message from syslogd@\S+ at .*\.\.\.\s*$")
_WALL_KERNEL = re.compile(r"^(?:\s*>)*\s*kernel:\s*(.*\S)")


def _kernel_key(line: str) -> str | None:
    """What follows ``kernel:`` in ``line``, without blanks (the same printk record however
    syslog laid it out), or None."""
    _, sep, rest = line.partition("kernel:")
    return "".join(rest.split()) if sep and rest.strip() else None


def _drop_wall_copies(lines: list[str]) -> list[str]:
    """syslogd's wall broadcasts emptied: the header always, the kernel line under it when
    another line of the text holds the same record."""
    walls = [i for i, line in enumerate(lines) if "Message from syslogd@" in line]
    walls = [i for i in walls if _WALL.match(lines[i])]
    if not walls:
        return lines
    copies = {i + 1 for i in walls if i + 1 < len(lines) and _WALL_KERNEL.match(lines[i + 1])}
    logged = {k for i, line in enumerate(lines) if i not in copies and (k := _kernel_key(line))}
    out = list(lines)
    for i in walls:
        out[i] = ""
        if i + 1 in copies and _kernel_key(lines[i + 1]) in logged:
            out[i + 1] = ""
    return out


def repair_lines(text: str) -> list[str]:
    """The ``\\n``-separated lines of ``text``, repaired; same count and order as the input."""
    lines = text.split("\n")
    if max(map(len, lines)) > RAW_LINE_CHARS:  # C-speed check; long lines are rare
        lines = [line[:RAW_LINE_CHARS] for line in lines]
    if "Message from syslogd@" in text:
        lines = _drop_wall_copies(lines)
    if _is_quoted_printable(text):
        lines = [decode_qp(line) for line in _join_soft_breaks([s.rstrip("\r") for s in lines])]
    column = _number_column(lines[:400])
    if column is not None:
        lines = [column.sub(r"\1", line, count=1) for line in lines]
    return lines
