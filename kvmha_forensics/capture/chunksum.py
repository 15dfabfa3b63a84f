"""Chunked checksums of large artifacts, so that every core hashes (docs/bundle-format.md).

A chunked artifact's manifest entry lists the sha256 of each ``size``-byte chunk of the file
as written (holes read as zeros; the last chunk may be shorter), and its ``sha256`` is the
sha256 of those digests, concatenated as bytes: the artifact's identity. A writer hashes
chunk by chunk as it writes (:class:`ChunkHasher`); ``bundle verify`` hashes every chunk
again, on every core (:func:`bad_chunks`). ``hashlib`` lets go of the GIL on large buffers,
so threads hash side by side.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..input_files import open_input

if TYPE_CHECKING:  # the thread pool is imported where it runs: analysis never hashes chunks
    from concurrent.futures import Future

MIN_CHUNK = 16 << 20
MAX_CHUNKS = 4096  # the chunk size doubles past it: the manifest stays small
UNIT = 4096  # a chunk size is a multiple of it
MAX_CHUNK = 1 << 40
LANES = 2
READ = 1 << 20
_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Chunks:
    """The chunk size and each chunk's sha256 (hex), in file order."""

    size: int
    sha256: tuple[str, ...]

    def identity(self) -> str:
        """The sha256 of the chunk digests, concatenated as bytes."""
        return hashlib.sha256(b"".join(bytes.fromhex(d) for d in self.sha256)).hexdigest()

    def span(self, index: int, total: int) -> tuple[int, int]:
        """Chunk ``index``'s byte range ``[start, end)`` in a file of ``total`` bytes."""
        start = index * self.size
        return start, min(start + self.size, total)

    def to_json(self) -> dict[str, object]:
        return {"size": self.size, "sha256": list(self.sha256)}

    @classmethod
    def from_json(cls, doc: object, total: int) -> Chunks:
        """Validate a manifest's ``chunks`` for a ``total``-byte artifact (ValueError: why)."""
        if not isinstance(doc, dict):
            raise ValueError("'chunks' is not an object")
        size, digests = doc.get("size"), doc.get("sha256")
        if type(size) is not int or not UNIT <= size <= MAX_CHUNK or size % UNIT:
            raise ValueError(f"chunk size {size!r} is not a multiple of {UNIT} "
                             f"from {UNIT} to {MAX_CHUNK}")  # fmt: skip
        if not isinstance(digests, list) or not all(
            isinstance(d, str) and _HEX.fullmatch(d) for d in digests
        ):
            raise ValueError("the chunk digests are not a list of sha256 hex strings")
        want = -(-total // size)
        if len(digests) != want:
            raise ValueError(f"{len(digests)} chunk digests for {total} bytes in chunks of "
                             f"{size}: {want} expected")  # fmt: skip
        return cls(size, tuple(digests))


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
        self.digests: list[hashlib._Hash] = []
        self.lanes = [ThreadPoolExecutor(1, thread_name_prefix=f"chunk-hash-{i}")
                      for i in range(LANES)]  # fmt: skip

    def update(self, view: memoryview) -> list[Future[None]]:
        """Hash ``view`` as the file's next bytes; the futures of its pieces."""
        futures, at = [], 0
        while at < len(view):
            index, within = divmod(self.offset, self.chunk)
            if within == 0:
                self.digests.append(hashlib.sha256())
            n = min(len(view) - at, self.chunk - within)
            lane = self.lanes[index % LANES]
            futures.append(lane.submit(self.digests[index].update, view[at : at + n]))
            at += n
            self.offset += n
        return futures

    def result(self) -> Chunks:
        """The chunks, once every future :meth:`update` gave is done."""
        return Chunks(self.chunk, tuple(d.hexdigest() for d in self.digests))

    def close(self) -> None:
        """Stop the lanes, dropping queued work."""
        for lane in self.lanes:
            lane.shutdown(cancel_futures=True)


def hash_file(fd: int, total: int) -> Chunks:
    """The chunks of the first ``total`` bytes of ``fd`` (readable), hashed on every lane."""
    from concurrent.futures import ThreadPoolExecutor

    size = chunk_size(total)
    spans = [Chunks(size, ()).span(i, total) for i in range(-(-total // size))]
    with ThreadPoolExecutor(LANES, thread_name_prefix="chunk-hash") as pool:
        digests = tuple(pool.map(lambda span: _sha256(fd, *span), spans))
    return Chunks(size, digests)


def bad_chunks(path: Path, chunks: Chunks, total: int) -> list[int]:
    """The indices of the chunks of the regular file ``path`` (``total`` bytes, not through
    a link) that do not match their sha256, hashed on every core (at most eight)."""
    from concurrent.futures import ThreadPoolExecutor

    fd = open_input(path, follow=False)
    try:
        workers = min(len(os.sched_getaffinity(0)), 8)
        with ThreadPoolExecutor(workers, thread_name_prefix="chunk-verify") as pool:
            got = list(pool.map(lambda i: _sha256(fd, *chunks.span(i, total)),
                                range(len(chunks.sha256))))  # fmt: skip
    finally:
        os.close(fd)
    return [i for i, (mine, theirs) in enumerate(zip(got, chunks.sha256, strict=True))
            if mine != theirs]  # fmt: skip


def _sha256(fd: int, start: int, end: int) -> str:
    """The sha256 of bytes ``[start, end)`` of ``fd`` (a shorter file hashes what it has)."""
    digest = hashlib.sha256()
    view = memoryview(bytearray(READ))
    while start < end:
        n = os.preadv(fd, [view[: min(READ, end - start)]], start)
        if n == 0:
            break
        digest.update(view[:n])
        start += n
    return digest.hexdigest()
