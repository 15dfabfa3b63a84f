"""Chunked checksums: the hasher's chunks are the file's, however the bytes are handed over,
both algorithms' chunks are checked (blake3, written now; sha256, schema version 2's), and a
manifest's chunk list is validated before anything is read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmha_forensics.capture.chunksum import (
    MAX_CHUNKS,
    MIN_CHUNK,
    UNIT,
    Algorithm,
    ChunkHasher,
    Chunks,
    bad_chunks,
    chunk_size,
)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.lists(st.integers(0, 3 * UNIT), max_size=12))
def test_chunks_are_the_files_chunks(units: int, pieces: list[int]) -> None:
    """Pieces of any length, across chunk boundaries: each digest is its chunk's."""
    data = os.urandom(sum(pieces))
    hasher = ChunkHasher(units * UNIT)
    futures, at = [], 0
    for n in pieces:
        futures += hasher.update(memoryview(data)[at : at + n])
        at += n
    for future in futures:
        future.result()
    hasher.close()
    chunks = hasher.result()
    size = units * UNIT
    want = tuple(blake3(data[i : i + size]).hexdigest() for i in range(0, len(data), size))
    assert chunks.digests == want and chunks.algorithm == "blake3"
    assert chunks.identity() == hashlib.sha256(b"".join(bytes.fromhex(d) for d in want)).hexdigest()


def test_chunk_size_bounds_the_count() -> None:
    assert chunk_size(0) == chunk_size(2 << 30) == MIN_CHUNK
    big = chunk_size(1 << 40)
    assert big > MIN_CHUNK and -(-(1 << 40) // big) <= MAX_CHUNKS


def _digest(algorithm: Algorithm, data: bytes | bytearray) -> str:
    return blake3(data).hexdigest() if algorithm == "blake3" else hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_bad_chunks_names_the_changed_chunk(tmp_path: Path, algorithm: Algorithm) -> None:
    data = bytearray(os.urandom(5 * UNIT + 17))
    chunks = Chunks(UNIT, tuple(_digest(algorithm, data[i : i + UNIT])
                                for i in range(0, len(data), UNIT)), algorithm)  # fmt: skip
    path = tmp_path / "f"
    path.write_bytes(data)
    assert bad_chunks(path, chunks, len(data)) == []
    data[3 * UNIT + 5] ^= 1
    path.write_bytes(data)
    assert bad_chunks(path, chunks, len(data)) == [3]
    assert chunks.span(3, len(data)) == (3 * UNIT, 4 * UNIT)
    assert chunks.span(5, len(data)) == (5 * UNIT, 5 * UNIT + 17)


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_chunk_lists_round_trip(algorithm: Algorithm) -> None:
    """sha256 chunks keep version 2's form, with no ``algorithm``; blake3 ones name it."""
    chunks = Chunks(UNIT, ("0" * 64, "1" * 64), algorithm)
    doc = chunks.to_json()
    assert ("algorithm" in doc) == (algorithm != "sha256") and doc[algorithm] == list(
        chunks.digests
    )
    assert Chunks.from_json(doc, 2 * UNIT) == chunks


@pytest.mark.parametrize(
    ("doc", "said"),
    [
        ({"size": 0, "sha256": []}, "chunk size 0"),
        ({"size": -UNIT, "sha256": []}, "chunk size -4096"),
        ({"size": 1 << 50, "sha256": ["0" * 64]}, "chunk size 1125899906842624"),
        ({"size": UNIT + 1, "sha256": ["0" * 64]}, "chunk size 4097"),
        ({"size": True, "sha256": ["0" * 64]}, "chunk size True"),
        ({"size": "4096", "sha256": ["0" * 64]}, "chunk size '4096'"),
        ({"size": UNIT, "sha256": ["0" * 64]}, "1 chunk digests for 8192 bytes"),
        ({"size": UNIT, "sha256": ["0" * 64] * 3}, "3 chunk digests for 8192 bytes"),
        ({"size": UNIT, "sha256": ["x" * 64] * 2}, "not a list of sha256 hex strings"),
        ({"size": UNIT, "sha256": "0" * 128}, "not a list of sha256 hex strings"),
        ([UNIT], "'chunks' is not an object"),
        ({"size": UNIT, "algorithm": "md5", "md5": ["0" * 32] * 2}, "chunk algorithm 'md5'"),
        ({"size": UNIT, "algorithm": None, "sha256": ["0" * 64] * 2}, "chunk algorithm None"),
        ({"size": UNIT, "algorithm": "sha256", "sha256": ["0" * 64] * 2}, "algorithm 'sha256'"),
        ({"size": UNIT, "algorithm": "blake3", "sha256": ["0" * 64] * 2}, "list of blake3 hex"),
    ],
)
def test_hostile_chunk_lists_are_refused(doc: object, said: str) -> None:
    with pytest.raises(ValueError, match=said.replace("(", r"\(")):
        Chunks.from_json(doc, 2 * UNIT)
