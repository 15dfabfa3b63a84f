"""The ``kvmha-forensics`` command: parse, call the library, render, exit with a stable code."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, cast

import typer

from . import __version__
from .cli_console import (
    emit_json,
    err,
    fail,
    internal,
    interrupted,
    progress_bar,
    setup_logging,
    stdout,
)
from .cli_ha import (
    ApiOnlyOption,
    ConnectOption,
    DomainOption,
    QmpOption,
    address,
    status_cmd,
    watch_cmd,
)
from .cli_options import MemoryFormatOption, MemorySourceOption, seconds
from .cli_triage import triage_cmd
from .errors import ExitCode, ForensicsError, InputError
from .lab import scenarios
from .printable import printable

# The heavy modules (drgn, capstone, the analyzers) are imported by the commands that use them,
# so that quick commands (status, lab down) start fast.

app = typer.Typer(
    name="kvmha-forensics",
    help="Postmortem forensics and the failover-safe signal for frozen KVM guests.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
lab_app = typer.Typer(help="Bring real QEMU guests into frozen states, for tests and demos.")
app.add_typer(lab_app, name="lab")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    setup_logging(verbose)


@app.command()
def version() -> None:
    """Print the version."""
    stdout().print(f"kvmha-forensics {__version__}")


@lab_app.command("scenarios")
def lab_scenarios(as_json: JsonOpt = False) -> None:
    """List the lab's scenarios, what each does and what it needs."""
    if as_json:
        emit_json([{**asdict(s), "needs": s.needs} for s in scenarios.SCENARIOS])
        return
    for s in scenarios.SCENARIOS:
        stdout().print(f"{s.name:<18} {s.needs:<11} {s.runstate:<15} {s.description}")


@lab_app.command("fetch")
def lab_fetch(as_json: JsonOpt = False) -> None:
    """Fetch and build every guest asset once (cached outside the repository)."""
    from .lab import assets
    from .lab.paths import cache_dir

    with progress_bar(not as_json) as progress:
        linux = assets.linux(progress)
        boot_sectors = {s.name: str(assets.baremetal(s.name)) for s in scenarios.baremetal()}
    found = {
        "release": linux.kernel.release,
        "vmlinuz": str(linux.kernel.vmlinuz),
        "vmlinux": str(linux.kernel.vmlinux),
        "initramfs": str(linux.initramfs),
        "baremetal": boot_sectors,
    }
    if as_json:
        emit_json(found)
    else:
        err().print(f"guest assets ready: kernel {linux.kernel.release} in {cache_dir()}")


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
    import asyncio

    from .lab import launcher

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
        emit_json(asdict(guest))
        return
    err().print(f"accelerator: {guest.accel} ({guest.accel_reason})")
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
        stdout().print(f"{key:<15} {value}")


@lab_app.command("down")
def lab_down(directory: Annotated[Path, typer.Argument(help="The guest's --dir.")]) -> None:
    """End the QEMU of the lab guest in DIRECTORY, and only it."""
    from .lab import launcher

    guest = launcher.down(directory)
    err().print(f"stopped {guest.scenario} (qemu pid {guest.pid})")


bundle_app = typer.Typer(help="Inspect and verify bundles.")
app.add_typer(bundle_app, name="bundle")


@app.command("capture")
def capture_cmd(
    qmp: QmpOption = None,
    domain: DomainOption = None,
    connect: ConnectOption = None,
    api_only: ApiOnlyOption = False,
    qemu_log: Annotated[
        Path | None, typer.Option("--qemu-log", help="QEMU's stderr (found by itself if a file).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory the bundle is created in.")] = Path(
        "."
    ),
    memory_format: MemoryFormatOption = "elf",
    timeout: Annotated[
        float, typer.Option(callback=seconds(1), help="Seconds for the whole capture.")
    ] = 600,
    live: Annotated[bool, typer.Option("--live", help="Allow a running guest.")] = False,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="If --out holds a complete bundle of this QEMU in this runstate, made since it"
            " started, that is the result: no second capture of one freeze.",
        ),
    ] = False,
    memory_source: MemorySourceOption = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON lines; the last is the result.")
    ] = False,
) -> None:
    """Capture a frozen guest into a bundle, never changing its state."""
    from .capture.memory_source import MemorySource
    from .capture.steps import CaptureOptions, MemoryFormat
    from .cli_commands import run_capture

    where = address(qmp, domain, connect, api_only)
    opts = CaptureOptions(
        where, out, cast(MemoryFormat, memory_format), qemu_log, timeout, live, once,
        cast(MemorySource, memory_source),
    )  # fmt: skip
    code = run_capture(opts, as_json)
    if code:
        raise typer.Exit(code)


@bundle_app.command("verify")
def bundle_verify(directory: Annotated[Path, typer.Argument(help="A bundle directory.")]) -> None:
    """Re-check every artifact's size and sha256 against the manifest."""
    from .capture.bundle import Bundle

    opened = Bundle.open(directory)
    problems = opened.verify()
    for problem in problems:
        err().print(f"  {printable(problem, one_line=True)}", markup=False, highlight=False)
    if problems:
        raise InputError(f"{directory}: {len(problems)} problem(s) found", "the bundle is damaged")
    stdout().print(f"{directory}: {len(opened.manifest.artifacts)} artifacts verified")


