"""The ``capture`` and ``analyze`` commands' runs and output, shared by the typer commands
(:mod:`.cli`) and the console script's quick paths (:mod:`.cli_quick`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .cli_console import emit_json, progress_bar, stdout_is_terminal
from .errors import ExitCode
from .printable import printable

if TYPE_CHECKING:
    from pathlib import Path

    from .capture.steps import CaptureOptions, Progress, ProgressSink
    from .vocabulary import Vendor


def run_capture(opts: CaptureOptions, as_json: bool) -> int:
    """Capture as ``opts`` say, print the bundle (or the JSON result); the exit code."""
    import asyncio

    from .capture.steps import capture

    with capture_progress(as_json) as sink:
        result = asyncio.run(capture(opts, sink))
    summary = {
        "bundle": str(result.bundle),
        "status": result.manifest.status,
        "reasons": list(result.manifest.reasons),
        "runstate": result.freeze.runstate,
        "cause": result.freeze.cause,
        "existing": result.existing,
    }
    if as_json:
        emit_json(summary)
    else:
        print(result.bundle)
        made = "already captured" if result.existing else "capture"
        print(f"{made} {result.manifest.status}: {result.freeze.runstate}", file=sys.stderr)
        for reason in result.manifest.reasons:
            print(f"  missing: {printable(reason, one_line=True)}", file=sys.stderr)
    return 0 if result.manifest.status == "complete" else int(ExitCode.INCOMPLETE)


@contextmanager
def capture_progress(as_json: bool) -> Iterator[ProgressSink]:
    """JSON lines with ``--json``; a bar for the memory dump on a terminal; else quiet."""
    if as_json:

        def emit(p: Progress) -> None:
            if p.status != "progress":
                emit_json({"event": "step", "step": p.step, "status": p.status, "detail": p.detail})

        yield emit
        return
    with progress_bar(True) as update:

        def show(p: Progress) -> None:
            if p.status == "progress" and p.total:
                update("dumping guest memory", 100 * p.completed / p.total)
            elif p.step == "memory" and p.status == "start" and p.detail:
                print(f"  memory: {p.detail}", file=sys.stderr)
            elif p.status == "failed":
                print(f"  {p.step}: failed: {printable(str(p.detail), one_line=True)}",
                      file=sys.stderr)  # fmt: skip

        yield show


def run_analyze(
    target: Path | None,
    *,
    vmlinux: Path | None,
    debuginfo_dirs: Sequence[Path],
    qemu_log: Path | None,
    console: Path | None,
    cpu_vendor: Vendor | None,
    fmt: str,
    output: Path | None,
    analyzers: list[str] | None,
) -> int:
    """Analyze, write the report in ``fmt`` (a renderer's name) to ``output`` or stdout; the
    exit code."""
    from .analyze import analyze, gather
    from .private import write_private
    from .report.render import render

    inputs, problems = gather(
        target,
        qemu_log=qemu_log,
        console=console,
        vmlinux=vmlinux,
        debuginfo_dirs=debuginfo_dirs,
        cpu_vendor=cpu_vendor,
    )
    report = analyze(inputs, problems, analyzers)
    rendered = render(report, fmt, color=output is None and stdout_is_terminal())
    if output is None:
        sys.stdout.write(rendered)
    else:
        write_private(output, rendered)
    incomplete = report.verdict.cause == "unknown" or report.partial
    return int(ExitCode.INCOMPLETE) if incomplete else 0
