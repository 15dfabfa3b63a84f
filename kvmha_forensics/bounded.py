"""Run a function in a forked child under a time and memory bound, and return its result.

Reading a guest kernel means following pointers the guest wrote: a cycle planted in its PID
tree keeps drgn's walk going, and growing, forever. So that reading runs in a child with an
address-space limit (``RLIMIT_AS``) and, past its time limit, is killed; its result, or its
exception, comes back pickled through a pipe. ``RLIMIT_CPU`` ends the child too should the
parent die first.

Fork, not spawn: the child starts at once, with everything already imported. The child runs
the function in a new thread: drgn's OpenMP thread pool belongs to the thread that started it
and does not survive a fork, so had the parent's thread used drgn, that thread's next parallel
region in the child would wait forever for pool threads that are not there; a new thread
starts a pool of its own.
"""

from __future__ import annotations

import math
import os
import pickle
import resource
import select
import signal
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from .errors import ForensicsError, OperationTimeout

T = TypeVar("T")

_CHUNK = 1 << 16


class ChildFailed(ForensicsError):
    """The child ended without a result: killed, out of memory, or its error not picklable."""


def _lower(limit: int, value: int) -> int:
    """Set the soft ``limit`` to ``value``, never looser than it already is; the value set."""
    soft, hard = resource.getrlimit(limit)
    value = min(v for v in (value, soft, hard) if v != resource.RLIM_INFINITY)
    resource.setrlimit(limit, (value, hard))
    return value


def _outcome(call: Callable[[], T], out_of_memory: str) -> bytes:
    """``(ok, value)`` pickled: ``call()``'s value, or the exception it raised."""
    refusal = pickle.dumps((False, MemoryError(out_of_memory)))
    try:
        return pickle.dumps((True, call()))
    except MemoryError:
        return refusal  # its traceback, and what it held, are gone by now
    except Exception as exc:  # the parent raises it, named as it was
        try:
            return pickle.dumps((False, exc))
        except Exception:
            return pickle.dumps((False, ChildFailed(f"{type(exc).__name__}: {exc}")))


def _run_child(
    write_fd: int, what: str, seconds: float, max_bytes: int, call: Callable[[], T]
) -> None:
    """In the child: bound itself, run ``call``, send ``(ok, value)``; never returns."""
    code = 0
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)  # the parent's event loop, if any, is not ours
        _lower(resource.RLIMIT_CPU, math.ceil(seconds) + 1)
        max_bytes = _lower(resource.RLIMIT_AS, max_bytes)
        need = f"{what} needed more than {max_bytes >> 20} MiB of address space"
        outcome: list[bytes] = []
        worker = threading.Thread(target=lambda: outcome.append(_outcome(call, need)))
        worker.start()
        worker.join()
        payload = outcome[0]
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view[:_CHUNK]) :]
        os.close(write_fd)  # the parent reads its end now, not after this process's teardown
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _receive(read_fd: int, deadline: float) -> bytes | None:
    """Everything the child writes until it closes the pipe; None past ``deadline``."""
    parts: list[bytes] = []
    poll = select.poll()  # not select(): a watcher of many guests holds descriptors past 1024
    poll.register(read_fd, select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not poll.poll(math.ceil(left * 1000)):
            return None
        part = os.read(read_fd, _CHUNK)
        if not part:
            return b"".join(parts)
        parts.append(part)


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class Pending(Generic[T]):
    """A call running in a bounded child (:func:`start_bounded`)."""

    def __init__(self, call: Callable[[], T], what: str, seconds: float, max_bytes: int) -> None:
        self.what = what
        self.seconds = seconds
        self._deadline = time.monotonic() + seconds
        read_fd, write_fd = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:
            os.close(read_fd)
            _run_child(write_fd, what, seconds, max_bytes, call)
        os.close(write_fd)
        self._fd = read_fd
        self._outcome: tuple[bool, object] | None = None

    def result(self) -> T:
        """The call's value, or its exception raised here; waits for it (once).

        Raises:
            OperationTimeout: it did not end within ``seconds`` of its start (the child is
                killed).
            ChildFailed: the child ended without a result (e.g. killed by a signal).
            MemoryError: it needed more than ``max_bytes`` of address space.
        """
        if self._outcome is None:
            self._outcome = self._collect()
        ok, value = self._outcome
        if not ok:
            raise cast(BaseException, value)
        return cast(T, value)

    def _collect(self) -> tuple[bool, object]:
        data = None
        try:
            data = _receive(self._fd, self._deadline)
        finally:
            os.close(self._fd)
            if not data:  # no result: killed here, or ended without one
                if data is None:
                    os.kill(self._pid, signal.SIGKILL)
                status = os.waitpid(self._pid, 0)[1]
        if data is None:
            error: BaseException = OperationTimeout(
                f"{self.what} did not end within {self.seconds:g} s",
                "the guest's structures may be corrupt or hostile",
            )
            return False, error
        if not data:
            return False, ChildFailed(f"{self.what} ended without a result ({_ended(status)})")
        # The child exits as soon as it has written; its teardown (hundreds of MB for drgn) is
        # waited for beside the caller, not before it goes on.
        threading.Thread(target=os.waitpid, args=(self._pid, 0), daemon=True).start()
        outcome: tuple[bool, object] = pickle.loads(data)
        return outcome


def start_bounded(call: Callable[[], T], what: str, seconds: float, max_bytes: int) -> Pending[T]:
    """``call()`` started in a forked child limited to ``seconds`` and ``max_bytes`` of
    address space; the caller goes on, and collects it with :meth:`Pending.result`."""
    return Pending(call, what, seconds, max_bytes)


def call_bounded(call: Callable[[], T], what: str, seconds: float, max_bytes: int) -> T:
    """``call()`` run in a forked child: :func:`start_bounded`, then its result."""
    return start_bounded(call, what, seconds, max_bytes).result()
