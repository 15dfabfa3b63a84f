"""Which pages of guest RAM hold data, read from the QEMU process that maps it.

Per mapping of QEMU's address space (``/proc/PID/maps``):

- anonymous private memory (QEMU's default ``pc.ram``): ``/proc/PID/pagemap`` says which pages
  are present or swapped; a page that is neither has never been written and reads as zero. A
  present page mapped to one of the kernel's shared zero pages (the 4 KiB one, or the 2 MiB
  huge zero page THP maps on a read fault) is zero too: once anything has read all of guest RAM
  (QEMU's own dump, a migration), every page is present and most are those.
- shared or file-backed memory (``memory-backend-memfd``, ``-file``, ``share=on``): a page can
  hold data without being mapped in QEMU, so absence from pagemap means nothing. Those pages are
  read from the file itself (``/proc/PID/map_files``), where ``SEEK_DATA``/``SEEK_HOLE`` tell
  the file's holes (zero) from its data, without faulting anything into QEMU. In a private file
  mapping, present or swapped pages (possibly private copies) are read through QEMU's memory.

Everything is opened read-only; QEMU's memory is read with ``pread`` on ``/proc/PID/mem``
and ``process_vm_readv`` (swapped pages are read back from swap by the kernel, as any access
would). Zero PFNs are
learnt from this process's own mappings and, where readable, checked in ``/proc/kpageflags``.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from types import TracebackType
from typing import cast

from .guestram import RamRange

PAGE = 4096
HUGE = 2 << 20
PRESENT = 1 << 63
SWAPPED = 1 << 62
PFN_MASK = (1 << 55) - 1
KPF_ZERO_PAGE = 1 << 24
# pagemap's top byte per page: bit 7 present, bit 6 swapped
_NEED = bytes(1 if b & 0xC0 else 0 for b in range(256))


class HostMemoryError(OSError):
    """QEMU's memory or the files behind it could not be opened or read."""


class Source(IntEnum):
    MEM = 1  # QEMU's virtual memory, at a host address
    FILE = 2  # the file behind a mapping, at a file offset


@dataclass(frozen=True, slots=True)
class Vma:
    """One line of ``/proc/PID/maps``."""

    start: int
    end: int
    shared: bool
    offset: int
    path: str

    @property
    def anonymous(self) -> bool:
        return not self.path or self.path.startswith("[")


@dataclass(frozen=True, slots=True)
class Extent:
    """Pages ``[first, first + count)`` of a RAM range that may hold data, and where they are:
    a host address (``MEM``) or an offset in the file ``fd`` (``FILE``)."""

    first: int
    count: int
    source: Source
    where: int
    fd: int


@dataclass(frozen=True, slots=True)
class ZeroPfns:
    """The kernel's shared zero pages: 4 KiB ones, and the first PFN of the huge zero page."""

    small: frozenset[int]
    huge: int | None


def read_maps(pid: int) -> list[Vma]:
    found = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            path = parts[5].strip() if len(parts) > 5 else ""
            found.append(Vma(start, end, parts[1][3] == "s", int(parts[2], 16), path))
    return found


