"""triage's one-read scan: the classification, key and time that classify, a streamed
SHA-256 and stat give, on real fixtures and on the files classify refuses."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from kvmha_forensics.sources.classify import HEAD_BYTES, classify
from kvmha_forensics.triage.cache import key_prefix
from kvmha_forensics.triage.scan import scan

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _expected_key(path: Path, kind: str) -> str:
    return hashlib.sha256(key_prefix(kind, "opts", "code") + path.read_bytes()).hexdigest()


def _cases(tmp_path: Path) -> list[Path]:
    console = next(iter(sorted((FIXTURES / "console").glob("0*.txt"))))
    qemu = next(iter(sorted((FIXTURES / "logs").glob("*.log"))))
    big = tmp_path / "big-console.txt"  # longer than the head: hashed past it
    big.write_bytes(console.read_bytes() + b"x" * (HEAD_BYTES + 10) + b"\n")
    exact = tmp_path / "exact.log"  # exactly the head's size
    data = qemu.read_bytes()
    exact.write_bytes(data + b" " * (HEAD_BYTES - len(data)))
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.txt"
    link.symlink_to(console)
    return [console, qemu, big, exact, empty, binary, fifo, link, tmp_path / "missing"]


@pytest.mark.parametrize("follow", [True, False])
def test_scan_is_classify_hash_and_stat(tmp_path: Path, follow: bool) -> None:
    for path in _cases(tmp_path):
        scanned = scan(path, follow, "opts", "code")
        assert scanned.classified == classify(path, follow=follow), path
        kind = scanned.classified.kind
        if kind is None:
            assert scanned.key is None and scanned.mtime is None, path
            continue
        assert scanned.key == _expected_key(path, kind), path
        assert scanned.mtime == path.stat().st_mtime, path
