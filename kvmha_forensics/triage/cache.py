"""The triage cache: one verdict per analyzed input, keyed by what the input holds.

A bundle's key is its manifest's artifact checksums (plus the manifest facts analysis reads);
a file's key is its content's SHA-256. Both also cover the analysis options and the code
fingerprint (tool version, report schema, the analyzers and their source files), so a new
version or a changed analyzer never serves an old verdict. Entries live under
``$XDG_CACHE_HOME/kvmha-forensics/triage/cache.sqlite`` (directory 0700, file 0600: verdicts
quote guest memory; one SQLite file, because creating one small file per input costs more than
analyzing it); an entry that cannot be read or does not fit the schema is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import cast

from .. import __version__
from ..analysis import Analyzer, Evidence, version_of
from ..capture.bundle import Manifest
from ..report.model import REPORT_SCHEMA_VERSION, Verdict
from ..vocabulary import CAUSES, Cause
from ..xdg import xdg_cache

log = logging.getLogger(__name__)

ENTRY_VERSION = 1
DB_NAME = "cache.sqlite"


@dataclass(frozen=True, slots=True)
class CachedAnalysis:
    """What triage keeps of one analysis: the verdict and what was wrong with the input."""

    verdict: Verdict
    problems: tuple[str, ...]
    partial: bool

    def to_json(self) -> dict[str, object]:
        return {
            "version": ENTRY_VERSION,
            "verdict": self.verdict.to_json(),
            "problems": list(self.problems),
            "partial": self.partial,
        }

    @classmethod
    def from_json(cls, doc: object) -> CachedAnalysis:
        """Load an entry; anything off-schema raises ``ValueError``."""
        if not isinstance(doc, dict) or doc.get("version") != ENTRY_VERSION:
            raise ValueError("not a triage cache entry of this version")
        problems, partial = doc.get("problems"), doc.get("partial")
        if not isinstance(problems, list) or not isinstance(partial, bool):
            raise ValueError("problems or partial missing")
        return cls(verdict_from_json(doc.get("verdict")), tuple(map(str, problems)), partial)


def verdict_from_json(doc: object) -> Verdict:
    """The inverse of :meth:`Verdict.to_json`; raises ``ValueError`` on anything else."""
    if not isinstance(doc, dict):
        raise ValueError("verdict is not an object")
    try:
        cause = doc["cause"]
        if cause not in CAUSES:
            raise ValueError(f"unknown cause {cause!r}")
        evidence = tuple(
            Evidence(str(e["artifact"]), _opt_str(e["locator"]), _opt_str(e["excerpt"]))
            for e in cast(list[dict[str, object]], doc["evidence"])
        )
        crashed = doc["crashed_cpu"]
        return Verdict(
            cast(Cause, cause),
            str(doc["summary"]),
            _opt_str(doc["culprit"]),
            str(doc["signature"]),
            float(doc["confidence"]),
            None if crashed is None else int(crashed),
            evidence,
            _opt_str(doc["analyzer"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"verdict: {type(exc).__name__}: {exc}") from exc


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


#: Libraries whose upgrade can change a verdict: capstone decodes, drgn reads the dump.
LIBRARIES = ("capstone", "drgn")


def _library_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


@cache
def code_fingerprint(analyzers: tuple[type[Analyzer], ...]) -> str:
    """Tool version, report schema, capstone and drgn versions, each analyzer's name and
    version, and each analyzer's and the package's source files (name, size, mtime): changing
    any of them retires every cache entry."""
    parts = [__version__, str(REPORT_SCHEMA_VERSION)]
    parts += [f"{lib}=={_library_version(lib)}" for lib in LIBRARIES]
    sources = set(Path(__file__).parents[1].rglob("*.py"))
    for cls in analyzers:
        parts.append(f"{cls.__module__}:{cls.__qualname__}:{cls.name}@{version_of(cls)}")
        module_file = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if module_file:
            sources.add(Path(module_file))
    for path in sorted(sources):
        try:
            st = path.stat()
        except OSError:
            continue
        parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def bundle_key(manifest: Manifest, options: str, fingerprint: str) -> str:
    """A bundle's key: its artifacts' checksums and the manifest facts analysis reads."""
    doc = {
        "artifacts": sorted([a.kind, a.path, a.size, a.sha256] for a in manifest.artifacts),
        "status": manifest.status,
        "reasons": list(manifest.reasons),
        "kvm_module": manifest.host.get("kvm_module"),  # it decides the exit-reason vendor
        "options": options,
        "code": fingerprint,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def key_prefix(kind: str, options: str, fingerprint: str) -> bytes:
    """What a file's key hashes before its content (:func:`.scan.scan`): its kind, the
    options, the code."""
    return f"{kind}\0{options}\0{fingerprint}\0".encode()


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/kvmha-forensics/triage`` (``~/.cache`` when unset)."""
    return xdg_cache() / "triage"


@dataclass
class TriageCache:
    """Verdicts by key in one SQLite file, ``cache.sqlite`` under ``root``.

    Writes are batched: :meth:`flush` commits them (triage calls it at the end). A database
    that cannot be opened or read is logged and the cache is off for the run; a file that is
    not a database is replaced.
    """

    root: Path
    _db: sqlite3.Connection | None = field(default=None, init=False, repr=False)
    _broken: bool = field(default=False, init=False, repr=False)

    @property
    def path(self) -> Path:
        return self.root / DB_NAME

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is not None or self._broken:
            return self._db
        try:
            _private_dir(self.root)
            for attempt in range(2):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                os.close(fd)
                db = sqlite3.connect(self.path, timeout=30)
                try:
                    db.execute(
                        "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, doc TEXT)"
                    )
                    self._db = db
                    break
                except sqlite3.DatabaseError as exc:
                    db.close()
                    if attempt:
                        raise
                    log.warning("replacing the unreadable triage cache %s: %s", self.path, exc)
                    self.path.unlink()
        except (OSError, sqlite3.Error) as exc:
            log.warning("triage cache %s unusable, analyzing without it: %s", self.path, exc)
            self._broken = True
        return self._db

    def get(self, key: str) -> CachedAnalysis | None:
        """The entry for ``key``; ``None`` when absent or corrupt (the next put replaces it)."""
        db = self._conn()
        if db is None:
            return None
        try:
            row = db.execute("SELECT doc FROM entries WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            log.warning("cannot read the triage cache %s: %s", self.path, exc)
            return None
        if row is None:
            return None
        try:
            return CachedAnalysis.from_json(json.loads(row[0]))
        except (TypeError, ValueError) as exc:
            log.info("ignoring the corrupt triage cache entry %s: %s", key, exc)
            return None

    def put(self, key: str, entry: CachedAnalysis) -> None:
        db = self._conn()
        if db is None:
            return
        try:
            db.execute(
                "INSERT OR REPLACE INTO entries (key, doc) VALUES (?, ?)",
                (key, json.dumps(entry.to_json(), sort_keys=True)),
            )
        except sqlite3.Error as exc:
            log.warning("cannot write the triage cache %s: %s", self.path, exc)

    def flush(self) -> None:
        """Commit what was put; a cache that cannot be written is logged and ignored."""
        if self._db is None:
            return
        try:
            self._db.commit()
        except sqlite3.Error as exc:
            log.warning("cannot write the triage cache %s: %s", self.path, exc)


def _private_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
