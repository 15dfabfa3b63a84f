"""bundle verify on a memory dump checksummed chunk by chunk (docs/bundle-format.md): a changed
byte is found and located, a resized file is caught, with today's blake3 chunks (schema version
3) and the sha256 chunks of version 2; old whole-file bundles still verify, and hostile chunk
lists are one line and exit 3."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from blake3 import blake3

from tests import schemas
from tests.hostile.hostile import bundle, cli, one_line

BAD_INPUT = 3
CHUNK = 4096
SIZE = 6 * CHUNK - 100  # the last chunk is short
GUEST = {"name": "hostile", "uuid": None, "qmp": "q", "qemu_pid": None, "runstate": None}
ALGORITHMS = ["blake3", "sha256"]  # capture's today (version 3), and version 2's


def digest(algorithm: str, data: bytes) -> str:
    return blake3(data).hexdigest() if algorithm == "blake3" else hashlib.sha256(data).hexdigest()


def chunked(directory: Path, data: bytes, algorithm: str = "blake3") -> Path:
    """A bundle whose memory.elf is listed with its chunks: blake3 ones as capture writes them
    (schema version 3), or sha256 ones as version 2 had them (no ``algorithm``)."""
    b = bundle(directory, {"console.log": b"console\n"})
    (b / "memory.elf").write_bytes(data)
    digests = [digest(algorithm, data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]
    identity = hashlib.sha256(b"".join(bytes.fromhex(d) for d in digests)).hexdigest()
    named = {"algorithm": "blake3"} if algorithm == "blake3" else {}
    doc = json.loads((b / "manifest.json").read_text())
    doc["schema_version"], doc["guest"] = (3 if algorithm == "blake3" else 2), GUEST
    doc["artifacts"].append({"path": "memory.elf", "kind": "memory-elf", "size": len(data),
                             "sha256": identity, "description": "planted",
                             "chunks": {"size": CHUNK, **named, algorithm: digests}})  # fmt: skip
    (b / "manifest.json").write_text(json.dumps(doc))
    return b


def edit(b: Path, **chunks: object) -> None:
    doc = json.loads((b / "manifest.json").read_text())
    doc["artifacts"][-1]["chunks"].update(chunks)
    (b / "manifest.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_flipped_byte_is_located(tmp_path: Path, algorithm: str) -> None:
    data = bytearray(os.urandom(SIZE))
    b = chunked(tmp_path / "b", bytes(data), algorithm)
    schemas.check_manifest(json.loads((b / "manifest.json").read_text()))
    done = cli("bundle", "verify", str(b))
    assert done.returncode == 0 and "2 artifacts verified" in done.stdout, done.stderr
    data[3 * CHUNK + 7] ^= 0x40
    (b / "memory.elf").write_bytes(data)
    done = cli("bundle", "verify", str(b))
    assert done.returncode == BAD_INPUT
    said = f"memory.elf: bytes {3 * CHUNK}-{4 * CHUNK - 1} (chunk 4 of 6) do not match their "
    said += algorithm
    assert said in done.stderr and "1 problem(s) found" in done.stderr, done.stderr


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_an_edited_digest_breaks_the_identity(tmp_path: Path, algorithm: str) -> None:
    """A chunk digest changed in the manifest: the list no longer gives the artifact's sha256."""
    data = os.urandom(SIZE)
    b = chunked(tmp_path / "b", data, algorithm)
    digests = [digest(algorithm, data[i : i + CHUNK]) for i in range(0, SIZE, CHUNK)]
    digests[0] = digest(algorithm, b"other")
    edit(b, **{algorithm: digests})
    done = cli("bundle", "verify", str(b))
    assert done.returncode == BAD_INPUT
    assert "memory.elf: its chunk digests do not match its sha256" in done.stderr, done.stderr
    assert f"memory.elf: bytes 0-{CHUNK - 1} (chunk 1 of 6)" in done.stderr


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("change", ["truncated", "extended"])
def test_a_resized_dump_is_caught(tmp_path: Path, change: str, algorithm: str) -> None:
    data = os.urandom(SIZE)
    b = chunked(tmp_path / "b", data, algorithm)
    (b / "memory.elf").write_bytes(data[:-1] if change == "truncated" else data + b"\0")
    done = cli("bundle", "verify", str(b))
    assert done.returncode == BAD_INPUT
    size = SIZE - 1 if change == "truncated" else SIZE + 1
    assert f"memory.elf: {size} bytes, the manifest says {SIZE}" in done.stderr, done.stderr


def test_an_old_whole_file_bundle_verifies(tmp_path: Path) -> None:
    """Schema version 1: one sha256 over the file; a changed byte is still caught."""
    data = bytearray(os.urandom(SIZE))
    b = bundle(tmp_path / "b", {"memory.elf": bytes(data)})
    doc = json.loads((b / "manifest.json").read_text())
    schemas.check_manifest({**doc, "guest": GUEST})
    done = cli("bundle", "verify", str(b))
    assert done.returncode == 0 and "1 artifacts verified" in done.stdout, done.stderr
    data[-1] ^= 1
    (b / "memory.elf").write_bytes(data)
    done = cli("bundle", "verify", str(b))
    assert done.returncode == BAD_INPUT and "memory.elf: does not match its sha256" in done.stderr


@pytest.mark.parametrize(
    ("chunks", "said"),
    [
        ({"size": 0}, "chunk size 0 is not a multiple of 4096"),
        ({"size": -CHUNK}, "chunk size -4096 is not"),
        ({"size": 1 << 62}, f"chunk size {1 << 62} is not"),
        ({"size": 1.5}, "chunk size 1.5 is not"),
        ({"size": None}, "chunk size None is not"),
        ({"blake3": ["0" * 64] * 5}, "5 chunk digests for 24476 bytes in chunks of 4096: 6"),
        ({"blake3": ["0" * 64] * 100000}, "100000 chunk digests"),
        ({"blake3": []}, "0 chunk digests"),
        ({"blake3": [1] * 6}, "not a list of blake3 hex strings"),
        ({"blake3": {"a": 1}}, "not a list of blake3 hex strings"),
        ({"blake3": None, "sha256": ["0" * 64] * 6}, "not a list of blake3 hex strings"),
        ({"algorithm": "md5"}, "chunk algorithm 'md5' is not 'blake3'"),
        ({"algorithm": ["blake3"]}, "chunk algorithm ['blake3'] is not 'blake3'"),
        ({"algorithm": "sha256"}, "chunk algorithm 'sha256' is not 'blake3'"),
    ],
)
def test_hostile_chunk_lists_are_one_line(
    tmp_path: Path, chunks: dict[str, object], said: str
) -> None:
    b = chunked(tmp_path / "b", os.urandom(SIZE))
    edit(b, **chunks)
    for command in (("bundle", "verify"), ("analyze",)):
        done = cli(*command, str(b))
        assert done.returncode == BAD_INPUT, done.stderr[-2000:]
        line = one_line(done.stderr)
        assert "not a valid bundle manifest: artifact memory.elf: " in line and said in line


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    b = bundle(tmp_path / "b", {"console.log": b"x\n"})
    doc = json.loads((b / "manifest.json").read_text())
    doc["schema_version"] = 4
    (b / "manifest.json").write_text(json.dumps(doc))
    done = cli("bundle", "verify", str(b))
    assert done.returncode == BAD_INPUT and "upgrade" in one_line(done.stderr)
