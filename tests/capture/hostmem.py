"""Host memory set-ups for direct-read tests: a swap file, pages pushed out to it, hugepages.

Each one is undone when its test ends (swapoff and the file removed; the hugepage count put
back). Where the host refuses one, the test is skipped with the host's own error.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kvmha_forensics.capture.guestram import RamRange

PAGE = 4096
SWAPPED = 1 << 62
SYS_PROCESS_MADVISE = 440  # x86_64
MADV_PAGEOUT = 21
NR_HUGEPAGES = Path("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")


@contextmanager
def swap_file(size: int) -> Iterator[Path]:
    """A swap file of ``size`` bytes under /var/tmp, swapped on while the block runs."""
    directory = Path(tempfile.mkdtemp(prefix="kvmha-swap-", dir="/var/tmp"))
    path = directory / "swap"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
        for argv in (["mkswap", str(path)], ["swapon", str(path)]):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                pytest.skip(f"{argv[0]} refused on this host: {done.stderr.strip()}")
        try:
            yield path
        finally:
            subprocess.run(["swapoff", str(path)], check=True, timeout=300)
    finally:
        shutil.rmtree(directory)


def page_out(pid: int, ranges: list[RamRange]) -> None:
    """Have the kernel reclaim process ``pid``'s pages of ``ranges`` (``process_madvise`` with
    ``MADV_PAGEOUT``): anonymous ones go to swap."""
    libc = ctypes.CDLL(None, use_errno=True)
    iov = (ctypes.c_size_t * 2)()
    pidfd = os.pidfd_open(pid)
    try:
        for ram in ranges:
            iov[0], iov[1] = ram.hva, ram.size
            if libc.syscall(SYS_PROCESS_MADVISE, pidfd, iov, 1, MADV_PAGEOUT, 0) < 0:
                errno = ctypes.get_errno()
                pytest.skip(f"process_madvise(MADV_PAGEOUT) refused: {os.strerror(errno)}")
    finally:
        os.close(pidfd)


def swapped_pages(pid: int, ranges: list[RamRange]) -> int:
    """How many pages of ``ranges`` pagemap says are in swap."""
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        count = 0
        for ram in ranges:
            raw = os.pread(fd, ram.size // PAGE * 8, ram.hva // PAGE * 8)
            count += sum(1 for (e,) in struct.iter_unpack("<Q", raw) if e & SWAPPED)
        return count
    finally:
        os.close(fd)


@contextmanager
def hugepages(count: int) -> Iterator[None]:
    """At least ``count`` free 2 MiB hugepages while the block runs; the old total after (end
    the guests that use them inside the block). The count is the host's: one test suite at a
    time changes it (a lock in the temporary directory)."""
    with open(Path(tempfile.gettempdir()) / "kvmha-forensics-hugepages.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = int(NR_HUGEPAGES.read_text())
        try:
            NR_HUGEPAGES.write_text(str(before + count))
        except OSError as exc:
            pytest.skip(f"cannot raise {NR_HUGEPAGES}: {exc.strerror}")
        try:
            free = int(NR_HUGEPAGES.with_name("free_hugepages").read_text())
            if free < count:
                pytest.skip(f"the kernel found only {free} of {count} free 2 MiB hugepages")
            yield
        finally:
            NR_HUGEPAGES.write_text(str(before))
            # pages still held by a QEMU that is exiting became surplus: wait until they are
            # freed, so the next reader of the count sees the old total
            surplus = NR_HUGEPAGES.with_name("surplus_hugepages")
            for _ in range(100):
                if surplus.read_text().strip() == "0":
                    break
                time.sleep(0.1)
