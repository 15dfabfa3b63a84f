"""call_bounded: a real forked child, its value or error brought back, its time and memory
bounded, and nothing left running."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from kvmha_forensics.bounded import ChildFailed, call_bounded
from kvmha_forensics.errors import OperationTimeout

GIB = 1 << 30


def _address_space() -> int:
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    return kib << 10


def test_a_value_larger_than_a_pipe_comes_back_whole() -> None:
    value = {"dmesg": os.urandom(3 << 20).hex(), "pid": os.getpid()}
    got = call_bounded(lambda: {**value, "child": os.getpid()}, "the test", 60, 8 * GIB)
    assert got["dmesg"] == value["dmesg"] and got["child"] != os.getpid()


def test_the_childs_error_is_raised_here_as_it_was() -> None:
    def fail() -> None:
        raise LookupError("no such symbol")

    with pytest.raises(LookupError, match="no such symbol"):
        call_bounded(fail, "the test", 60, 8 * GIB)


def test_an_error_that_cannot_be_pickled_is_named() -> None:
    class Local(Exception):  # a local class cannot be pickled
        pass

    def fail() -> None:
        raise Local("held a lambda")

    with pytest.raises(ChildFailed, match=r"^Local: held a lambda$"):
        call_bounded(fail, "the test", 60, 8 * GIB)


def test_past_its_time_the_child_is_killed_and_reaped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    def spin() -> None:
        pid_file.write_text(str(os.getpid()))
        while True:
            pass

    with pytest.raises(OperationTimeout, match=r"^the test did not end within 1 s"):
        call_bounded(spin, "the test", 1, 8 * GIB)
    assert not Path(f"/proc/{pid_file.read_text()}").exists()


def test_past_its_memory_the_child_says_so() -> None:
    bound = _address_space() + GIB // 4

    def grow() -> int:
        return len(bytearray(GIB))

    with pytest.raises(MemoryError, match=f"^the test needed more than {bound >> 20} MiB"):
        call_bounded(grow, "the test", 60, bound)


def test_a_child_killed_by_a_signal_says_by_which() -> None:
    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(
        ChildFailed, match=r"^the test ended without a result \(killed by SIGKILL\)$"
    ):
        call_bounded(die, "the test", 60, 8 * GIB)
