"""The ``kvmha-forensics`` command: parse, call the library, render, exit with a stable code."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from . import __version__
from .errors import ExitCode, ForensicsError
from .lab import launcher, scenarios

app = typer.Typer(
    name="kvmha-forensics",
    help="Postmortem forensics and the failover-safe signal for frozen KVM guests.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
lab_app = typer.Typer(help="Bring real QEMU guests into frozen states, for tests and demos.")
app.add_typer(lab_app, name="lab")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, float | None], None]]:
    """A progress callback: a rich bar on a terminal, silence elsewhere."""
    if not (enabled and err.is_terminal):
        yield lambda _description, _percent: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("", total=100)

        def update(description: str, percent: float | None) -> None:
            bar.update(task, description=description, completed=percent or 0)

        yield update


def _emit_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def version() -> None:
    """Print the version."""
    out.print(f"kvmha-forensics {__version__}")


@lab_app.command("scenarios")
def lab_scenarios(as_json: JsonOpt = False) -> None:
    """List the lab's scenarios, what each does and what it needs."""
    if as_json:
        _emit_json([{**asdict(s), "needs": s.needs} for s in scenarios.SCENARIOS])
        return
    for s in scenarios.SCENARIOS:
        out.print(f"{s.name:<18} {s.needs:<11} {s.runstate:<15} {s.description}")


@lab_app.command("up")
def lab_up(
    scenario: Annotated[str, typer.Argument(help="A scenario name (see 'lab scenarios').")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where the guest's files go.")
    ] = None,
    memory: Annotated[str, typer.Option(help="Guest memory, e.g. 256M or 2G.")] = "256M",
    vcpus: Annotated[int | None, typer.Option(min=1, max=64, help="vCPU count.")] = None,
    accel: Annotated[str, typer.Option(help="auto, kvm or tcg.")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Boot SCENARIO's guest, wait until it is frozen, and leave it frozen."""
    chosen = scenarios.get(scenario)
    target = directory or Path(f"kvmha-lab-{chosen.name}")
    with progress_bar(not as_json) as progress:
        guest = asyncio.run(
            launcher.up(
                chosen,
                target,
                memory_mb=parse_size_mb(memory),
                vcpus=vcpus,
                accel=accel,
                progress=progress,
            )
        )
    if as_json:
        _emit_json(asdict(guest))
        return
    err.print(f"accelerator: {guest.accel} ({guest.accel_reason})")
    rows = (
        ("runstate", guest.runstate),
        ("qmp", guest.qmp),
        ("qmp (spare)", guest.qmp_spare),
        ("qemu pid", str(guest.pid)),
        ("qemu stderr", guest.stderr),
        ("serial console", guest.serial),
        ("vmlinux", guest.vmlinux or "-"),
    )
    for key, value in rows:
        out.print(f"{key:<15} {value}")


@lab_app.command("down")
def lab_down(directory: Annotated[Path, typer.Argument(help="The guest's --dir.")]) -> None:
    """End the QEMU of the lab guest in DIRECTORY, and only it."""
    guest = launcher.down(directory)
    err.print(f"stopped {guest.scenario} (qemu pid {guest.pid})")


def parse_size_mb(text: str) -> int:
    """``256M``, ``2G``, ``1024`` (MiB) → MiB."""
    units = {"M": 1, "G": 1024}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = units.get(value[-1:])
    number = value[:-1] if scale else value
    if not number.isdigit() or int(number) == 0:
        raise typer.BadParameter(f"{text!r} is not a size like 256M or 2G")
    return int(number) * (scale or 1)


def main() -> None:
    """Entry point: run the app; a :class:`ForensicsError` becomes one line and its exit code."""
    try:
        app()
    except ForensicsError as exc:
        err.print(f"kvmha-forensics: error: {exc}", markup=False, highlight=False)
        if exc.details:
            err.print(exc.details, markup=False, highlight=False)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        err.print("kvmha-forensics: interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("KVMHA_DEBUG"):
            raise
        err.print(
            f"kvmha-forensics: internal error: {type(exc).__name__}: {exc} "
            "(set KVMHA_DEBUG=1 for the traceback and report it)",
            markup=False,
            highlight=False,
        )
        sys.exit(int(ExitCode.INTERNAL))
