"""Stable words of KVM signatures: event names and region classes (docs/kvm-errors.md)."""

from __future__ import annotations

import pytest

from kvmha_forensics.x86.failure_keys import event_name, region_class


@pytest.mark.parametrize(
    ("info", "name"),
    [(0x80000B0E, "#PF"), (0x80000202, "NMI"), (0x8000002F, "interrupt 0x2f"), (0x0B0E, None)],
)
def test_event_names(info: int, name: str | None) -> None:
    assert event_name(info) == name


@pytest.mark.parametrize(
    ("address", "linear", "region"),
    [
        (0x2B570, False, "low RAM"),
        (0xBFFF0, False, "VGA window a0000-bffff"),
        (0xFEE00300, False, "LAPIC"),
        (0xFED00000, False, "HPET"),
        (0xFFFFFFF0, False, "firmware flash"),
        (0x7FFFFFF000, False, "above 4 GiB"),
        (0x100000, True, "above 1 MiB (linear)"),
        (0xB8000, True, "VGA window a0000-bffff (if identity-mapped)"),
        (0xFFFF80000020EA22, True, "upper-half virtual address"),
        ((1 << 64) - 1, False, "address -1"),
        (0x0000800000000000, False, "non-canonical address"),
    ],
)
def test_region_classes(address: int, linear: bool, region: str) -> None:
    assert region_class(address, linear=linear) == region
