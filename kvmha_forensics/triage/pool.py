"""Run triage's analyses in worker processes: results in input order, memory bounded.

:func:`ordered` maps a function over a stream of work in ``jobs`` processes and yields the
results in the stream's order, so a parallel triage writes what a serial one writes. At most
:data:`WINDOW_CHUNKS` chunks per process are in flight (the stream is read no further ahead),
and a run with fewer than :data:`MIN_PARALLEL` items of work never starts a process: a pool's
start-up costs more than analyzing them here. A
worker that dies (killed, out of memory, a crash in a C library) takes only its own item: the
items it had in flight are run again one at a time in a fresh process, and the one that kills
that process too is answered by ``died``.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")
T = TypeVar("T")

#: Items of work sent to a worker at once (one round trip each: ~1 ms of analysis apiece).
CHUNK = 16
#: Chunks in flight per worker process.
WINDOW_CHUNKS = 4
#: Fewer items of work than this are analyzed in this process.
MIN_PARALLEL = 64
#: Imported once by the fork server, so that each worker starts with them loaded.
PRELOAD = ["kvmha_forensics.triage.grouping"]

DIED = "its worker process ended abruptly (killed, out of memory, or a crash in a C library)"
#: The youngest generation's collection threshold while triage runs (CPython's default: 700).
#: Analyses allocate many short-lived containers: collecting every 700 of them cost ~10 % of a
#: triage's CPU, spent scanning the same survivors again and again.
GC_THRESHOLD = 10_000


@contextmanager
def relaxed_gc() -> Iterator[None]:
    """Collect the youngest generation every :data:`GC_THRESHOLD` allocations, not 700, for
    the block; the thresholds before are restored after."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], GC_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _worker_start() -> None:
    """A worker's start: what it inherited (a forked one: the triage process's objects) is
    set aside from collection, which would scan it, and copy its pages, again and again."""
    gc.freeze()
    gc.set_threshold(max(gc.get_threshold()[0], GC_THRESHOLD), *gc.get_threshold()[1:])


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _context() -> multiprocessing.context.BaseContext:
    """``fork`` while this process has one thread (the workers start at once, with the
    analyzers loaded, and a script that calls triage needs no ``__main__`` guard); else the
    fork server (forking a process with threads can copy a lock another thread holds),
    else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def _run_chunk(fn: Callable[[A], R], args: list[A]) -> list[R]:
    return [fn(arg) for arg in args]


@dataclass(eq=False)
class _Batch(Generic[A, R]):
    args: list[A]
    future: Future[list[R]] | None = None
    executor: ProcessPoolExecutor | None = None
    results: list[R] | None = None


@dataclass(eq=False)
class _Entry(Generic[T, A, R]):
    tag: T
    arg: A | None
    batch: _Batch[A, R] | None = None
    index: int = 0


@dataclass(eq=False)
class _Workers(Generic[A, R]):
    """The process pool, started on first use and started again after a worker died."""

    fn: Callable[[A], R]
    jobs: int
    died: Callable[[A, str], R]
    _executor: ProcessPoolExecutor | None = field(default=None, init=False)
    _alone: ProcessPoolExecutor | None = field(default=None, init=False)

    @property
    def started(self) -> bool:
        return self._executor is not None

    def _new(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=_context(), initializer=_worker_start)

    def submit(self, entries: list[_Entry[T, A, R]]) -> None:
        batch: _Batch[A, R] = _Batch([e.arg for e in entries if e.arg is not None])
        for _ in range(2):
            if self._executor is None:
                self._executor = self._new(self.jobs)
            try:
                batch.future = self._executor.submit(_run_chunk, self.fn, batch.args)
                batch.executor = self._executor
                break
            except BrokenProcessPool:  # a worker died since: its batches recover on reading
                self._retire(self._executor)
        else:
            batch.results = [self._alone_result(arg) for arg in batch.args]
        for i, entry in enumerate(entries):
            entry.batch, entry.index = batch, i

    def result(self, entry: _Entry[T, A, R], window: Iterable[_Entry[T, A, R]]) -> R:
        batch = entry.batch
        assert batch is not None
        if batch.results is None:
            assert batch.future is not None
            try:
                batch.results = batch.future.result()
            except BrokenProcessPool:
                self._recover(batch.executor, [entry, *window])
            except Exception as exc:  # a result that could not come back
                reason = f"{type(exc).__name__}: {exc}"
                batch.results = [self.died(arg, reason) for arg in batch.args]
        assert batch.results is not None
        return batch.results[entry.index]

    def _retire(self, executor: ProcessPoolExecutor | None) -> None:
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if executor is self._executor:
            self._executor = None

    def _recover(self, broken: ProcessPoolExecutor | None, entries: list[_Entry[T, A, R]]) -> None:
        """Run each unfinished item of the broken pool alone; the next chunks go to a new
        pool."""
        self._retire(broken)
        for batch in {id(e.batch): e.batch for e in entries if e.batch is not None}.values():
            if batch.results is not None or batch.executor is not broken:
                continue
            future = batch.future
            done = future is not None and future.done() and not future.cancelled()
            if done and future is not None and future.exception() is None:
                batch.results = future.result()  # finished before the pool broke
                continue
            batch.results = [self._alone_result(arg) for arg in batch.args]

    def _alone_result(self, arg: A) -> R:
        if self._alone is None:
            self._alone = self._new(1)
        try:
            return self._alone.submit(_run_chunk, self.fn, [arg]).result()[0]
        except BrokenProcessPool:
            self._alone.shutdown(wait=False)
            self._alone = None
            return self.died(arg, DIED)

    def close(self) -> None:
        for executor in (self._executor, self._alone):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)


def ordered(
    fn: Callable[[A], R],
    items: Iterable[tuple[T, A | None]],
    jobs: int,
    died: Callable[[A, str], R],
) -> Iterator[tuple[T, R | None]]:
    """``(tag, fn(arg))`` for each ``(tag, arg)`` of ``items``, in order; ``(tag, None)``
    where ``arg`` is None (nothing to do). ``fn`` must be picklable (a module's function, or a
    ``functools.partial`` of one); ``died(arg, reason)`` answers for an item whose worker
    died or whose result could not be returned. ``jobs`` ≤ 1 runs everything here."""
    if jobs <= 1:
        for tag, arg in items:
            yield tag, None if arg is None else fn(arg)
        return
    workers: _Workers[A, R] = _Workers(fn, jobs, died)
    limit = max(MIN_PARALLEL, jobs * WINDOW_CHUNKS * CHUNK)
    window: deque[_Entry[T, A, R]] = deque()
    pending: list[_Entry[T, A, R]] = []  # work read but not yet given to a worker
    work = 0
    stream = iter(items)
    exhausted = False
    try:
        while True:
            while not exhausted and len(window) < limit:
                try:
                    tag, arg = next(stream)
                except StopIteration:
                    exhausted = True
                    break
                entry: _Entry[T, A, R] = _Entry(tag, arg)
                window.append(entry)
                if arg is not None:
                    pending.append(entry)
                    work += 1
                    while len(pending) >= CHUNK and work >= MIN_PARALLEL:
                        workers.submit(pending[:CHUNK])
                        del pending[:CHUNK]
            if not window:
                return
            head = window.popleft()
            if head.arg is None:
                yield head.tag, None
                continue
            if head.batch is None:  # the window is full, or the stream ended, before a chunk
                if workers.started:
                    workers.submit(pending)
                else:  # too little work for a pool: run what was read here
                    for e in pending:
                        assert e.arg is not None
                        e.batch = _Batch([e.arg], results=[fn(e.arg)])
                pending = []
            yield head.tag, workers.result(head, window)
    finally:
        workers.close()
