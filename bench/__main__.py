"""``python -m bench``: every benchmark, each figure next to its same-run baseline."""

from __future__ import annotations

import importlib
import os
import platform
import sys

MODULES = ("bench.bench_capture_analyze", "bench.bench_ha", "bench.bench_triage")


def main() -> None:
    wanted = sys.argv[1:] or MODULES
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
