"""The page-table walk in every paging mode, on small hand-built page tables.

(Long-mode 4-level paging is also checked against drgn on a real Linux dump in
tests/capture/test_capture.py.)
"""

from __future__ import annotations

from kvmha_forensics.x86.modes import CR0_PG, EFER_LMA
from kvmha_forensics.x86.paging import CR4_LA57, CR4_PAE, CR4_PSE, read_virtual, translate

P, PS = 1, 1 << 7


class FakeMemory:
    """Sparse guest-physical memory."""

    def __init__(self) -> None:
        self.bytes: dict[int, int] = {}

    def put(self, address: int, value: int, width: int) -> None:
        for i, b in enumerate(value.to_bytes(width, "little")):
            self.bytes[address + i] = b

    def read(self, physical: int, size: int) -> bytes | None:
        try:
            return bytes(self.bytes[physical + i] for i in range(size))
        except KeyError:
            return None

    def word(self, address: int, width: int) -> int | None:
        raw = self.read(address, width)
        return int.from_bytes(raw, "little") if raw else None


def test_paging_off_is_identity() -> None:
    assert translate(FakeMemory(), 0, 0, 0, 0, 0x7C2D) == 0x7C2D


def test_32bit_paging_4k_and_pse_4m() -> None:
    mem = FakeMemory()
    linear = 0x0040_1234  # PDE 1, PTE 1
    mem.put(0x1000 + 1 * 4, 0x2000 | P, 4)
    mem.put(0x2000 + 1 * 4, 0x0009_9000 | P, 4)
    assert translate(mem, CR0_PG, 0x1000, 0, 0, linear) == 0x0009_9234
    mem.put(0x1000 + 2 * 4, 0x0C00_0000 | PS | P, 4)  # 4 MiB page at 192 MiB
    assert translate(mem, CR0_PG, 0x1000, CR4_PSE, 0, 0x0081_2345) == 0x0C01_2345
    assert translate(mem, CR0_PG, 0x1000, 0, 0, 0x0081_2345) is None  # PS ignored without PSE


def test_pae_2m_page_and_not_present() -> None:
    mem = FakeMemory()
    mem.put(0x3000 + 3 * 8, 0x4000 | P, 8)  # PDPTE 3 (the top GiB)
    mem.put(0x4000 + 0x1F6 * 8, 0xFEE0_0000 | PS | P, 8)  # 2 MiB page
    assert translate(mem, CR0_PG, 0x3000, CR4_PAE, 0, 0xFEC0_0ABC) == 0xFEE0_0ABC
    assert translate(mem, CR0_PG, 0x3000, CR4_PAE, 0, 0x0000_1000) is None


def test_long_mode_4_and_5_level_with_1g_page() -> None:
    mem = FakeMemory()
    linear = 0xFFFF_8880_4000_0123  # PML4 0x111, PDPT 1
    mem.put(0x5000 + 0x111 * 8, 0x6000 | P, 8)
    mem.put(0x6000 + 1 * 8, 0x1_4000_0000 | PS | P, 8)  # 1 GiB page
    assert translate(mem, CR0_PG, 0x5000, CR4_PAE, EFER_LMA, linear) == 0x1_4000_0123
    mem.put(0x7000 + 0x1FF * 8, 0x5000 | P, 8)  # PML5 entry 511 → the same PML4
    five = translate(mem, CR0_PG, 0x7000, CR4_PAE | CR4_LA57, EFER_LMA, linear)
    assert five == 0x1_4000_0123


def test_read_virtual_crosses_pages_and_stops_at_unmapped() -> None:
    mem = FakeMemory()
    mem.put(0x1000, 0x2000 | P, 4)
    mem.put(0x2000 + 0 * 4, 0x8000 | P, 4)
    mem.put(0x2000 + 1 * 4, 0xA000 | P, 4)
    mem.put(0x8FFE, 0x0B0F, 2)
    mem.put(0xA000, 0xF4, 1)
    assert read_virtual(mem, CR0_PG, 0x1000, 0, 0, 0x0FFE, 3) == bytes([0x0F, 0x0B, 0xF4])
    assert read_virtual(mem, CR0_PG, 0x1000, 0, 0, 0x1FFF, 2) is None