@bundle_app.command("prune")
def bundle_prune(
    directory: Annotated[Path, typer.Argument(help="A directory bundles are captured into.")],
    older_than: Annotated[
        float,
        typer.Option(
            "--older-than",
            callback=seconds(0),
            help="Seconds without a write before an unlocked partial is stale; more than the"
            " longest capture timeout when captures on other hosts write here.",
        ),
    ] = 3600.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what is stale.")] = False,
) -> None:
    """Remove partial bundles that dead captures left behind (a lost node's)."""
    from .capture import partials

    try:
        found = partials.prune(directory, older_than, dry_run)
    except OSError as exc:
        raise InputError(
            f"cannot read {directory}: {exc.strerror}", "give a bundle directory"
        ) from exc
    for partial in found:
        done = {"stale": "stale" if dry_run else "removed", "in-use": "kept (a capture writes it)",
                "recent": f"kept (written {partial.idle:.0f}s ago)",
                "foreign": "kept (it holds a directory: no capture wrote it)",
                "stuck": f"stale, not removed: {partial.why}"}[partial.state]  # fmt: skip
        stdout().print(f"{printable(str(partial.path), one_line=True)}: {done}", markup=False,
                       highlight=False)  # fmt: skip
    stuck = sum(p.state == "stuck" for p in found)
    if stuck:
        raise InputError(f"{stuck} stale partial(s) in {directory} not removed", "see above")


@app.command("analyze")
def analyze_cmd(
    target: Annotated[
        Path | None, typer.Argument(help="A bundle, or a vmcore (ELF or kdump).")
    ] = None,
    vmlinux: Annotated[
        Path | None, typer.Option("--vmlinux", help="The guest kernel's vmlinux (checked).")
    ] = None,
    debuginfo_dir: Annotated[
        list[Path] | None, typer.Option("--debuginfo-dir", help="Where to look for vmlinux.")
    ] = None,
    qemu_log: Annotated[Path | None, typer.Option("--qemu-log", help="QEMU's stderr.")] = None,
    console: Annotated[Path | None, typer.Option("--console", help="Serial console log.")] = None,
    cpu_vendor: Annotated[
        str | None, typer.Option("--cpu-vendor", help="intel or amd (exit-reason names).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="text, json or markdown.")] = "text",
    output: Annotated[Path | None, typer.Option("--output", help="Write here, not stdout.")] = None,
    analyzer: Annotated[
        list[str] | None, typer.Option("--analyzer", help="Run only these (repeatable).")
    ] = None,
) -> None:
    """Explain why the guest froze: verdict, culprit, signature and evidence."""
    from .cli_commands import run_analyze
    from .report.render import RENDERERS
    from .vocabulary import Vendor

    if fmt not in RENDERERS:
        raise typer.BadParameter("use text, json or markdown", param_hint="--format")
    if cpu_vendor not in (None, "intel", "amd"):
        raise typer.BadParameter("use intel or amd", param_hint="--cpu-vendor")
    code = run_analyze(
        target,
        vmlinux=vmlinux,
        debuginfo_dirs=debuginfo_dir or (),
        qemu_log=qemu_log,
        console=console,
        cpu_vendor=cast(Vendor | None, cpu_vendor),
        fmt=fmt,
        output=output,
        analyzers=analyzer,
    )
    if code:
        raise typer.Exit(code)


app.command("status")(status_cmd)
app.command("watch")(watch_cmd)
app.command("triage")(triage_cmd)


@app.command("demo")
def demo_cmd(
    scenario: Annotated[
        str, typer.Option(help="The lab scenario (see 'lab scenarios').")
    ] = "panic",
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where the guest and bundle go (default: a temp dir)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="text, json or markdown.")] = "text",
) -> None:
    """Boot a lab guest, let it freeze, capture it, analyze it and print the report."""
    import asyncio

    from . import demo
    from .cli_commands import capture_progress
    from .report.render import RENDERERS, render

    if fmt not in RENDERERS:
        raise typer.BadParameter("use text, json or markdown", param_hint="--format")
    with progress_bar(True) as fetch, capture_progress(False) as sink:
        result = asyncio.run(
            demo.run(scenario, directory, lambda line: err().print(line, markup=False), fetch, sink)
        )
    report = result.report
    sys.stdout.write(render(report, fmt, color=stdout().is_terminal))
    if report.verdict.cause == "unknown" and result.guest.runstate != "running":
        raise typer.Exit(int(ExitCode.INCOMPLETE))


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
    """Entry point: run the app; every error becomes one line and its exit code
    (docs/cli.md): a :class:`ForensicsError`, a usage error, a bug."""
    try:
        code = app(prog_name="kvmha-forensics", standalone_mode=False)
    except ForensicsError as exc:
        fail(str(exc), int(exc.exit_code), exc.details)
    except typer.TyperException as exc:  # click's usage errors, raised as-is without standalone
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            sys.stderr.write(ctx.get_help() + "\n")  # the bare command: its help
            sys.exit(int(ExitCode.USAGE))
        where = f"{ctx.command_path}: " if ctx is not None else ""
        hint = f": see '{ctx.command_path} --help'" if ctx is not None else ""
        fail(f"{where}{exc.format_message()}{hint}", getattr(exc, "exit_code", ExitCode.USAGE))
    except (KeyboardInterrupt, typer.Abort):
        interrupted()
    except Exception as exc:
        internal(exc)
    sys.exit(code if isinstance(code, int) else 0)
