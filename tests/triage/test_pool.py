"""Triage in worker processes: the same record as in one process, in order, bounded, and a
worker's death costs only its own input."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmha_forensics.triage import pool
from kvmha_forensics.triage.cache import TriageCache
from kvmha_forensics.triage.grouping import triage

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def square(x: int) -> tuple[int, int]:
    """``x * x`` and the process that computed it; a process asked for 37 dies."""
    if x == 37:
        os._exit(3)
    return x * x, os.getpid()


def died(x: int, reason: str) -> tuple[int, int]:
    assert "ended abruptly" in reason
    return -x, 0


def stream(n: int, read: list[int]) -> Iterator[tuple[int, int | None]]:
    """Items 0..n-1, every fifth with nothing to do; ``read`` counts what was taken."""
    for i in range(n):
        read.append(i)
        yield i, None if i % 5 == 0 else i


@pytest.mark.parametrize("threads", [1, 2], ids=["forked", "fork-server"])
def test_results_come_in_input_order_from_several_processes(threads: int) -> None:
    """With a second thread alive, the workers come from the fork server instead (an earlier
    test of the session may have left a thread: then both cases use the fork server)."""
    alone = threading.active_count() == 1
    done = threading.Event()
    other = threading.Thread(target=done.wait)
    if threads == 2:
        other.start()
    try:
        method = pool._context().get_start_method()
        read: list[int] = []
        out = list(pool.ordered(square, stream(400, read), 2, died))
    finally:
        done.set()
    assert method == ("fork" if threads == 1 and alone else "forkserver")
    assert [tag for tag, _ in out] == list(range(400))
    for tag, result in out:
        if tag % 5 == 0:
            assert result is None
        elif tag == 37:  # killed its worker twice: answered by died, the rest unharmed
            assert result == (-37, 0)
        else:
            assert result is not None and result[0] == tag * tag
    pids = {r[1] for _, r in out if r is not None and r[1]}
    assert os.getpid() not in pids and len(pids) >= 2


def test_the_stream_is_read_only_a_window_ahead() -> None:
    read: list[int] = []
    results = pool.ordered(square, stream(5000, read), 2, died)
    next(results)
    assert len(read) <= max(pool.MIN_PARALLEL, 2 * pool.WINDOW_CHUNKS * pool.CHUNK) + 1
    results.close()


def test_little_work_or_one_job_runs_in_this_process() -> None:
    for n, jobs in ((pool.MIN_PARALLEL - 1, 2), (300, 1)):
        out = list(pool.ordered(square, ((i, i + 100) for i in range(n)), jobs, died))
        assert {r[1] for _, r in out if r is not None} == {os.getpid()}
        assert [r[0] for _, r in out if r is not None] == [(i + 100) ** 2 for i in range(n)]


def record(root: Path, jobs: int, cache: Path) -> str:
    doc = triage([root], cache=TriageCache(cache), jobs=jobs).to_json()
    doc.pop("created")
    stats = doc["stats"]
    assert isinstance(stats, dict)
    stats.pop("seconds")
    return json.dumps(doc, sort_keys=True)


def test_parallel_triage_writes_the_serial_record(tmp_path: Path) -> None:
    """Real logs and consoles, each three times under other names (two identical inputs: the
    second is a cache hit in both), plus undecodable and empty files."""
    root = tmp_path / "inputs"
    root.mkdir()
    sources = [p for p in sorted((FIXTURES / "logs").glob("*.log")) if p.stat().st_size]
    sources += sorted((FIXTURES / "real" / "consoles").glob("0[0-4]*.txt"))
    for copy in range(3):
        for i, p in enumerate(sources):
            shutil.copy(p, root / f"{i:03d}-{copy}-{p.name}")
    (root / "garbage.bin").write_bytes(bytes(range(256)) * 8)
    (root / "empty.log").write_bytes(b"")
    assert 3 * len(sources) > pool.MIN_PARALLEL
    serial = record(root, 1, tmp_path / "cache1")
    assert record(root, 2, tmp_path / "cache2") == serial
    assert '"cached": true' in serial and "garbage.bin" in serial
