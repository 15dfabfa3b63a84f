"""Where the lab finds its sources (in the checkout) and keeps its cache (outside it)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import EnvironmentProblem
from ..xdg import xdg_cache

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def fixtures_dir() -> Path:
    """The checkout's ``fixtures/`` (guest init, trigger module, bare-metal sources)."""
    if not (FIXTURES / "guest" / "init").is_file():
        raise EnvironmentProblem(
            f"lab sources not found under {FIXTURES}",
            "the lab runs from a git checkout of kvmha-forensics (pip install -e .)",
        )
    return FIXTURES


def cache_dir() -> Path:
    """The lab's asset cache: ``$KVMHA_CACHE_DIR``, else :func:`xdg_cache`."""
    explicit = os.environ.get("KVMHA_CACHE_DIR")
    return Path(explicit) if explicit else xdg_cache()


def kernel_dir() -> Path:
    """The lab's kernels, one directory per release with its debug vmlinux: what the demo and
    the tests pass as ``--debuginfo-dir`` (the library never searches the lab's cache)."""
    return cache_dir() / "kernel"
