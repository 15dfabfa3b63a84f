"""One read of a text input for triage's plan: what it is, its cache key and its time.

:func:`scan` opens the file once for what took three opens (classify, hash, ``stat``): the
head classifies it, and the same bytes start the key's SHA-256 (a file no larger than the
head is hashed from them, without reading it again). A file's key is the SHA-256 of
:func:`.cache.key_prefix` (kind, options, code) and then its content.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..capture.bundle import HASH_CHUNK
from ..errors import InputError
from ..input_files import open_input, read_bounded
from ..sources.classify import HEAD_BYTES, Classified, classify_head
from .cache import key_prefix


@dataclass(frozen=True, slots=True)
class Scanned:
    """A file's classification; for a kind, its cache key and modification time too."""

    classified: Classified
    key: str | None = None
    mtime: float | None = None


def scan(path: Path, follow: bool, options: str, fingerprint: str) -> Scanned:
    """Classify ``path`` (as :func:`~..sources.classify.classify` does, ``follow`` alike)
    and, when it has a kind, key it and read its modification time. Raises ``OSError`` when
    the file cannot be read past its head."""
    try:
        fd = open_input(path, follow)
    except InputError as exc:
        return Scanned(Classified(path, None, exc.message.removeprefix(f"{path} is ")))
    with os.fdopen(fd, "rb") as f:
        try:
            head = read_bounded(f, HEAD_BYTES)
        except OSError as exc:
            return Scanned(Classified(path, None, f"cannot read {path}: {exc.strerror or exc}"))
        classified = classify_head(path, head.data, head.size)
        if classified.kind is None:
            return Scanned(classified)
        st = os.fstat(f.fileno())
        digest = hashlib.sha256(key_prefix(classified.kind, options, fingerprint))
        if not head.left and head.size == st.st_size == len(head.data):
            digest.update(head.data)  # the whole file
        else:
            f.seek(0)
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
    return Scanned(classified, digest.hexdigest(), st.st_mtime)
