"""The fuzz test's fork server: a fresh process that imports kvmha-forensics and its analyzers
once, then runs each command it is given (one JSON list per line on stdin) in a forked child,
its address space capped at :data:`MEMORY_CAP` and killed after :data:`TIME_LIMIT`; one JSON
result per line on stdout. Forking from the test process itself would cap a child that
inherited whatever the test session had mapped (drgn programs, lab guests' dumps)."""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time

from kvmha_forensics.analysis import discover
from kvmha_forensics.cli import main

MEMORY_CAP = 1 << 30
"""Address space of each child (docs/limits.md): analysis of a hostile bundle stays within it."""
TIME_LIMIT = 30.0
"""Seconds per command and input: far above a bounded run; reaching it is a hang."""


def _child(argv: list[str], out_w: int, err_w: int) -> None:
    try:
        os.dup2(out_w, 1), os.dup2(err_w, 2)
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        sys.argv = ["kvmha-forensics", *argv]
        main()
    except SystemExit as exc:
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    except BaseException:
        os._exit(99)
    os._exit(0)


def run(argv: list[str]) -> dict[str, object]:
    """``kvmha-forensics ARGV`` in a forked, capped child: exit code, output, peak RSS (KiB),
    and whether it had to be killed."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        os.close(out_r), os.close(err_r)
        _child(argv, out_w, err_w)
    os.close(out_w), os.close(err_w)
    parts: dict[int, list[bytes]] = {out_r: [], err_r: []}
    for fd in parts:
        os.set_blocking(fd, False)
    deadline = time.monotonic() + TIME_LIMIT
    hung = False
    while True:
        for fd, chunks in parts.items():
            try:
                while data := os.read(fd, 1 << 16):
                    chunks.append(data)
            except BlockingIOError:
                pass
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            hung = True
            break
        time.sleep(0.01)
    for fd, chunks in parts.items():
        os.set_blocking(fd, True)
        while data := os.read(fd, 1 << 16):
            chunks.append(data)
        os.close(fd)
    stdout, stderr = (b"".join(parts[fd]).decode(errors="replace") for fd in (out_r, err_r))
    return {"code": os.waitstatus_to_exitcode(status), "stdout": stdout, "stderr": stderr,
            "max_rss": usage.ru_maxrss, "hung": hung}  # fmt: skip


if __name__ == "__main__":
    discover()  # the analyzers (and drgn, capstone) imported once, before the forks
    for line in sys.stdin:
        sys.stdout.write(json.dumps(run(json.loads(line))) + "\n")
        sys.stdout.flush()