def _own_entry(address: int) -> int:
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(address // PAGE * 8)
        value: int = struct.unpack("<Q", f.read(8))[0]
        return value


def _is_zero_pfn(pfn: int) -> bool:
    """Whether ``/proc/kpageflags`` calls ``pfn`` a zero page (True when it cannot be read:
    the PFN came from a read fault on fresh anonymous memory of this very process)."""
    try:
        with open("/proc/kpageflags", "rb") as f:
            f.seek(pfn * 8)
            raw = f.read(8)
    except OSError:
        return True
    return len(raw) < 8 or bool(struct.unpack("<Q", raw)[0] & KPF_ZERO_PAGE)


def zero_pfns() -> ZeroPfns:
    """Map fresh anonymous memory, read it, and see which PFNs the kernel used."""
    small: set[int] = set()
    huge = None
    area = mmap.mmap(-1, 3 * HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        anchor = ctypes.c_char.from_buffer(area)
        base = ctypes.addressof(anchor)
        del anchor  # the mapping can be closed again
        aligned = (base + HUGE - 1) & ~(HUGE - 1)
        last = len(area) - PAGE  # past the aligned huge page, whatever the base
        area.madvise(mmap.MADV_NOHUGEPAGE, last, PAGE)
        _ = area[last]
        entry = _own_entry(base + last)
        if entry & PRESENT and entry & PFN_MASK and _is_zero_pfn(entry & PFN_MASK):
            small.add(entry & PFN_MASK)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            area.madvise(mmap.MADV_HUGEPAGE, aligned - base, HUGE)
            _ = area[aligned - base]
            head, next_ = _own_entry(aligned), _own_entry(aligned + PAGE)
            pfn = head & PFN_MASK
            if (head & PRESENT and pfn and pfn % (HUGE // PAGE) == 0
                    and next_ & PFN_MASK == pfn + 1 and _is_zero_pfn(pfn)):  # fmt: skip
                huge = pfn
    finally:
        area.close()
    return ZeroPfns(frozenset(small), huge)


def _data_extents(fd: int, start: int, end: int) -> list[tuple[int, int]]:
    """The page-aligned ``[a, b)`` of file offsets in ``[start, end)`` that hold data."""
    found = []
    pos = start
    while pos < end:
        try:
            a = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break
            raise
        if a >= end:
            break
        b = min(os.lseek(fd, a, os.SEEK_HOLE), end)
        a = max(a & ~(PAGE - 1), start)
        b = min((b + PAGE - 1) & ~(PAGE - 1), end)
        found.append((a, b))
        pos = b
    return found


def _entries_mapping(raw: bytes, pfn: int) -> int:
    """Bit ``i`` (as byte ``i`` of an integer: 1) set for each pagemap entry of ``raw`` that
    maps ``pfn`` and is present. All entries at once: one strided slice per byte of an entry,
    each matched through a translation table, AND-ed as integers."""
    want = pfn.to_bytes(8, "little")
    found = -1
    for k in range(8):
        if k < 6:
            table = bytes(1 if b == want[k] else 0 for b in range(256))
        elif k == 6:  # PFN bits 48-54; bit 55 is soft-dirty
            table = bytes(1 if b & 0x7F == want[6] else 0 for b in range(256))
        else:  # present, not swapped; bits 56-61 are flags
            table = bytes(1 if b & 0xC0 == 0x80 else 0 for b in range(256))
        found &= int.from_bytes(raw[k::8].translate(table), "little")
        if not found:
            return 0
    return found


def runs(mask: bytearray | bytes) -> list[tuple[int, int]]:
    """``[a, b)`` runs of 1s in a 0/1 byte mask."""
    runs = []
    a = mask.find(1)
    while a != -1:
        b = mask.find(0, a)
        if b == -1:
            b = len(mask)
        runs.append((a, b))
        a = mask.find(1, b)
    return runs


@dataclass
class HostMemory:
    """QEMU's memory (process ``pid``), opened for reading; use as a context manager."""

    pid: int
    zero: ZeroPfns = field(default_factory=zero_pfns)
    mem: int = -1
    pagemap: int = -1
    files: dict[tuple[int, int], int] = field(default_factory=dict)
    vmas: list[Vma] = field(default_factory=list)
    huge_patterns: dict[int, bytes] = field(default_factory=dict)

    def __enter__(self) -> HostMemory:
        try:
            self.mem = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            self.pagemap = os.open(f"/proc/{self.pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
            self.vmas = read_maps(self.pid)
        except OSError as exc:
            self.close()
            raise HostMemoryError(exc.errno, f"cannot read QEMU's memory: {exc.strerror}") from exc
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for fd in [self.mem, self.pagemap, *self.files.values()]:
            if fd >= 0:
                os.close(fd)
        self.mem = self.pagemap = -1
        self.files.clear()

    def plan(self, ram: RamRange) -> list[Extent]:
        """The extents of ``ram`` that may hold data, in order; every other page is zero."""
        extents: list[Extent] = []
        hva, end = ram.hva, ram.hva + ram.size
        for vma in self.vmas:
            if vma.end <= hva or vma.start >= end:
                continue
            a, b = max(vma.start, hva), min(vma.end, end)
            extents += self._plan_vma(vma, a, b, (a - ram.hva) // PAGE)
        covered = sum(min(v.end, end) - max(v.start, hva) for v in self.vmas
                      if v.end > hva and v.start < end)  # fmt: skip
        if covered != ram.size:
            raise HostMemoryError(errno.EFAULT, f"guest RAM at {ram.hva:#x} is not all mapped")
        return extents

    def _plan_vma(self, vma: Vma, a: int, b: int, first: int) -> list[Extent]:
        npages = (b - a) // PAGE
        out: list[Extent] = []
        if vma.shared or not vma.anonymous:
            fd = self._file(vma)
            offset = vma.offset + (a - vma.start)
            mask = bytearray(npages)
            for x, y in _data_extents(fd, offset, offset + (b - a)):
                mask[(x - offset) // PAGE : (y - offset) // PAGE] = b"\1" * ((y - x) // PAGE)
            if not vma.shared:  # private copies live in QEMU's memory, not in the file
                present = self._needed(a, npages)
                for x, y in runs(present):
                    mask[x:y] = bytes(y - x)
                out += [Extent(first + x, y - x, Source.MEM, a + x * PAGE, self.mem)
                        for x, y in runs(present)]  # fmt: skip
            out += [Extent(first + x, y - x, Source.FILE, offset + x * PAGE, fd)
                    for x, y in runs(mask)]  # fmt: skip
            return sorted(out, key=lambda e: e.first)
        need = self._needed(a, npages)
        return [Extent(first + x, y - x, Source.MEM, a + x * PAGE, self.mem) for x, y in runs(need)]

    def _needed(self, a: int, npages: int) -> bytearray:
        """1 for each page at ``a`` that is present (not a zero page) or swapped."""
        raw = os.pread(self.pagemap, npages * 8, a // PAGE * 8)
        if len(raw) != npages * 8:
            raise HostMemoryError(errno.EIO, "short read of QEMU's pagemap")
        need = bytearray(raw[7::8].translate(_NEED))
        if self.zero.huge is not None:
            self._drop_huge_zero(raw, a, need)
        for pfn in self.zero.small:
            hits = _entries_mapping(raw, pfn)
            if hits:  # zero where the 4 KiB zero page is mapped
                need = bytearray(
                    (int.from_bytes(need, "little") & ~hits).to_bytes(npages, "little")
                )
        return need

    def _drop_huge_zero(self, raw: bytes, a: int, need: bytearray) -> None:
        huge = self.zero.huge
        assert huge is not None
        per = HUGE // PAGE
        i, n = 0, len(need)
        while i < n:
            into = ((a + i * PAGE) % HUGE) // PAGE
            count = min(per - into, n - i)
            (entry,) = struct.unpack_from("<Q", raw, i * 8)
            if entry & PRESENT and entry & PFN_MASK == huge + into:
                flags = entry & ~PFN_MASK
                pattern = self.huge_patterns.get(flags)
                if pattern is None:
                    pattern = struct.pack(f"<{per}Q", *(flags | (huge + k) for k in range(per)))
                    self.huge_patterns[flags] = pattern
                if raw[i * 8 : (i + count) * 8] == pattern[into * 8 : (into + count) * 8]:
                    need[i : i + count] = bytes(count)
            i += count

    def _file(self, vma: Vma) -> int:
        key = (vma.start, vma.end)
        if key not in self.files:
            path = f"/proc/{self.pid}/map_files/{vma.start:x}-{vma.end:x}"
            try:
                self.files[key] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise HostMemoryError(
                    exc.errno, f"cannot open the file behind guest RAM ({vma.path}): {exc.strerror}"
                ) from exc
        return self.files[key]

    def read(self, extent: Extent, skip: int, view: memoryview) -> None:
        """Fill ``view`` from ``extent``, starting ``skip`` pages into it."""
        at = extent.where + skip * PAGE
        done = 0
        if extent.source == Source.MEM and _VM_READ is not None:
            done = _vm_read(self.pid, at, view)
        while done < len(view):
            try:
                got = os.preadv(extent.fd, [view[done:]], at + done)
            except OSError as exc:
                raise HostMemoryError(
                    exc.errno, f"cannot read guest RAM at {at + done:#x}: {exc.strerror}"
                ) from exc
            if got <= 0:
                if extent.source == Source.FILE:  # past the file's end: zero
                    view[done:] = bytes(len(view) - done)
                    return
                raise HostMemoryError(errno.EIO, f"cannot read guest RAM at {at + done:#x}")
            done += got


class _IoVec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


def _libc_vm_read() -> Callable[..., int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).process_vm_readv
    except (OSError, AttributeError):
        return None
    iov = ctypes.POINTER(_IoVec)
    fn.argtypes = (ctypes.c_int, iov, ctypes.c_ulong, iov, ctypes.c_ulong, ctypes.c_ulong)
    fn.restype = ctypes.c_ssize_t
    return cast(Callable[..., int], fn)


_VM_READ = _libc_vm_read()


def _vm_read(pid: int, address: int, view: memoryview) -> int:
    """Bytes read from ``pid``'s memory at ``address`` into ``view`` with process_vm_readv
    (pages pinned and copied once: ~2-3x faster here than /proc/PID/mem, which copies through
    a bounce page); fewer than asked (0 when refused) leaves the rest to ``pread``."""
    assert _VM_READ is not None
    anchor = ctypes.c_char.from_buffer(view)
    try:
        local = _IoVec(ctypes.addressof(anchor), len(view))
        remote = _IoVec(address, len(view))
        got = _VM_READ(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    finally:
        del anchor
    return max(got, 0)
