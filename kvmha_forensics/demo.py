"""The demo: bring up a lab guest, let it freeze, capture it, analyze it, shut it down."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .analyze import analyze, gather
from .capture.steps import CaptureOptions, Progress, capture
from .lab import assets, launcher, scenarios
from .lab.paths import kernel_dir
from .report.model import Report
from .transport.qmp import Endpoint


@dataclass(frozen=True, slots=True)
class DemoResult:
    guest: launcher.LabGuest
    bundle: Path
    report: Report


async def run(
    scenario_name: str,
    workdir: Path | None,
    say: Callable[[str], None],
    fetch_progress: assets.Progress,
    capture_progress: Callable[[Progress], None],
) -> DemoResult:
    """Each stage as a user would run it; the guest is ended whatever happens."""
    scenario = scenarios.get(scenario_name)
    root = workdir or Path(tempfile.mkdtemp(prefix="kvmha-demo-"))
    say(f"1/4 booting the {scenario.name} guest ({scenario.description}) in {root / 'guest'}")
    guest = await launcher.up(scenario, root / "guest", progress=fetch_progress)
    try:
        say(f"    frozen: runstate {guest.runstate} ({guest.accel}); qmp {guest.qmp}")
        say("2/4 capturing it over QMP (the guest's state is not changed)")
        opts = CaptureOptions(
            Endpoint(path=guest.qmp), root / "bundles", live=guest.runstate == "running"
        )
        result = await capture(opts, capture_progress)
        say(f"    bundle {result.bundle} ({result.manifest.status})")
        say("3/4 analyzing the bundle")
        inputs, problems = gather(result.bundle, debuginfo_dirs=(kernel_dir(),))
        report = analyze(inputs, problems)
    finally:
        say("4/4 shutting the guest down")
        launcher.down(Path(guest.dir))
    return DemoResult(guest, result.bundle, report)
