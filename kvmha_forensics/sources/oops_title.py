"""The engine over :mod:`.oops_formats` and :mod:`.oops_frames`: a report's syzkaller title,
alternate titles, ``corrupted`` flag and guilty frame.

:func:`match_group` says whether a console line starts a report; :func:`describe` reads the
report from there. The report's text is its lines in the header line's printk context
(``[T123]`` / ``[C1]`` caller ids, or timestamps), without unreliable ``? `` frames, up to the
next report's header; the title is the earliest-matching format's template, filled with its
groups and the guilty frames, then normalized (addresses, numbers, lines, CPU numbers).
Linear in the report's size: no regex spans lines except the title searches.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

from .literals import any_of
from .oops_formats import (
    CONTINUATIONS,
    GROUPS,
    INFO_WITH_STACK,
    TRACE,
    Format,
    Group,
    GroupCause,
    Stack,
    expand,
)
from .oops_frames import (
    CORRUPTED_LINES,
    FRAME_LINES,
    HANG_SKIP,
    RISCV_TRACE_START,
    SKIP,
    TRACE_STARTS,
    pick_hang,
    pick_stall,
    strip_prefix,
)

#: A report's text never holds more lines than this (from its header on).
MAX_LINES = 1000
#: Title regexes are searched in this many first characters of a report (they match its first
#: lines; the bound keeps a long report of long lines from costing quadratic time).
_TITLE_SPAN = 16_384
#: Titles are cut to this many characters (intermixed lines can be very long).
MAX_TITLE = 120
#: Where a report's lines come from: printk time, then an optional caller id.
_CONTEXT = re.compile(
    r"^(?:\*\* [0-9]+ printk messages dropped \*\* )?(?:.* login: )?(?:<[0-9]+>)?"
    r"\[ *[0-9]+\.[0-9]+\](\[ *(?:C|T)[0-9]+\])? "
)
_CONSOLE = "console"
_QUESTIONABLE = re.compile(r"(?:^|\s)\? ")
_HEADERS = any_of(g.header for g in GROUPS)
#: A line that may end a report holds one of these: any header or message with a stack.
_BOUNDARY = (*(g.header for g in GROUPS), *INFO_WITH_STACK)
_MODULE_FRAME = re.compile(r"(?<![\w.])(\w+)(?:\.[\w.]+)?\+0x[0-9a-f]+/0x[0-9a-f]+ \[([\w-]+)")
_UNPRINTABLE = re.compile(r"[^\t\x20-\x7e]")
_SPACES = re.compile(" {2,}")
_CORRUPTED_TITLE = re.compile(r"\[ *[0-9]+\.[0-9]+\]")
#: syzkaller's ``reportFrameRe``: a title's frame is what follows its last `` in ``.
_TITLE_FRAME = re.compile(r".* in ((?:<[a-zA-Z0-9_: ]+>)?[a-zA-Z0-9_:]+)")
#: A panic (or a lockdep report induced by the oops) this far into a report ends its text.
_MIN_LINES, _MIN_LINES_KMSAN = 22, 16
#: Lines after a header where a repeat of it (a symbolized inline frame) may appear.
_REPEAT_WINDOW = 8

#: Title normalization, in order; each applied until nothing changes. What varies between
#: runs of one bug goes: executor names, addresses, IPs, line numbers, offsets, numbers.
_NORMALIZE: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.ASCII), r)
    for p, r in (
        (r"syz-executor\.?[0-9]+((/|:)[0-9]+)?", "syz-executor"),
        (r"syzkaller[0-9]+((/|:)[0-9]+)?", "syzkaller"),
        (r"([^a-zA-Z0-9])(?:0x)?[0-9a-f]{6,}", r"\1ADDR"),
        (r"([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})", "IP"),
        (r"(\.\w+)(:[0-9]+)+", r"\1:LINE"),
        (r"([a-zA-Z][a-zA-Z0-9_.]+)\+0x[0-9a-z]+/0x[0-9a-z]+", r"\1"),
        (r"CPU#[0-9]+", "CPU"),
        (r"(\W)(\d+)(\W|$)", r"\1NUM\3"),
        (r"\d{7,}", "NUM"),
    )
)

#: Whatever any of :data:`_NORMALIZE` could replace holds one of these.
_VARIES = re.compile(r"syz|[0-9a-f]{6}|\d|CPU#", re.ASCII)

#: The cause of a report by its title, before its group's default.
_CAUSES: tuple[tuple[str, GroupCause], ...] = (
    ("INFO: rcu detected stall", "guest-lockup"),
    ("BUG: soft lockup", "guest-lockup"),
    ("BUG: spinlock lockup", "guest-lockup"),
    ("BUG: workqueue lockup", "guest-lockup"),
    ("INFO: task hung", "guest-hung-task"),
    ("BUG: unable to handle", "guest-oops"),
)


@dataclass(frozen=True, slots=True)
class Description:
    """What syzkaller's rules say of one report. ``frame`` is the guilty function (None when
    the title names none); ``module`` the module it was printed with, if any."""

    title: str
    alt_titles: tuple[str, ...]
    corrupted: bool
    frame: str | None
    module: str | None
    cause: GroupCause
    #: Where the chosen format reads its guilty frame (None: the title names no frame).
    stack: Stack | None = None
    #: No format of the header's group matched: the title is the header line as printed.
    raw: bool = False

    def pick(self, frames: Sequence[str], *, fallback: bool = True) -> tuple[str, str] | None:
        """The guilty frame syzkaller's rules for this report would pick among ``frames``
        (function names, innermost first) read from a stack its own patterns could not read:
        the common and the format's skip lists, then the format's extractor (the first frame
        left, a stall's dispatch anchor, a hang's bucket), as (name for the title, the frame
        of ``frames``). None when none qualifies. A stall's stack cut before any anchor gives
        its innermost kept frame outside the scheduler and waits (unless ``fallback`` is
        false)."""
        stack = self.stack
        if stack is None:
            return None
        common, own = _skip(SKIP), _skip(stack.skip) if stack.skip else None
        kept = [
            f for f in frames if common.search(f) is None and (own is None or own.search(f) is None)
        ]
        picked = _pick(stack, kept)
        running = [f for f in kept if not any(w in f for w in HANG_SKIP)]
        if picked is None and stack.extractor == "stall" and running and fallback:
            # A stack cut before any dispatch anchor: syzkaller says "corrupted"; the stuck
            # CPU was in the innermost frame its skip lists keep that is not the scheduler's
            # or a wait (docs/syzkaller-titles.md).
            picked = strip_prefix(running[0]), running[0]
        return picked


@dataclass(frozen=True, slots=True)
class _Compiled:
    fmt: Format
    title: re.Pattern[str]
    report: tuple[re.Pattern[str], ...]


#: Each group's lines that are not reports, by header (compiled at import: few and small).
_IGNORES: dict[str, tuple[re.Pattern[str], ...]] = {
    g.header: tuple(re.compile(p) for p in g.ignore) for g in GROUPS
}
_FORMATS: dict[str, tuple[_Compiled, ...]] = {}


def _formats(group: Group) -> tuple[_Compiled, ...]:
    """``group``'s formats with their regexes, compiled on first use."""
    formats = _FORMATS.get(group.header)
    if formats is None:
        formats = _FORMATS[group.header] = tuple(
            _Compiled(
                f, re.compile(expand(f.title)), tuple(re.compile(expand(p)) for p in f.report)
            )
            for f in group.formats
        )
    return formats


