"""HA fixtures: guests a test owns (it may pause, kill or load them), ended after the test."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kvmha_forensics.lab import launcher, scenarios
from kvmha_forensics.lab.launcher import LabGuest
from kvmha_forensics.transport.qmp import Endpoint, session
from tests.conftest import Lab, require_kvm

OwnGuest = Callable[..., LabGuest]


@pytest.fixture
def own(lab: Lab) -> Iterator[OwnGuest]:
    """``own(scenario, directory=None, **up_kwargs)``: a fresh guest for this test only (in
    ``directory`` when given), ended at the test's end (also when ``directory`` went first)."""
    mine: list[LabGuest] = []

    def up(name: str, directory: Path | None = None, **kwargs: object) -> LabGuest:
        if directory is None:
            guest = lab.up(name, "-ha", **kwargs)
        else:
            scenario = scenarios.get(name)
            require_kvm(scenario)
            guest = asyncio.run(launcher.up(scenario, directory, **kwargs))  # type: ignore[arg-type]
        mine.append(guest)
        return guest

    yield up
    for guest in reversed(mine):  # the newest first: a directory may have held several
        launcher.end(guest)


def qmp(path: str, command: str, arguments: dict[str, object] | None = None) -> object:
    """Run one QMP command on a guest the test owns."""

    async def run() -> object:
        async with session(Endpoint(path=path)) as s:
            return await s.execute(command, arguments)

    return asyncio.run(run())
