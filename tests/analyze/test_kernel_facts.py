"""kernel.dmesg_and_panic: drgn's get_dmesg and panic_message, from one read of the log."""

from __future__ import annotations

import pytest
from drgn.helpers.linux.panic import panic_message
from drgn.helpers.linux.printk import get_dmesg

from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.kernel import dmesg_and_panic, open_program
from kvmha_forensics.lab import assets
from tests.conftest import Lab


@pytest.mark.lab
@pytest.mark.parametrize("name", ["panic", "oops", "bug", "io-error"])
def test_the_same_as_drgns_helpers(lab: Lab, name: str) -> None:
    """A panic, an oops, a BUG() and a guest that did not crash (no panic message)."""
    dump = Bundle.open(lab.bundle(name)).file("memory-elf")
    assert dump is not None

    prog = open_program(dump, None, assets.kernel().vmlinux)
    ours, drgns = dmesg_and_panic(prog), (get_dmesg(prog), panic_message(prog))
    assert ours == drgns and ours[0].endswith(b"\n")
    assert (ours[1] is None) == (name == "io-error")
