"""Stable words for KVM failure signatures: the event being delivered and the region class
of a guest address, so that two reports share a signature only when they are the same
failure (``docs/kvm-errors.md``, "Signatures"). Nothing here varies from run to run: no
addresses, CPU numbers or counts.
"""

from __future__ import annotations

from kvmha_forensics.x86.svm import VECTOR_NAMES

__all__ = ["PC_REGIONS", "event_name", "region_class"]

_VALID = 1 << 31
_TYPES = {
    0: "interrupt",
    2: "NMI",
    3: "exception",
    4: "software interrupt",
    5: "privileged software exception",
    6: "software exception",
}

#: Fixed regions of the x86 PC (QEMU pc/q35) guest-physical map, used without an mtree.
PC_REGIONS: tuple[tuple[int, int, str], ...] = (
    (0x0000_0000, 0x0009_FFFF, "low RAM"),
    (0x000A_0000, 0x000B_FFFF, "VGA window a0000-bffff"),
    (0x000C_0000, 0x000D_FFFF, "option ROM area c0000-dffff"),
    (0x000E_0000, 0x000F_FFFF, "BIOS area e0000-fffff"),
    (0xFEC0_0000, 0xFEC0_0FFF, "IOAPIC"),
    (0xFED0_0000, 0xFED0_03FF, "HPET"),
    (0xFEE0_0000, 0xFEEF_FFFF, "LAPIC"),
    (0xFF00_0000, 0xFFFF_FFFF, "firmware flash"),
)


def event_name(info: int) -> str | None:
    """The event an IDT-vectoring / EXITINTINFO word describes (``#PF``, ``NMI``,
    ``interrupt 0x2f``), or ``None`` when its valid bit is clear."""
    if not info & _VALID:
        return None
    vector = info & 0xFF
    kind = (info >> 8) & 0x7
    if kind == 2:
        return "NMI"
    if kind in (3, 5, 6) and vector in VECTOR_NAMES:
        return VECTOR_NAMES[vector]
    return f"{_TYPES.get(kind, 'event')} {vector:#x}"


def region_class(address: int, *, linear: bool = False) -> str:
    """The fixed PC region ``address`` falls in, else ``above 1 MiB``; with ``linear`` (paging
    on, no walk) the answer is about the identity-mapped reading and says so."""
    if address >> 47 not in (0, 0x1FFFF):
        return "non-canonical address"
    if address == (1 << 64) - 1:  # a jump or return to -1
        return "address -1"
    if address >> 47 == 0x1FFFF:  # no guest-physical address is this high: a kernel pointer
        return "upper-half virtual address"
    for start, end, name in PC_REGIONS:
        if start <= address <= end:
            return f"{name} (if identity-mapped)" if linear else name
    if address >= 1 << 32:
        return "above 4 GiB" + (" (linear)" if linear else "")
    return "above 1 MiB" + (" (linear)" if linear else "")
