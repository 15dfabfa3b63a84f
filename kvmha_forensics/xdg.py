"""Where kvmha-forensics keeps its own files on a host (XDG base directories)."""

from __future__ import annotations

import os
from pathlib import Path


def xdg_cache() -> Path:
    """``$XDG_CACHE_HOME/kvmha-forensics`` (``~/.cache/…`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kvmha-forensics"


RUNTIME_ENV = "KVMHA_RUNTIME_DIR"


def runtime_dir() -> Path:
    """Where per-host locks live: ``/run/kvmha-forensics`` for root (only root creates entries
    in ``/run``), else ``$XDG_RUNTIME_DIR/kvmha-forensics`` or ``/tmp/kvmha-forensics-UID``;
    ``$KVMHA_RUNTIME_DIR`` overrides (give every kvmha-forensics process of a host the same)."""
    chosen = os.environ.get(RUNTIME_ENV)
    if chosen:
        return Path(chosen)
    if os.geteuid() == 0:
        return Path("/run/kvmha-forensics")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "kvmha-forensics" if xdg else Path(f"/tmp/kvmha-forensics-{os.geteuid()}")