@cache
def _parts(parts: tuple[str, ...]) -> tuple[re.Pattern[str] | None, ...]:
    return tuple(None if p == TRACE else re.compile(expand(p)) for p in parts)


@cache
def _skip(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for a skip list (the common one costs ~15 ms to compile: once)."""
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_CONTINUATION = re.compile("|".join(CONTINUATIONS))
_TRACE_START = re.compile("|".join(s.pattern for s in TRACE_STARTS))
_CORRUPTED_LINE = re.compile("|".join(c.pattern for c in CORRUPTED_LINES))
#: A word each of :data:`TRACE_STARTS` holds: lines without any cannot start a trace.
_TRACE_WORDS = ("race", "Allocated", "Allocated", "Freed", "Freed", "acktrace", "Backtrace",
                "Uninit", "badaddr")  # fmt: skip
_X86_FRAME, _ARM_FRAME = FRAME_LINES


#: Whether a line holds one of :data:`_TRACE_WORDS` (one cheap search first: few lines do).
_TRACE_HINT = any_of(_TRACE_WORDS)


def _trace_start(line: str) -> bool:
    return _TRACE_HINT.search(line) is not None and _TRACE_START.search(line) is not None


@lru_cache(maxsize=1 << 14)
def _skipped(skip: re.Pattern[str], frame: str) -> bool:
    """Whether ``skip`` finds ``frame`` (syzkaller's common skip list is 238 patterns searched
    at every position, ~25 µs a frame; a kernel's frames repeat from report to report)."""
    return skip.search(frame) is not None


def _is_frame(line: str) -> re.Match[str] | None:
    """The match of a frame line (x86-style, or arm's ``(caller) from (callee)``), if any."""
    m = _X86_FRAME.search(line)
    if m is None and " from " in line:
        m = _ARM_FRAME.search(line)
    return m


def match_group(line: str) -> Group | None:
    """The group whose header ``line`` holds (the first in table order), unless the line is
    one of that group's known non-reports."""
    if _HEADERS.search(line) is None:
        return None
    for group in GROUPS:
        if group.header in line:
            if any(i.search(line) for i in _IGNORES[group.header]):
                continue
            return group
    return None


def known_header(line: str) -> Group | None:
    """The group of a line that starts a report of a kind the table names: one of the group's
    title regexes matches on the line itself (a bare ``INFO: …`` line from a driver does not)."""
    group = match_group(line)
    if group is None or not any(c.title.search(line) for c in _formats(group)):
        return None
    return group


def _questionable(line: str) -> bool:
    if "<EOI>" in line or ("? " not in line and not line.endswith(" (unreliable)")):
        return False
    return _QUESTIONABLE.search(line) is not None or line.endswith(" (unreliable)")


#: Lines the report's text treats specially (see :func:`report_lines`).
_DISABLING = "Disabling lock debugging due to kernel taint"
_NMI = "Sending NMI from CPU"
_SPECIALS = (
    _DISABLING,
    _NMI,
    "Kernel panic - not syncing",
    "WARNING: possible circular locking dependency detected",
)
_SPECIAL = re.compile("|".join(re.escape(m) for m in _SPECIALS))


#: One cheap test for a line that may start a report or be special (most lines are neither).
_HINTS = any_of((*_BOUNDARY, *_SPECIALS))


class ConsoleLines:
    """A console's lines as printed (``raw``) and without printk prefixes (``clean``), with
    what the rules ask of each line computed once, however many reports read it. ``peel``
    takes off what stands before a line's printk stamp (quotes, syslog), on first use."""

    def __init__(
        self, raw: Sequence[str], clean: Sequence[str], peel: Callable[[str], str] | None = None
    ) -> None:
        self.raw, self.clean, self._peel = raw, clean, peel
        self._contexts: list[str | None] = [None] * len(raw)
        self._hints: list[tuple[bool, str] | None] = [None] * len(raw)

    def context(self, i: int) -> str:
        """Line ``i``'s printk context: its caller id, ``console`` (a timestamp only) or ``""``."""
        context = self._contexts[i]
        if context is None:
            raw = self.raw[i]
            if "[" in raw and self._peel is not None:
                raw = self._peel(raw)
            m = _CONTEXT.match(raw) if "[" in raw else None
            context = self._contexts[i] = "" if m is None else m[1] or _CONSOLE
        return context

    def hint(self, i: int) -> tuple[bool, str]:
        """Whether line ``i`` ends a report before it (another header, or a message with a
        stack), and the :data:`_SPECIAL` text it holds ("" when none)."""
        hint = self._hints[i]
        if hint is None:
            line = self.clean[i]
            if _HINTS.search(line) is None:
                hint = _NO_HINT
            else:
                starts = (
                    match_group(line) is not None and _CONTINUATION.search(line) is None
                ) or any(s in line for s in INFO_WITH_STACK)
                special = _SPECIAL.search(line)
                hint = (starts, special[0] if special is not None else "")
            self._hints[i] = hint
        return hint


_NO_HINT = (False, "")
#: The instruction bytes line: bytes, or "Bad EIP value." / "Bad RIP value." (no frame).
_CODE_LINE = "Code: "


def report_lines(console: ConsoleLines, first: int) -> tuple[list[str], int]:
    """The report's text from its header ``first``: lines of the header's context (with a CPU
    backtrace, the other CPUs' lines too), unreliable frames left out, up to :data:`MAX_LINES`;
    and how many of them precede the next report's header (all, when caller ids keep reports
    apart). The title is read from those; the check for a stack trace reads them all."""
    clean = console.clean
    context = console.context(first)
    min_lines = _MIN_LINES_KMSAN if "BUG: KMSAN:" in clean[first] else _MIN_LINES
    out = [clean[first]]
    end, text_lines = 1, 1
    second = skip_text = cpu_backtrace = False
    split = context in ("", _CONSOLE)
    # A symbolized report repeats its header once per inlined function ("BUG: KASAN: … in f
    # file.c:1 [inline]"): those lines, just after the header, are not a second report.
    repeat = clean[first].partition(" in ")[0] + " in " if " in " in clean[first] else None
    for i in range(first + 1, min(len(clean), first + MAX_LINES)):
        starts, special = console.hint(i)
        if (
            starts
            and not second
            and not (
                repeat is not None and i - first <= _REPEAT_WINDOW and clean[i].startswith(repeat)
            )
        ):
            second = True
        ctx = console.context(i)
        line = clean[i]
        if (ctx != "" and _questionable(line)) or (
            ctx != context and not (cpu_backtrace and ctx.startswith("[") and "C" in ctx)
        ):
            continue
        text_lines += 1
        if skip_text or special == _DISABLING:
            continue
        if special == _NMI:
            cpu_backtrace = True
        elif special and text_lines > min_lines:
            skip_text = True
            continue
        out.append(line)
        if not second or not split:
            end = len(out)
    return out, end


def _report_match(
    lines: list[str], parts: tuple[re.Pattern[str], ...]
) -> tuple[list[str], int] | None:
    """The groups of ``parts`` matched on successive lines, and the line of the first; None if
    they do not all match."""
    groups: list[str] = []
    start = -1
    i = 0
    for part in parts:
        while i < len(lines):
            m = part.search(lines[i])
            i += 1
            if m is not None:
                groups += [g or "" for g in m.groups()]
                start = i - 1 if start < 0 else start
                break
        else:
            return None
    return groups, start


def _frames(stack: Stack, lines: list[str]) -> tuple[list[tuple[str, str]], bool]:
    """One (canonical, raw) guilty frame per trace of ``stack``; False when one has none."""
    results, ok = _frames_with(stack, stack.parts, lines)
    if ok or not stack.parts2:
        return results, ok
    return _frames_with(stack, stack.parts2, lines)


def _pick(stack: Stack, raw: list[str]) -> tuple[str, str] | None:
    if not raw:
        return None
    stripped = [strip_prefix(f) for f in raw]
    if stack.extractor == "first":
        return stripped[0], raw[0]
    index, name = pick_stall(stripped) if stack.extractor == "stall" else pick_hang(stripped)
    if index < 0:
        return None
    return name or stripped[index], raw[index]


def _frames_with(
    stack: Stack, spec: tuple[str, ...], lines: list[str]
) -> tuple[list[tuple[str, str]], bool]:
    parts = _parts(spec)
    common, own = _skip(SKIP), _skip(stack.skip) if stack.skip else None
    collect_all = stack.extractor != "first"
    results: list[tuple[str, str]] = []
    raw: list[str] = []
    ok, traces, index = True, 0, 0
    rest = iter(lines)  # both kinds of part read on from where the last one stopped

    def add(m: re.Match[str]) -> None:
        for frame in m.groups():
            if (
                frame
                and (collect_all or not raw)
                and not _skipped(common, frame)
                and (own is None or not _skipped(own, frame))
            ):
                raw.append(frame)

    while True:
        if index == len(parts) or (parts[index] is None and traces > 0):
            picked = _pick(stack, raw)
            if picked is None:
                picked, ok = ("corrupted", "corrupted"), False
            results.append(picked)
            raw = []
        if index == len(parts):
            return results, ok
        part = parts[index]
        next_part = parts[index + 1] if index + 1 < len(parts) else None
        index += 1
        if part is None:
            traces += 1
            for line in rest:
                if _corrupts(line):
                    ok = False
                    break
                if _trace_start(line):
                    break
                if next_part is not None and (m := next_part.search(line)) is not None:
                    add(m)
                    index += 1
                    break
                if (m := _is_frame(line)) is not None:
                    add(m)
        else:
            for line in rest:
                if _corrupts(line):
                    ok = False
                    break
                if line.startswith(_CODE_LINE):
                    continue  # "Code: Bad EIP value." holds "IP value.", never a frame
                if (m := part.search(line)) is not None:
                    add(m)
                    break


def _corrupts(line: str) -> bool:
    """A fault-injection line (syzkaller's corruptedLines) inside the stack: it is corrupted."""
    return "should_fail" in line and _CORRUPTED_LINE.search(line) is not None


def normalize(title: str) -> str:
    """``title`` without what varies between runs of one bug, cut and spaced as syzkaller's."""
    if _VARIES.search(title) is None:
        return _SPACES.sub(" ", _sanitize(title)).strip()
    for pattern, replacement in _NORMALIZE:
        while True:
            new = pattern.sub(replacement, title)
            if new == title:
                break
            title = new
    return _SPACES.sub(" ", _sanitize(title)).strip()


def _sanitize(title: str) -> str:
    """The first :data:`MAX_TITLE` characters, tabs as spaces, other control characters and
    non-ASCII left out."""
    return _UNPRINTABLE.sub("", title[:MAX_TITLE]).replace("\t", " ")


def _has_trace(lines: list[str]) -> bool:
    """Each kind of trace header, where it first occurs, has a frame within 15 lines, and there
    is at least one."""
    text = "\n".join(lines) + "\n"
    found = False
    for start, word in zip(TRACE_STARTS, _TRACE_WORDS, strict=True):
        m = start.search(text) if word in text else None
        if m is None:
            continue
        first = text.count("\n", 0, m.start())
        if len(lines) - first < 3:
            return False
        frame = False
        for line in lines[first + 1 : first + 16]:
            if _trace_start(line):
                break
            if "(stack is not available)" in line or _is_frame(line) is not None:
                frame = found = True
                break
        if not frame and start is not RISCV_TRACE_START:
            return False
    return found


def _module(lines: list[str], raw_frame: str) -> str | None:
    """The module ``raw_frame`` is printed with (``func+0x1/0x2 [mod]``), if any."""
    for line in lines:
        if raw_frame in line and "[" in line:
            for m in _MODULE_FRAME.finditer(line):
                if m[1] == raw_frame:
                    return m[2]
    return None


def _cause(title: str, group: Group) -> GroupCause:
    return next((cause for prefix, cause in _CAUSES if title.startswith(prefix)), group.cause)


def describe(console: ConsoleLines, first: int) -> Description | None:
    """syzkaller's title, alternates, corruption and guilty frame of the report whose header is
    line ``first`` of ``console``; None when that line is no report header syzkaller knows."""
    clean = console.clean
    group = match_group(clean[first])
    if group is None:
        return None
    full, end = report_lines(console, first)
    lines = full[:end]
    text = "\n".join(lines) + "\n"
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    best = len(text)
    desc: str | None = None
    chosen: Format | None = None
    alts: list[str] = []
    matched = corrupted = False
    raw_frame = ""
    for compiled in _formats(group):
        if best == 0 and desc is not None:
            break  # no later format can start earlier, and ties go to the first
        m = compiled.title.search(text, 0, _TITLE_SPAN)
        if m is None or m.start() > best or (m.start() == best and desc is not None):
            continue
        if m.start() < best:
            desc, chosen, best = None, None, m.start()
        matched = True
        fmt = compiled.fmt
        if compiled.report:
            found = _report_match(lines, compiled.report)
            if found is None:
                continue
            args, start_line = found
            start_line_text = lines[start_line:]
        else:
            args = [g or "" for g in m.groups()]
            line_no = bisect_right(offsets, m.start()) - 1
            start_line_text = [text[m.start() : offsets[line_no + 1] - 1], *lines[line_no + 1 :]]
        corrupted = False
        frames: list[tuple[str, str]] = []
        if fmt.stack is not None:
            frames, ok = _frames(fmt.stack, start_line_text)
            corrupted = not ok
        values = [*args, *(f[0] for f in frames)]
        desc = fmt.template.format(*values)
        alts = [a.format(*values) for a in fmt.alt]
        raws = [*args, *(f[1] for f in frames)]
        if raws != values:
            alts += [fmt.template.format(*raws), *(a.format(*raws) for a in fmt.alt)]
        raw_frame = frames[0][1] if frames else ""
        chosen = fmt
    raw = desc is None
    if desc is None:
        corrupted = matched
        head = text.find(group.header)
        desc = text[head : text.index("\n", head)] if head >= 0 else clean[first]
    corrupted = corrupted or (chosen is not None and chosen.corrupted)
    if not corrupted:
        corrupted = _CORRUPTED_TITLE.search(desc) is not None or (
            chosen is not None and not chosen.no_trace and not _has_trace(full)
        )
    title = normalize(desc)
    alt_titles = tuple(dict.fromkeys(t for a in alts if (t := normalize(a)) != title))
    fm = None if raw else _TITLE_FRAME.match(title)  # a raw line's "in X" is no frame
    frame = fm[1] if fm is not None and fm[1] != "corrupted" else None
    module = _module(lines, raw_frame or frame) if frame else None
    stack = chosen.stack if chosen is not None else None
    cause = _cause(title, group)
    return Description(title, alt_titles, corrupted, frame, module, cause, stack, raw)
