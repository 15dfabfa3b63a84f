"""Triage: many crashes (bundles, QEMU logs, consoles, vmcores) → groups by signature.

Each input is analyzed to the same verdict as ``analyze``; inputs with one signature form a
group (count, first and last seen, a representative, all members). An earlier triage record
(``--known``) marks which signatures are new, so CI can gate on new crashes only. A bad input
(unreadable, binary, empty, a damaged bundle) becomes a note and the rest goes on. The record's
JSON schema is documented in ``docs/triage.md``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Literal

from .. import __version__
from ..analysis import Analyzer, Inputs, select
from ..analyze import analyze_with, gather
from ..capture.bundle import MANIFEST, Bundle
from ..errors import ExitCode, ForensicsError, InputError
from ..input_files import absent, parse_json, read_input, refusal
from ..limits import MAX_RECORD_BYTES
from ..serial import to_json
from ..signature import signature_id
from ..sources.classify import Classified
from ..vocabulary import JSONObject, Vendor
from . import pool
from .cache import (
    CachedAnalysis,
    TriageCache,
    bundle_key,
    code_fingerprint,
)
from .scan import scan

log = logging.getLogger(__name__)

FORMAT = "kvmha-forensics-triage"
SCHEMA_VERSION = 1
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: Worker processes by default at most (each holds the analyzers: ~50 MB).
MAX_JOBS = 8
#: Directories below a named one that triage walks into, at most (deeper ones are named).
MAX_DEPTH = 32
_PATH_MAX = 4096  # Linux's, with the terminating NUL

MemberKind = Literal["bundle", "qemu-log", "console", "qemu-log+console", "vmcore"]


@dataclass(frozen=True, slots=True)
class Member:
    """One analyzed input of a group."""

    path: str
    kind: MemberKind
    seen: str
    analysis: CachedAnalysis
    cached: bool
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "kind": self.kind,
            "seen": self.seen,
            "partial": self.analysis.partial,
            "cached": self.cached,
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class Group:
    """All inputs with one signature; ``new`` when the known record lacks it."""

    signature: str
    members: tuple[Member, ...]
    new: bool

    @property
    def signature_id(self) -> str:
        return signature_id(self.signature)

    @property
    def representative(self) -> Member:
        """The first complete (not partial) member seen, else the first seen."""
        return min(self.members, key=lambda m: (m.analysis.partial, m.seen, m.path))

    @property
    def first_seen(self) -> str:
        return min(m.seen for m in self.members)

    @property
    def last_seen(self) -> str:
        return max(m.seen for m in self.members)

    def to_json(self) -> dict[str, object]:
        rep = self.representative
        verdict = rep.analysis.verdict
        return {
            "signature": self.signature,
            "signature_id": self.signature_id,
            "cause": verdict.cause,
            "summary": verdict.summary,
            "culprit": verdict.culprit,
            "new": self.new,
            "count": len(self.members),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "representative": rep.path,
            "verdict": verdict.to_json(),
            "members": [m.to_json() for m in self.members],
        }


@dataclass(frozen=True, slots=True)
class Skipped:
    """An input triage could not analyze, and why."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class KnownSignature:
    """A signature some triage has seen: the record CI carries from run to run."""

    signature: str
    cause: str
    first_seen: str
    last_seen: str

    def to_json(self) -> JSONObject:
        return to_json(self, signature_id=signature_id(self.signature))


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts of one run; ``cache_misses`` counts the analyses actually run."""

    inputs: int
    analyzed: int
    skipped: int
    cache_hits: int
    cache_misses: int
    seconds: float

    def to_json(self) -> JSONObject:
        return to_json(self, seconds=round(self.seconds, 3))


@dataclass(frozen=True, slots=True)
class TriageResult:
    """Groups (new first, then by count), skipped inputs, the cumulative known set, stats."""

    groups: tuple[Group, ...]
    skipped: tuple[Skipped, ...]
    known: tuple[KnownSignature, ...]
    stats: Stats
    created: str = field(default_factory=lambda: time.strftime(TIME_FORMAT, time.gmtime()))

    @property
    def new_groups(self) -> tuple[Group, ...]:
        return tuple(g for g in self.groups if g.new)

    @property
    def nothing_analyzable(self) -> bool:
        """Inputs were found, and every one was skipped: a CI job must not pass on that."""
        return bool(self.skipped) and not self.groups

    @property
    def exit_code(self) -> ExitCode:
        """``BAD_INPUT`` when nothing was analyzable, ``NEW_SIGNATURES`` when any group is
        new, else ``OK``."""
        if self.nothing_analyzable:
            return ExitCode.BAD_INPUT
        return ExitCode.NEW_SIGNATURES if self.new_groups else ExitCode.OK

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "kvmha-forensics", "version": __version__},
            "created": self.created,
            "stats": {**self.stats.to_json(), "groups": len(self.groups),
                      "new_groups": len(self.new_groups)},
            "groups": [g.to_json() for g in self.groups],
            "skipped": [to_json(s) for s in self.skipped],
            "known": [k.to_json() for k in self.known],
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Options:
    """What else analysis gets; part of every cache key."""

    cpu_vendor: Vendor | None = None
    debuginfo_dirs: tuple[Path, ...] = ()

    def key(self) -> str:
        return json.dumps([self.cpu_vendor, [str(d) for d in self.debuginfo_dirs]])


@dataclass(frozen=True, slots=True)
class _Found:
    """An input found by walking: a bundle directory (``classified`` None), a file refused
    (its reason), or a regular file ("file": classified when planned, then given to analysis
    with its classification)."""

    path: Path
    classified: Classified | Literal["file"] | None
    follow: bool = True  # whether a link at the file's last component is followed


def triage(
    inputs: Sequence[Path],
    known: Path | None = None,
    *,
    cache: TriageCache | None = None,
    options: Options | None = None,
    jobs: int | None = None,
) -> TriageResult:
    """Analyze every input (walking directories), group by signature, mark new signatures.

    A named input that does not exist, or a ``known`` file that is not a triage record, is an
    :class:`InputError`; a bad file inside is skipped with the reason. ``jobs`` processes
    analyze (default: the usable CPUs, at most :data:`MAX_JOBS`; 1: none but this one); the
    result does not depend on it.
    """
    start = time.perf_counter()
    opts = options or Options()
    known_set = load_known(known) if known else {}
    for path in inputs:
        if not path.exists():
            raise InputError(f"{path} {absent(path)}")
    analyzers = tuple(select(None))
    fingerprint = code_fingerprint(analyzers)
    members: list[Member] = []
    skipped: list[Skipped] = []
    found = list(_walk(inputs))
    try:
        jobs = min(pool.usable_cpus(), MAX_JOBS) if jobs is None else jobs
        with pool.relaxed_gc():
            _analyze_all(found, analyzers, fingerprint, opts, cache, members, skipped, jobs)
    finally:
        if cache is not None:
            cache.flush()
    groups = _group(members, known_set)
    hits = sum(m.cached for m in members)
    stats = Stats(len(found), len(members), len(skipped), hits, len(members) - hits,
                  time.perf_counter() - start)  # fmt: skip
    return TriageResult(groups, tuple(skipped), _merge_known(known_set, groups), stats)


def _analyze_all(
    found: list[_Found],
    analyzers: tuple[type[Analyzer], ...],
    fingerprint: str,
    opts: Options,
    cache: TriageCache | None,
    members: list[Member],
    skipped: list[Skipped],
    jobs: int,
) -> None:
    """Cache lookups and writes here, in input order; the analyses in ``jobs`` processes
    (:mod:`.pool`), which hands them back in input order: the result is the serial one."""
    work = partial(_analyze, analyzers=analyzers, opts=opts)
    plan = _plan(found, fingerprint, opts, cache)
    for planned, outcome in pool.ordered(work, plan, jobs, _died):
        if isinstance(planned, Member):
            members.append(planned)
            continue
        if isinstance(planned, Skipped):
            skipped.append(planned)
            continue
        if outcome is None:  # an earlier input of this run had the same key
            hit = cache.get(planned.key) if cache is not None else None
            if hit is not None and planned.sizes_match:
                members.append(planned.member(hit, cached=True))
                continue
            outcome = work(planned.item)
        if isinstance(outcome, str):
            skipped.append(Skipped(str(planned.item.path), outcome))
            continue
        if cache is not None:
            cache.put(planned.key, outcome)
        members.append(planned.member(outcome, cached=False))


@dataclass(frozen=True, slots=True)
class _Planned:
    """An input to analyze, with what is known of it before: kind, time, cache key, notes."""

    item: _Found
    kind: MemberKind
    seen: str
    key: str
    notes: tuple[str, ...]
    sizes_match: bool  # a bundle's artifacts still have their manifest's sizes

    def member(self, analysis: CachedAnalysis, *, cached: bool) -> Member:
        notes = self.notes + analysis.problems
        return Member(str(self.item.path), self.kind, self.seen, analysis, cached, notes)


def _plan(
    found: list[_Found], fingerprint: str, opts: Options, cache: TriageCache | None
) -> Iterator[tuple[Member | Skipped | _Planned, _Found | None]]:
    """Each input in order: skipped (and why), served from the cache, or to analyze (paired
    with itself). An input whose key an earlier one of this run has is paired with None: it
    looks in the cache again once the earlier one's verdict is in, as a serial run would."""
    keys: set[str] = set()
    options = opts.key()
    for item in found:
        try:
            planned = _planned(item, fingerprint, options)
        except Exception as exc:  # reported per input, as analysis errors are
            yield Skipped(str(item.path), _reason(item, exc)), None
            continue
        if isinstance(planned, Skipped):
            yield planned, None
            continue
        item = planned.item
        if cache is not None and planned.key in keys:
            yield planned, None
            continue
        hit = cache.get(planned.key) if cache is not None else None
        if hit is not None and planned.sizes_match:
            yield planned.member(hit, cached=True), None
            continue
        keys.add(planned.key)
        yield planned, item


