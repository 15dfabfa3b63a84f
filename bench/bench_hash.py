"""The chunk hashes' throughput on this host: hashlib's sha256 against blake3, in one process.

Capture hashes the memory dump in 16 MiB chunks as it writes it, on two threads
(docs/bundle-format.md); this measures both algorithms on the same 16 MiB of random bytes,
hashed ``COUNT`` times (1.6 GiB, about what the filled 2 GB guest's dump holds) on one thread
and on two, alternating, ``ROUNDS`` times. The baseline is sha256 on one thread, the algorithm
and the way capture hashed before BLAKE3.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from blake3 import blake3

from bench.common import ROUNDS, table

CHUNK = 16 << 20
COUNT = 100


def _sha256(data: bytes) -> object:
    return hashlib.sha256(data).digest()


def _blake3(data: bytes) -> object:
    return blake3(data).digest()


def rate(digest: Callable[[bytes], object], data: bytes, threads: int) -> float:
    """GB/s hashing ``data`` COUNT times, each on its own, on ``threads`` threads."""
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: digest(data), range(COUNT)))
    return COUNT * len(data) / (time.perf_counter() - start) / 1e9


def main() -> str:
    data = os.urandom(CHUNK)
    kinds = {(name, threads): fn for name, fn in (("sha256", _sha256), ("blake3", _blake3))
             for threads in (1, 2)}  # fmt: skip
    rates: dict[tuple[str, int], list[float]] = {k: [] for k in kinds}
    loads = []
    for _ in range(ROUNDS):
        loads.append(os.getloadavg()[0])
        for (name, threads), fn in kinds.items():
            rates[(name, threads)].append(rate(fn, data, threads))
    base = statistics.median(rates[("sha256", 1)])
    rows = []
    for (name, threads), values in rates.items():
        ratio = statistics.median(values) / base
        rows.append((f"{name}, {threads} thread{'s' if threads > 1 else ''}",
                     f"{statistics.median(values):.2f} GB/s",
                     f"{min(values):.2f} to {max(values):.2f}", f"{ratio:.2f}x"))  # fmt: skip
    header = ("hash", "throughput (median)", "range", "vs sha256 on one thread")
    title = f"chunk hashes, {COUNT} x 16 MiB ({ROUNDS} rounds)"
    return (table(title, header, rows) + f"load average (1 min) at the rounds' starts: "
            f"{min(loads):.2f} to {max(loads):.2f}\n")  # fmt: skip


if __name__ == "__main__":
    print(main())
