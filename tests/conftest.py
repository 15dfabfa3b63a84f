"""Shared test fixtures: the real-guest lab, captured bundles, and the golden-file flag.

Real-guest tests boot the lab's QEMU guests once per session and share them: a frozen guest
does not change, so every test may look at it (capture never changes the runstate — a test
checks exactly that). Tests that need KVM skip, saying why, where /dev/kvm is unusable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmha_forensics.capture.steps import CaptureOptions, capture
from kvmha_forensics.errors import ForensicsError
from kvmha_forensics.lab import launcher, scenarios
from kvmha_forensics.lab.launcher import LabGuest
from kvmha_forensics.lab.paths import kernel_dir
from kvmha_forensics.transport.qmp import Endpoint

KVM_OK, KVM_WHY = launcher.kvm_usable()
DEBUGINFO = kernel_dir()
"""The lab kernels' debug info, passed to analysis as --debuginfo-dir (the library never
searches the lab's cache itself)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output (review with git diff)",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


def require_kvm(scenario: scenarios.Scenario) -> None:
    if scenario.needs_kvm and not KVM_OK:
        pytest.skip(f"scenario {scenario.name} needs KVM: {KVM_WHY}")


class Lab:
    """Brings lab guests up on demand and ends them all at the end of the session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.shared: dict[str, LabGuest] = {}
        self.started: list[LabGuest] = []
        self.bundles: dict[tuple[str, str, str], Path] = {}

    def up(self, name: str, tag: str = "", **kwargs: object) -> LabGuest:
        """A new guest of scenario ``name`` in its own directory."""
        scenario = scenarios.get(name)
        require_kvm(scenario)
        directory = self.root / f"{name}{tag}-{len(self.started)}"
        guest = asyncio.run(launcher.up(scenario, directory, **kwargs))  # type: ignore[arg-type]
        self.started.append(guest)
        return guest

    def frozen(self, name: str) -> LabGuest:
        """The session's shared guest of scenario ``name`` (never to be changed by a test)."""
        if name not in self.shared:
            self.shared[name] = self.up(name, "-shared")
        return self.shared[name]

    def bundle(self, name: str, memory_format: str = "elf", source: str = "auto") -> Path:
        """The session's bundle of the shared ``name`` guest (memory read directly from QEMU
        where it can be; ``source="dump"`` for QEMU's dump-guest-memory)."""
        key = (name, memory_format, source)
        if key not in self.bundles:
            guest = self.frozen(name)
            opts = CaptureOptions(
                Endpoint(path=guest.qmp),
                self.root / "bundles",
                memory_format,  # type: ignore[arg-type]
                live=guest.runstate == "running",
                memory_source=source,  # type: ignore[arg-type]
            )
            self.bundles[key] = asyncio.run(capture(opts)).bundle
        return self.bundles[key]

    def down(self, guest: LabGuest) -> None:
        launcher.down(Path(guest.dir))

    def close(self) -> None:
        for guest in self.started:
            with contextlib.suppress(ForensicsError):  # already down
                launcher.down(Path(guest.dir))


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    started = Lab(tmp_path_factory.mktemp("lab"))
    yield started
    started.close()


def runstate(socket_path: str) -> str:
    """The guest's runstate, asked over the given QMP socket."""
    from kvmha_forensics.transport.qmp import session

    async def ask() -> str:
        async with session(Endpoint(path=socket_path)) as qmp:
            status = await qmp.execute("query-status")
            assert isinstance(status, dict)
            return str(status["status"])

    return asyncio.run(ask())
