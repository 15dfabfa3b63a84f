"""Chunked checksums of large artifacts, so that every core hashes (docs/bundle-format.md).

A chunked artifact's manifest entry names an algorithm and lists the digest of each
``size``-byte chunk of the file as written (holes read as zeros; the last chunk may be
shorter), and its ``sha256`` is the sha256 of those digests, concatenated as bytes: the
artifact's identity. Capture writes BLAKE3 chunks (:data:`WRITTEN`: 3-4x sha256 per core here,
docs/performance.md); bundles of schema version 2 have sha256 chunks, verified as before. A
writer hashes chunk by chunk as it writes (:class:`ChunkHasher`); ``bundle verify`` hashes
every chunk again, on every core (:func:`bad_chunks`). Both hashes let go of the GIL on large
buffers, so threads hash side by side.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, cast

from ..input_files import open_input

if TYPE_CHECKING:  # the thread pool is imported where it runs: analysis never hashes chunks
    from concurrent.futures import Future

Algorithm = Literal["sha256", "blake3"]
WRITTEN: Algorithm = "blake3"

MIN_CHUNK = 16 << 20
MAX_CHUNKS = 4096  # the chunk size doubles past it: the manifest stays small
UNIT = 4096  # a chunk size is a multiple of it
MAX_CHUNK = 1 << 40
LANES = 2
READ = 1 << 20
_HEX = re.compile(r"[0-9a-f]{64}")


class Digest(Protocol):
    """What :func:`new_digest` gives: hashlib's sha256, or a blake3 hasher."""

    def update(self, data: memoryview, /) -> object: ...
    def hexdigest(self) -> str: ...


def new_digest(algorithm: Algorithm) -> Digest:
    """An empty hasher of ``algorithm``; blake3 is imported here only, where it hashes."""
    if algorithm == "blake3":
        from blake3 import blake3

        return blake3()
    return hashlib.sha256()


