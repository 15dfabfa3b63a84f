"""Where kvmha-forensics keeps its own files on a host (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path


def xdg_cache() -> Path:
    """``$XDG_CACHE_HOME/kvmha-forensics`` (``~/.cache/…`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kvmha-forensics"


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR`` (``/tmp`` when unset): where per-host locks live."""
    return Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp")
