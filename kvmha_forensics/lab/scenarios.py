"""The lab's scenarios: each brings a real guest into one frozen state a user will meet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import InputError

Guest = Literal["linux", "baremetal"]
Disk = Literal["eio", "enospc"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """What to boot, how, and the frozen state it must reach."""

    name: str
    description: str
    guest: Guest
    runstate: str
    event: str | None
    needs_kvm: bool = False
    vcpus: int = 1
    disk: Disk | None = None
    timeout: float = 90.0

    @property
    def needs(self) -> str:
        return "KVM" if self.needs_kvm else "TCG or KVM"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "panic", "Linux panics via sysrq-trigger 'c'", "linux", "guest-panicked", "GUEST_PANICKED"
    ),
    Scenario(
        "oops",
        "NULL write in the trigger module, oops=panic",
        "linux",
        "guest-panicked",
        "GUEST_PANICKED",
    ),
    Scenario("bug", "BUG() in the trigger module", "linux", "guest-panicked", "GUEST_PANICKED"),
    Scenario(
        "softlockup",
        "the module spins with preemption off, softlockup_panic=1",
        "linux",
        "guest-panicked",
        "GUEST_PANICKED",
    ),
    Scenario(
        "hung-task",
        "a task stuck in D state, hung_task_panic=1, 3 s timeout",
        "linux",
        "guest-panicked",
        "GUEST_PANICKED",
    ),
    Scenario(
        "smp-panic",
        "Linux on 2 vCPUs panics on CPU 1",
        "linux",
        "guest-panicked",
        "GUEST_PANICKED",
        vcpus=2,
    ),
    Scenario(
        "io-error",
        "writes to a virtio disk whose backend returns EIO, werror=stop",
        "linux",
        "io-error",
        "BLOCK_IO_ERROR",
        disk="eio",
    ),
    Scenario(
        "enospc",
        "writes to a disk whose backend runs out of space, werror=enospc",
        "linux",
        "io-error",
        "BLOCK_IO_ERROR",
        disk="enospc",
    ),
    Scenario(
        "emulation-failure",
        "bare metal: SSE load from HPET MMIO in 64-bit mode",
        "baremetal",
        "internal-error",
        "STOP",
        needs_kvm=True,
        timeout=30.0,
    ),
    Scenario(
        "mmio-fetch",
        "bare metal: a jump into MMIO",
        "baremetal",
        "internal-error",
        "STOP",
        needs_kvm=True,
        timeout=30.0,
    ),
    Scenario(
        "triple-fault",
        "bare metal: an exception with an empty IDT",
        "baremetal",
        "shutdown",
        "SHUTDOWN",
        timeout=30.0,
    ),
    Scenario("running", "Linux, healthy and idle (the control case)", "linux", "running", None),
)


def get(name: str) -> Scenario:
    """The scenario called ``name``; an unknown name lists the valid ones."""
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    valid = ", ".join(s.name for s in SCENARIOS)
    raise InputError(f"unknown scenario {name!r}", f"choose one of: {valid}")


def baremetal() -> tuple[Scenario, ...]:
    """The scenarios whose guest is a bare-metal boot sector."""
    return tuple(s for s in SCENARIOS if s.guest == "baremetal")
