"""Files that may quote guest memory: written 0600, never through a symlink, atomically."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (0600), via a temporary file beside it."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from exc
