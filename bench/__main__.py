"""``python -m bench``: every benchmark, each figure next to its same-run baseline."""

from __future__ import annotations

import compileall
import importlib
import os
import platform
import sys
from pathlib import Path

MODULES = (
    "bench.bench_capture_analyze",
    "bench.bench_hash",
    "bench.bench_direct",
    "bench.bench_ha",
    "bench.bench_watch_scale",
    "bench.bench_triage",
    "bench.bench_corpus",
)
ROOT = Path(__file__).resolve().parent.parent


def compile_package() -> None:
    """Write the package's bytecode first, as ``pip install`` does: the baselines' modules have
    theirs, and an editable checkout under PYTHONDONTWRITEBYTECODE=1 would otherwise compile
    every module from source in every timed run (~50 ms)."""
    for folder in ("kvmha_forensics", "analyzers"):
        compileall.compile_dir(ROOT / folder, quiet=1)


def main() -> None:
    wanted = sys.argv[1:] or MODULES
    compile_package()
    cpu = platform.processor() or platform.machine()
    print(f"## kvmha-forensics benchmarks ({platform.node()}, {cpu}, {os.cpu_count()} cores)\n")
    for name in wanted:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            print(f"(skipped {name}: {exc})\n")
            continue
        print(module.main(), flush=True)


if __name__ == "__main__":
    main()
