"""The HA commands, ``status`` and ``watch``: parse, call the library, render, exit code.

Registered on the main app in :mod:`kvmha_forensics.cli`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from .cli_console import emit_json
from .cli_options import MemoryFormatOption, MemorySourceOption, seconds
from .errors import InputError
from .limits import STATUS_TIMEOUT

if TYPE_CHECKING:
    from .capture.memory_source import MemorySource
    from .capture.steps import MemoryFormat
    from .ha.watch import WatchOptions
    from .transport.base import Address

# watch (capture, analysis) is imported by the watch command only: status stays quick to start


QmpOption = Annotated[str | None, typer.Option("--qmp", help="QMP unix socket path, or HOST:PORT.")]
DomainOption = Annotated[
    str | None, typer.Option("--domain", help="A libvirt domain's name or UUID (instead of --qmp).")
]
ConnectOption = Annotated[
    str | None, typer.Option("--connect", help="With --domain: libvirt URI [qemu:///system].")
]
ApiOnlyOption = Annotated[
    bool,
    typer.Option(
        "--libvirt-api-only", help="With --domain: libvirt's own APIs only, no monitor commands."
    ),
]


def address(
    qmp: str | None, domain: str | None, connect: str | None, api_only: bool, events: bool = True
) -> Address:
    """The guest the options name: ``--qmp``, or ``--domain`` [``--connect``]."""
    if (qmp is None) == (domain is None):
        raise typer.BadParameter("give either --qmp SOCKET or --domain NAME|UUID")
    if domain is None:
        if connect is not None or api_only:
            raise typer.BadParameter("--connect and --libvirt-api-only go with --domain")
        from .transport.qmp import Endpoint

        return Endpoint.parse(cast(str, qmp))
    from .transport.libvirt import DEFAULT_URI, Domain

    return Domain(domain, connect or DEFAULT_URI, api_only, events)


def status_cmd(
    qmp: QmpOption = None,
    domain: DomainOption = None,
    connect: ConnectOption = None,
    api_only: ApiOnlyOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    timeout: Annotated[
        float, typer.Option(callback=seconds(0.05), help="Seconds before answering 'busy'.")
    ] = STATUS_TIMEOUT,
) -> None:
    """Say whether the guest is running, frozen, paused or gone, and if failover is safe.

    Exit codes: 0 running, 10 frozen and failover-safe, 11 frozen but not safe, 12 paused,
    13 gone, 9 busy (no answer in time), 5 QMP or libvirtd problem, 2 usage.
    """
    import asyncio

    from .ha.status import render, status

    where = address(qmp, domain, connect, api_only, events=False)
    result = asyncio.run(status(where, timeout))
    sys.stdout.write(render(result, as_json))
    raise typer.Exit(int(result.exit_code))


def watch_cmd(
    qmp: Annotated[
        list[str] | None, typer.Option("--qmp", help="A QMP socket to watch (repeatable).")
    ] = None,
    domain: Annotated[
        list[str] | None,
        typer.Option("--domain", help="A libvirt domain to watch, name or UUID (repeatable)."),
    ] = None,
    every_domain: Annotated[
        bool,
        typer.Option("--libvirt", help="Watch every libvirt domain, also those started later."),
    ] = False,
    connect: ConnectOption = None,
    api_only: ApiOnlyOption = False,
    socket_dir: Annotated[
        Path | None,
        typer.Option("--socket-dir", help="Watch every QMP socket in DIR and DIR/*/ as it comes."),
    ] = None,
    pattern: Annotated[
        str, typer.Option(help="With --socket-dir: socket file names to take (glob).")
    ] = "*",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Capture frozen guests into DIR (else signal only)."),
    ] = None,
    hook: Annotated[
        str | None, typer.Option(help="Command run on each signal and report (no shell).")
    ] = None,
    hook_timeout: Annotated[
        float, typer.Option(callback=seconds(0.1), help="Seconds a hook may run.")
    ] = 10.0,
    memory_format: MemoryFormatOption = "elf",
    memory_source: MemorySourceOption = "auto",
    capture_timeout: Annotated[
        float, typer.Option(callback=seconds(1), help="Seconds per capture.")
    ] = 600.0,
    analyze: Annotated[bool, typer.Option(help="Analyze each bundle.")] = True,
    debuginfo_dir: Annotated[
        list[Path] | None, typer.Option("--debuginfo-dir", help="Where analysis finds vmlinux.")
    ] = None,
    poll: Annotated[
        float,
        typer.Option(
            callback=seconds(0.05),
            help="Seconds between each guest's status polls, the net for a lost event "
            "(events and a lost connection are acted on at once).",
        ),
    ] = 120.0,
    grace: Annotated[
        float,
        typer.Option(callback=seconds(0), help="On SIGTERM, seconds a capture may take to finish."),
    ] = 30.0,
) -> None:
    """Watch guests; on a freeze: signal (stdout line + hook), capture, analyze, hook again.

    Prints one JSON object per line: kind signal, state, capture, analysis or hook.
    Runs until SIGTERM or SIGINT.
    """
    if not qmp and socket_dir is None and not domain and not every_domain:
        raise typer.BadParameter(
            "give --qmp SOCKET or --domain NAME (repeatable), --socket-dir DIR or --libvirt"
        )
    if (connect is not None or api_only) and not (domain or every_domain):
        raise typer.BadParameter("--connect and --libvirt-api-only go with --domain or --libvirt")
    if socket_dir is not None and not socket_dir.is_dir():
        raise InputError(f"{socket_dir} is not a directory", "check --socket-dir")
    import asyncio

    from .ha.hooks import HookSpec
    from .ha.watch import WatchOptions
    from .transport.qmp import Endpoint

    hook_spec = None
    if hook is not None:
        argv = tuple(shlex.split(hook))
        if not argv:
            raise typer.BadParameter("the hook command is empty", param_hint="--hook")
        hook_spec = HookSpec(argv, hook_timeout)
    domains = tuple(address(None, d, connect, api_only) for d in domain or ())
    libvirt_uri = None
    if every_domain or domain:
        from .transport.libvirt import DEFAULT_URI

        libvirt_uri = connect or DEFAULT_URI
    opts = WatchOptions(
        endpoints=tuple(Endpoint.parse(q) for q in qmp or ()) + domains,
        libvirt=libvirt_uri if every_domain else None,
        libvirt_api_only=api_only,
        socket_dir=socket_dir,
        pattern=pattern,
        out=out,
        memory_format=cast("MemoryFormat", memory_format),
        memory_source=cast("MemorySource", memory_source),
        capture_timeout=capture_timeout,
        analyze=analyze,
        debuginfo_dirs=tuple(debuginfo_dir or ()),
        hook=hook_spec,
        poll_interval=poll,
        grace=grace,
    )
    asyncio.run(_watch(opts, libvirt_uri if domain else None))


async def _watch(opts: WatchOptions, domain_uri: str | None) -> None:
    import asyncio
    import signal

    from .ha.records import Record
    from .ha.watch import Watcher

    if domain_uri is not None:
        from .transport.libvirt import preflight

        await preflight(domain_uri, opts.connect_timeout)

    def emit(record: Record) -> None:
        emit_json(record.to_json())

    watcher = Watcher(opts, emit)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, watcher.stop)
    await watcher.run()