@dataclass(frozen=True, slots=True)
class Chunks:
    """The chunk size, each chunk's digest (hex) in file order, and their algorithm."""

    size: int
    digests: tuple[str, ...]
    algorithm: Algorithm = WRITTEN

    def identity(self) -> str:
        """The sha256 of the chunk digests, concatenated as bytes."""
        return hashlib.sha256(b"".join(bytes.fromhex(d) for d in self.digests)).hexdigest()

    def span(self, index: int, total: int) -> tuple[int, int]:
        """Chunk ``index``'s byte range ``[start, end)`` in a file of ``total`` bytes."""
        start = index * self.size
        return start, min(start + self.size, total)

    def to_json(self) -> dict[str, object]:
        """Version 2's form for sha256 (no ``algorithm``), else the algorithm and its list."""
        named = {} if self.algorithm == "sha256" else {"algorithm": self.algorithm}
        return {"size": self.size, **named, self.algorithm: list(self.digests)}

    @classmethod
    def from_json(cls, doc: object, total: int) -> Chunks:
        """Validate a manifest's ``chunks`` for a ``total``-byte artifact (ValueError: why)."""
        if not isinstance(doc, dict):
            raise ValueError("'chunks' is not an object")
        named = doc.get("algorithm", "sha256")
        if "algorithm" in doc and named != "blake3":
            raise ValueError(f"chunk algorithm {named!r} is not 'blake3' (sha256 chunks, "
                             "schema version 2, name none)")  # fmt: skip
        algorithm = cast(Algorithm, named)
        size, digests = doc.get("size"), doc.get(algorithm)
        if type(size) is not int or not UNIT <= size <= MAX_CHUNK or size % UNIT:
            raise ValueError(f"chunk size {size!r} is not a multiple of {UNIT} "
                             f"from {UNIT} to {MAX_CHUNK}")  # fmt: skip
        if not isinstance(digests, list) or not all(
            isinstance(d, str) and _HEX.fullmatch(d) for d in digests
        ):
            raise ValueError(f"the chunk digests are not a list of {algorithm} hex strings")
        want = -(-total // size)
        if len(digests) != want:
            raise ValueError(f"{len(digests)} chunk digests for {total} bytes in chunks of "
                             f"{size}: {want} expected")  # fmt: skip
        return cls(size, tuple(digests), algorithm)


def chunk_size(total: int) -> int:
    """The chunk size for a ``total``-byte file: :data:`MIN_CHUNK`, doubled until the file
    has at most :data:`MAX_CHUNKS` chunks."""
    size = MIN_CHUNK
    while -(-total // size) > MAX_CHUNKS:
        size *= 2
    return size


class ChunkHasher:
    """Hashes a file's bytes handed over in file order: chunk ``i`` on lane ``i %``
    :data:`LANES` (one thread each), so a chunk is hashed in order and neighbouring chunks
    side by side. The caller keeps each buffer unchanged until its futures are done."""

    def __init__(self, chunk: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.chunk = chunk
        self.offset = 0
        self.digests: list[Digest] = []
        self.lanes = [ThreadPoolExecutor(1, thread_name_prefix=f"chunk-hash-{i}")
                      for i in range(LANES)]  # fmt: skip

    def update(self, view: memoryview) -> list[Future[None]]:
        """Hash ``view`` as the file's next bytes; the futures of its pieces."""
        futures, at = [], 0
        while at < len(view):
            index, within = divmod(self.offset, self.chunk)
            if within == 0:
                self.digests.append(new_digest(WRITTEN))
            n = min(len(view) - at, self.chunk - within)
            lane = self.lanes[index % LANES]
            futures.append(lane.submit(_update, self.digests[index], view[at : at + n]))
            at += n
            self.offset += n
        return futures

    def result(self) -> Chunks:
        """The chunks, once every future :meth:`update` gave is done."""
        return Chunks(self.chunk, tuple(d.hexdigest() for d in self.digests), WRITTEN)

    def close(self) -> None:
        """Stop the lanes, dropping queued work."""
        for lane in self.lanes:
            lane.shutdown(cancel_futures=True)


def _update(digest: Digest, view: memoryview) -> None:
    digest.update(view)


def hash_file(fd: int, total: int) -> Chunks:
    """The chunks of the first ``total`` bytes of ``fd`` (readable), hashed on every lane."""
    from concurrent.futures import ThreadPoolExecutor

    size = chunk_size(total)
    spans = [Chunks(size, ()).span(i, total) for i in range(-(-total // size))]
    with ThreadPoolExecutor(LANES, thread_name_prefix="chunk-hash") as pool:
        digests = tuple(pool.map(lambda span: _digest(WRITTEN, fd, *span), spans))
    return Chunks(size, digests, WRITTEN)


def bad_chunks(path: Path, chunks: Chunks, total: int) -> list[int]:
    """The indices of the chunks of the regular file ``path`` (``total`` bytes, not through
    a link) that do not match their digest, hashed on every core (at most eight)."""
    from concurrent.futures import ThreadPoolExecutor

    fd = open_input(path, follow=False)
    try:
        workers = min(len(os.sched_getaffinity(0)), 8)
        with ThreadPoolExecutor(workers, thread_name_prefix="chunk-verify") as pool:
            got = list(pool.map(lambda i: _digest(chunks.algorithm, fd, *chunks.span(i, total)),
                                range(len(chunks.digests))))  # fmt: skip
    finally:
        os.close(fd)
    return [i for i, (mine, theirs) in enumerate(zip(got, chunks.digests, strict=True))
            if mine != theirs]  # fmt: skip


def _digest(algorithm: Algorithm, fd: int, start: int, end: int) -> str:
    """The digest of bytes ``[start, end)`` of ``fd`` (a shorter file hashes what it has)."""
    digest = new_digest(algorithm)
    view = memoryview(bytearray(READ))
    while start < end:
        n = os.preadv(fd, [view[: min(READ, end - start)]], start)
        if n == 0:
            break
        digest.update(view[:n])
        start += n
    return digest.hexdigest()