def _planned(item: _Found, fingerprint: str, options: str) -> _Planned | Skipped:
    """What is known of an input before its analysis (a file is read once for it: its kind,
    key and time), or why it is skipped."""
    if item.classified is None:
        bundle = Bundle.open(item.path)
        seen = _manifest_time(bundle.manifest.created) or _mtime(item.path / MANIFEST)
        key = bundle_key(bundle.manifest, options, fingerprint)
        # A bundle whose artifacts changed size since is analyzed again, which says how.
        return _Planned(item, "bundle", seen, key, (), _sizes_match(bundle))
    if item.classified == "file":
        scanned = scan(item.path, item.follow, options, fingerprint)
        classified = scanned.classified
        if classified.kind is None or scanned.key is None or scanned.mtime is None:
            return Skipped(str(item.path), classified.skip or "not recognised")
        item = _Found(item.path, classified, item.follow)
        seen = _stamp(scanned.mtime)
        return _Planned(item, classified.kind, seen, scanned.key, classified.notes, True)
    return Skipped(str(item.path), item.classified.skip or "not recognised")


def _analyze(
    item: _Found, analyzers: tuple[type[Analyzer], ...], opts: Options
) -> CachedAnalysis | str:
    """One input's analysis, or why it failed (in a worker process, or here)."""
    try:
        inputs, problems = _inputs(item, opts)
        report = analyze_with(inputs, analyzers, problems)
    except Exception as exc:  # one input's failure must not end the triage
        return _reason(item, exc)
    return CachedAnalysis(report.verdict, report.problems, report.partial)


