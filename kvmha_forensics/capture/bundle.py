"""The bundle: a directory that holds everything a postmortem needs, and its manifest.

The bundle is the contract between capture and analysis (docs/bundle-format.md): another
host, a year later, with a newer version, must be able to read and verify it. It is built
under a hidden temporary name and renamed once whole, so a final name never holds a half
bundle; the directory is 0700 and every file 0600, created without following symlinks.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from .. import __version__
from ..errors import InputError
from ..input_files import opened, parse_json, plain_relative, read_input, refusal
from ..limits import MAX_CONSOLE_BYTES, MAX_JSON_BYTES, MAX_TEXT_BYTES
from ..private import rename_noreplace
from ..serial import to_json
from ..vocabulary import JSONObject
from .chunksum import Chunks, bad_chunks

FORMAT = "kvmha-forensics-bundle"
SCHEMA_VERSION = 3  # read: 1 to 3; written: 3 where an artifact has blake3 chunks (else 1)
MANIFEST = "manifest.json"
HASH_CHUNK = 1 << 20
HASH_IN_ANALYSIS = MAX_CONSOLE_BYTES  # analysis hashes no artifact larger than it reads

Status = Literal["complete", "incomplete"]
StepStatus = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class Artifact:
    """One file of the bundle: where, what kind, how big, its sha256 (with ``chunks``: the
    sha256 of its chunks' digests, :mod:`.chunksum`)."""

    path: str
    kind: str
    size: int
    sha256: str
    description: str
    chunks: Chunks | None = None

    def to_json(self) -> JSONObject:
        doc = to_json(self)
        if self.chunks is None:
            del doc["chunks"]
        return doc


@dataclass(frozen=True, slots=True)
class Step:
    """One capture step, timed; a failed or skipped step says why."""

    name: str
    status: StepStatus
    seconds: float
    detail: str | None = None

    def to_json(self) -> JSONObject:
        return to_json(self, seconds=round(self.seconds, 6))


@dataclass(frozen=True, slots=True)
class Manifest:
    """``manifest.json``: what the bundle is, how it was made, what it holds."""

    schema_version: int
    tool_version: str
    created: str
    host: dict[str, str]
    guest: dict[str, object]
    status: Status
    reasons: tuple[str, ...]
    steps: tuple[Step, ...]
    artifacts: tuple[Artifact, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "schema_version": self.schema_version,
            "tool": {"name": "kvmha-forensics", "version": self.tool_version},
            "created": self.created,
            "host": self.host,
            "guest": self.guest,
            "status": self.status,
            "reasons": list(self.reasons),
            "steps": [s.to_json() for s in self.steps],
            "artifacts": [a.to_json() for a in self.artifacts],
        }

    @classmethod
    def from_json(cls, doc: object, where: Path) -> Manifest:
        """Validate and load; any deviation from the schema is an :class:`InputError`."""

        def bad(what: str) -> InputError:
            return InputError(f"{where} is not a valid bundle manifest: {what}")

        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise bad(f"'format' is not {FORMAT!r}")
        version = doc.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
            raise InputError(
                f"{where} has bundle schema version {version!r}",
                f"this kvmha-forensics reads versions 1 to {SCHEMA_VERSION}: upgrade it",
            )
        try:
            tool = cast(dict[str, str], doc["tool"])
            steps = tuple(_step(s) for s in cast(list[dict[str, object]], doc["steps"]))
            listed = cast(list[dict[str, object]], doc["artifacts"])
            artifacts = tuple(_artifact(a, bad) for a in listed)
            status = doc["status"]
            if status not in ("complete", "incomplete"):
                raise bad(f"status {status!r}")
            return cls(
                schema_version=version,
                tool_version=str(tool["version"]),
                created=str(doc["created"]),
                host=dict(cast(dict[str, str], doc["host"])),
                guest=dict(cast(dict[str, object], doc["guest"])),
                status=status,
                reasons=tuple(str(r) for r in cast(list[object], doc["reasons"])),
                steps=steps,
                artifacts=artifacts,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise bad(f"{type(exc).__name__}: {exc}") from exc


def _artifact(doc: dict[str, object], bad: Callable[[str], InputError]) -> Artifact:
    path = str(plain_relative(str(doc["path"])))
    size = int(cast(int, doc["size"]))
    chunks = None
    if "chunks" in doc:
        try:
            chunks = Chunks.from_json(doc["chunks"], size)
        except ValueError as exc:
            raise bad(f"artifact {path}: {exc}") from None
    return Artifact(path, str(doc["kind"]), size, str(doc["sha256"]),
                    str(doc.get("description", "")), chunks)  # fmt: skip


def _version(art: Artifact) -> int:
    """The least schema version that can say what ``art``'s checksum is."""
    if art.chunks is None:
        return 1
    return 2 if art.chunks.algorithm == "sha256" else 3


def _step(doc: dict[str, object]) -> Step:
    status = doc["status"]
    if status not in ("ok", "failed", "skipped"):
        raise ValueError(f"step status {status!r}")
    detail = doc.get("detail")
    return Step(str(doc["name"]), status, float(cast(float, doc["seconds"])),
                None if detail is None else str(detail))  # fmt: skip


def sha256_file(path: Path, prefix: bytes = b"", follow: bool = True) -> str:
    """The SHA-256 of ``prefix`` then the file's content, streamed; the file must be a regular
    one (:func:`..input_files.open_input`)."""
    digest = hashlib.sha256(prefix)
    with opened(path, follow) as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def host_info() -> dict[str, str]:
    vendor = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(
                    line.split(":", 1)[1].strip(), "unknown"
                )
                break
    except OSError:
        pass
    uname = os.uname()
    return {
        "hostname": socket.gethostname(),
        "kernel": uname.release,
        "machine": uname.machine,
        "cpu_vendor": vendor,
        "kvm_module": kvm_module(),
    }


# The capture host's KVM module names the exit-reason family; PVM and unknown hosts get none.
VENDOR_OF_KVM: dict[str, Literal["intel", "amd"]] = {"kvm_intel": "intel", "kvm_amd": "amd"}


def kvm_module() -> str:
    """Which KVM backs guests here: kvm_intel (VMX), kvm_amd (SVM), kvm_pvm (PVM), or none.
    Exit reasons are named after it, not after the CPU: PVM has exit reasons of its own."""
    for name in ("kvm_intel", "kvm_amd", "kvm_pvm"):
        if Path("/sys/module", name).exists():
            return name
    return "none"


@dataclass
class BundleWriter:
    """Builds a bundle under ``.NAME.partial-*`` in ``parent``; :meth:`finish` publishes it.

    Every name is taken relative to a descriptor on ``parent``, opened once: a directory or a
    link swapped in at ``parent``'s path meanwhile changes nothing."""

    parent: Path
    name: str
    guest: dict[str, object] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    tmp: Path = field(init=False)
    _parent_fd: int = field(init=False)
    _tmp_fd: int = field(init=False)

    def __post_init__(self) -> None:
        tmp = f".{self.name}.partial-{secrets.token_hex(4)}"
        self._parent_fd = os.open(self.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.mkdir(tmp, 0o700, dir_fd=self._parent_fd)
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            self._tmp_fd = os.open(tmp, flags, dir_fd=self._parent_fd)
            fcntl.flock(self._tmp_fd, fcntl.LOCK_EX)  # in use: partials.prune leaves it alone
        except OSError:
            os.close(self._parent_fd)
            raise
        self.tmp = self.parent / tmp

    def create(self, rel: str, readable: bool = False) -> int:
        """A new file's descriptor (0600, never following a symlink, never overwriting)."""
        access = os.O_RDWR if readable else os.O_WRONLY
        flags = access | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(plain_relative(rel), flags, 0o600, dir_fd=self._tmp_fd)

    def add(
        self, rel: str, kind: str, description: str, sha256: str | None = None,
        chunks: Chunks | None = None,
    ) -> Artifact:  # fmt: skip
        """Record a file already written under ``rel``, with its sha256 or its chunks'."""
        size = os.stat(plain_relative(rel), dir_fd=self._tmp_fd, follow_symlinks=False).st_size
        if chunks is not None:
            sha256 = chunks.identity()
        artifact = Artifact(
            rel,
            kind,
            size,
            sha256 or sha256_file(self.tmp / rel, follow=False),
            description,
            chunks,
        )
        self.artifacts.append(artifact)
        return artifact

    def write_bytes(self, rel: str, data: bytes, kind: str, description: str) -> Artifact:
        fd = self.create(rel)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return self.add(rel, kind, description, hashlib.sha256(data).hexdigest())

    def write_json(self, rel: str, obj: object, kind: str, description: str) -> Artifact:
        text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
        return self.write_bytes(rel, text.encode(), kind, description)

    @contextmanager
    def step(self, name: str) -> Iterator[StepRecorder]:
        """Time a step; an exception from it is recorded (and re-raised) as its failure."""
        recorder = StepRecorder()
        start = time.perf_counter()
        try:
            yield recorder
        except BaseException as exc:
            detail = str(exc) or type(exc).__name__
            self.steps.append(Step(name, "failed", time.perf_counter() - start, detail))
            self.reasons.append(f"{name}: {detail}")
            raise
        status: StepStatus = "skipped" if recorder.skipped else "ok"
        self.steps.append(Step(name, status, time.perf_counter() - start, recorder.detail))
        if recorder.skipped and recorder.incomplete:
            self.reasons.append(f"{name}: {recorder.detail}")

    def manifest(self, status: Status) -> Manifest:
        version = max((_version(a) for a in self.artifacts), default=1)
        return Manifest(
            version, __version__, self.created, host_info(), self.guest, status,
            tuple(self.reasons), tuple(self.steps), tuple(self.artifacts),
        )  # fmt: skip

    def finish(self) -> tuple[Path, Manifest]:
        """Write the manifest, sync, and rename to the final name. Returns (path, manifest).

        Out of space for the manifest, the memory dump is given up (the bundle is then
        incomplete and says why); when even that is not enough, the partial directory is
        removed and an :class:`InputError` says so. Either way no hidden partial is left."""
        try:
            try:
                manifest = self._write_manifest()
            except OSError as exc:
                if exc.errno != errno.ENOSPC or not self._drop_memory(exc):
                    raise
                manifest = self._write_manifest()
            final = self._publish()
        except OSError as exc:
            self.abandon()
            raise InputError(
                f"cannot finish the bundle in {self.parent}: {exc.strerror}",
                "free some space there, or choose another --out",
            ) from exc
        os.fsync(self._parent_fd)
        self._close()
        return final, manifest

    def _write_manifest(self) -> Manifest:
        manifest = self.manifest("incomplete" if self.reasons else "complete")
        fd = self.create(MANIFEST)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(manifest.to_json(), f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            os.unlink(MANIFEST, dir_fd=self._tmp_fd)
            raise
        return manifest

    def _drop_memory(self, exc: OSError) -> bool:
        """Delete the memory dump to make room; False when there is none."""
        dumps = [a for a in self.artifacts if a.kind.startswith("memory")]
        for art in dumps:
            os.unlink(art.path, dir_fd=self._tmp_fd)
            self.artifacts.remove(art)
            self.reasons.append(f"memory: {art.path} deleted: {exc.strerror} for the manifest")
        return bool(dumps)

    def _publish(self) -> Path:
        """Rename the partial directory to the first free name of ``NAME``, ``NAME.2``, …:
        whatever is at a name (a directory, a file, a dangling link) is never replaced."""
        for suffix in range(1, 1000):
            name = self.name if suffix == 1 else f"{self.name}.{suffix}"
            try:
                rename_noreplace(self.tmp.name, name, self._parent_fd)
            except FileExistsError:
                continue
            return self.parent / name
        raise OSError(errno.EEXIST, f"{self.name} and 998 more names are taken")

    def abandon(self) -> None:
        """Remove the partial directory and what it holds."""
        for child in os.listdir(self._tmp_fd):
            os.unlink(child, dir_fd=self._tmp_fd)
        os.rmdir(self.tmp.name, dir_fd=self._parent_fd)
        self._close()

    def _close(self) -> None:
        os.close(self._tmp_fd)
        os.close(self._parent_fd)


@dataclass
class StepRecorder:
    """What a step says about itself: a detail, or that it was skipped (and whether that
    leaves the bundle incomplete)."""

    detail: str | None = None
    skipped: bool = False
    incomplete: bool = False

    def skip(self, why: str, *, incomplete: bool = False) -> None:
        self.skipped, self.detail, self.incomplete = True, why, incomplete


@dataclass(frozen=True, slots=True)
class Bundle:
    """A published bundle, opened for reading."""

    path: Path
    manifest: Manifest

    @classmethod
    def open(cls, path: Path) -> Bundle:
        """Read and validate the manifest (bounded, not through a link): :class:`InputError`
        when it is missing, too large, not JSON or not a manifest."""
        where = path / MANIFEST
        if not path.is_dir():
            raise InputError(f"{path} is not a bundle directory", "give the path capture printed")
        if refusal(where, follow=False) == "missing":
            raise InputError(f"{path} is not a bundle ({MANIFEST} missing)")
        raw = read_input(where, MAX_JSON_BYTES, follow=False)
        if raw.left:
            raise InputError(f"{where} is {raw.size} bytes: larger than a manifest may be "
                             f"({MAX_JSON_BYTES})")  # fmt: skip
        return cls(path, Manifest.from_json(parse_json(raw.data, where), where))

    def artifact(self, kind: str) -> Artifact | None:
        return next((a for a in self.manifest.artifacts if a.kind == kind), None)

    def file(self, kind: str) -> Path | None:
        found = self.artifact(kind)
        return self.path / found.path if found else None

    def unusable(self) -> dict[str, str]:
        """Artifacts that cannot be read as what they claim, and why: missing, or not a
        regular file (a FIFO, a device, a directory, a link: links are never followed, nor
        are linked directories on the way)."""
        found: dict[str, str] = {}
        for art in self.manifest.artifacts:
            parts = Path(art.path).parts
            for depth in range(1, len(parts) + 1):
                why = refusal(self.path.joinpath(*parts[:depth]), follow=False)
                if why is not None and (depth == len(parts) or not why.startswith("a directory")):
                    found[art.path] = why
                    break
        return found

    def read_json(self, kind: str) -> object | None:
        path = self.file(kind)
        if path is None:
            return None
        raw = read_input(path, MAX_JSON_BYTES, follow=False)
        if raw.left:
            raise InputError(f"bundle artifact {path.name} is larger than {MAX_JSON_BYTES} bytes")
        return parse_json(raw.data, path)

    def read_text(self, kind: str) -> str | None:
        path = self.file(kind)
        if path is None:
            return None
        return read_input(path, MAX_TEXT_BYTES, follow=False).data.decode(errors="replace")

    def verify(self, hash_memory: bool = True) -> list[str]:
        """Every problem found re-checking sizes and checksums (empty when all is well).

        ``hash_memory=False`` (analysis) checks sizes only for the memory dump and for any
        artifact larger than :data:`HASH_IN_ANALYSIS`: re-hashing gigabytes would cost more
        than the analysis itself, which reads at most that much of a text artifact
        (``bundle verify`` hashes every byte; a chunked artifact's chunks on every core)."""
        unusable = self.unusable()
        problems = [f"{rel}: {why}" for rel, why in unusable.items()]
        for art in self.manifest.artifacts:
            if art.path in unusable:
                continue
            path = self.path / art.path
            size = path.stat(follow_symlinks=False).st_size
            if size != art.size:
                problems.append(f"{art.path}: {size} bytes, the manifest says {art.size}")
            elif hash_memory or (not art.kind.startswith("memory") and size <= HASH_IN_ANALYSIS):
                problems += _hash_problems(path, art)
        listed = {Path(a.path).parts[0] for a in self.manifest.artifacts} | {MANIFEST}
        problems += [f"{p.name}: not in the manifest" for p in self.path.iterdir()
                     if p.name not in listed]  # fmt: skip
        return problems


MAX_NAMED_CHUNKS = 8


def _hash_problems(path: Path, art: Artifact) -> list[str]:
    """What re-hashing ``art`` at ``path`` finds: the whole file, or each chunk (named by its
    byte range) and the chunk list against the artifact's sha256."""
    if art.chunks is None:
        same = sha256_file(path, follow=False) == art.sha256
        return [] if same else [f"{art.path}: does not match its sha256"]
    found = []
    if art.chunks.identity() != art.sha256:
        found.append(f"{art.path}: its chunk digests do not match its sha256")
    bad = bad_chunks(path, art.chunks, art.size)
    count = len(art.chunks.digests)
    for index in bad[:MAX_NAMED_CHUNKS]:
        start, end = art.chunks.span(index, art.size)
        found.append(f"{art.path}: bytes {start}-{end - 1} (chunk {index + 1} of {count}) do "
                     f"not match their {art.chunks.algorithm}")  # fmt: skip
    if len(bad) > MAX_NAMED_CHUNKS:
        found.append(f"{art.path}: {len(bad) - MAX_NAMED_CHUNKS} more chunks do not match")
    return found