def _reason(item: _Found, exc: Exception) -> str:
    if isinstance(exc, ForensicsError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    log.debug("analysis of %s failed", item.path, exc_info=True)
    return f"analysis failed: {type(exc).__name__}: {exc}".splitlines()[0]


def _died(item: _Found, reason: str) -> str:
    log.warning("analysis of %s failed: %s", item.path, reason)
    return f"analysis failed: {reason}"


def _walk(inputs: Sequence[Path]) -> Iterator[_Found]:
    """Bundles and classified files under ``inputs``, each once, in a stable order. A named
    input is followed if a link; inside directories, only links to bundles are. What is
    neither a bundle nor a regular file (a FIFO, a device, a link) is named with why, never
    opened."""
    seen: set[Path] = set()

    def once(path: Path, real: Path | None = None) -> bool:
        real = real or path.resolve()
        if real in seen:
            return False
        seen.add(real)
        return True

    def refused(path: Path, why: str) -> _Found:
        return _Found(path, Classified(path, None, why))

    for top in inputs:
        if top.is_dir():
            if (top / MANIFEST).exists() or (top / MANIFEST).is_symlink():
                if once(top):
                    yield _Found(top, None)
                continue
            yield from _walk_dir(top, once, refused)
        elif (why := refusal(top)) is not None:
            yield refused(top, why)
        elif once(top):
            yield _Found(top, "file")


def _walk_dir(
    top: Path, once: Callable[[Path, Path | None], bool], refused: Callable[[Path, str], _Found]
) -> Iterator[_Found]:
    """``top``'s tree depth first, names sorted, without recursion: a directory deeper than
    :data:`MAX_DEPTH` below ``top``, one whose path the system cannot open, or one that cannot
    be listed is named, not walked."""
    stack = [(top, 0)]
    while stack:
        here, depth = stack.pop()
        try:
            with os.scandir(here) as listing:
                entries = [(e.name, e.is_dir()) for e in listing]
        except OSError as exc:
            yield refused(here, f"a directory that cannot be listed ({exc.strerror or exc})")
            continue
        real_here = here.resolve()  # a file below that is no link is here, by that name
        below: list[Path] = []
        for d in sorted(name for name, is_dir in entries if is_dir):
            if len(os.fsencode(here / d / MANIFEST)) >= _PATH_MAX:
                yield refused(here / d, "a directory whose path is too long to open (not walked)")
            elif (here / d / MANIFEST).exists() or (here / d / MANIFEST).is_symlink():
                if once(here / d, None):  # a link to a bundle is taken: its manifest says
                    yield _Found(here / d, None)
            elif (here / d).is_symlink():
                yield refused(here / d, "a symbolic link to a directory (not followed)")
            elif depth == MAX_DEPTH:
                yield refused(
                    here / d, f"a directory more than {MAX_DEPTH} levels down (not walked)"
                )
            else:
                below.append(here / d)
        for name in sorted(name for name, is_dir in entries if not is_dir):
            path = here / name
            why = refusal(path, follow=False)
            if why is not None:
                yield refused(path, why)
            elif once(path, real_here / name):
                yield _Found(path, "file", follow=False)
        stack.extend((d, depth + 1) for d in reversed(below))


def _inputs(item: _Found, opts: Options) -> tuple[Inputs, list[str]]:
    """``gather``'s inputs for an item, and the problems already found in them (a console
    larger than analysis reads among them)."""
    dirs = opts.debuginfo_dirs
    assert item.classified != "file"  # analyzed only once planned
    if item.classified is None or item.classified.kind == "vmcore":
        return gather(item.path, debuginfo_dirs=dirs, cpu_vendor=opts.cpu_vendor)
    kind = item.classified.kind
    qemu_log = item.path if kind in ("qemu-log", "qemu-log+console") else None
    console = item.path if kind in ("console", "qemu-log+console") else None
    inputs, problems = gather(
        None, qemu_log=qemu_log, console=console, debuginfo_dirs=dirs, cpu_vendor=opts.cpu_vendor
    )
    return inputs, problems


def _sizes_match(bundle: Bundle) -> bool:
    """A cheap check that a cached bundle's artifacts are still there, at their sizes."""
    for art in bundle.manifest.artifacts:
        try:
            if (bundle.path / art.path).stat().st_size != art.size:
                return False
        except OSError:
            return False
    return True


def _group(members: list[Member], known: dict[str, KnownSignature]) -> tuple[Group, ...]:
    by_signature: dict[str, list[Member]] = {}
    for member in members:
        by_signature.setdefault(member.analysis.verdict.signature, []).append(member)
    groups = [
        Group(sig, tuple(sorted(ms, key=lambda m: (m.seen, m.path))), sig not in known)
        for sig, ms in by_signature.items()
    ]
    return tuple(sorted(groups, key=lambda g: (not g.new, -len(g.members), g.signature)))


def _merge_known(
    known: dict[str, KnownSignature], groups: tuple[Group, ...]
) -> tuple[KnownSignature, ...]:
    merged = dict(known)
    for g in groups:
        old = merged.get(g.signature)
        first = min(g.first_seen, old.first_seen) if old else g.first_seen
        last = max(g.last_seen, old.last_seen) if old else g.last_seen
        cause = g.representative.analysis.verdict.cause
        merged[g.signature] = KnownSignature(g.signature, cause, first, last)
    return tuple(sorted(merged.values(), key=lambda k: k.signature))


def load_known(path: Path) -> dict[str, KnownSignature]:
    """The signatures of an earlier triage record: its ``known`` list (which includes its
    groups)."""
    raw = read_input(path, MAX_RECORD_BYTES)
    if raw.left:
        raise InputError(f"{path} is {raw.size} bytes: larger than a triage record may be "
                         f"({MAX_RECORD_BYTES})")  # fmt: skip
    doc = parse_json(raw.data, path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{path} is not a triage record", "give the file of a triage --json")
    version = doc.get("schema_version")
    if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise InputError(
            f"{path} has triage schema version {version!r}",
            f"this kvmha-forensics reads versions 1 to {SCHEMA_VERSION}: upgrade it",
        )
    entries = doc.get("known")
    if not isinstance(entries, list):
        raise InputError(f"{path} has no 'known' list")
    found: dict[str, KnownSignature] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("signature"), str):
            raise InputError(f"{path}: a 'known' entry lacks its signature")
        sig = entry["signature"]
        found[sig] = KnownSignature(
            sig, str(entry.get("cause")), str(entry.get("first_seen")),
            str(entry.get("last_seen")),
        )  # fmt: skip
    return found


def _mtime(path: Path) -> str:
    return _stamp(path.stat().st_mtime)


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime(TIME_FORMAT)


def _manifest_time(created: str) -> str | None:
    try:
        when = datetime.fromisoformat(created)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime(TIME_FORMAT)
