"""Quick paths of the console script for ``capture`` and ``analyze``: argparse and the shared run
(:mod:`.cli_commands`), without typer, whose import and command tree cost ~0.1 s of each run
(docs/performance.md). Their options and output are the typer commands'; anything these parsers
do not take as the typer command would (``--help``, an unknown or malformed option, a value
typer refuses) returns :data:`TYPER`, and the typer command runs and says what is wrong."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, cast

from .cli_console import fail, internal, interrupted, setup_logging
from .errors import ForensicsError

if TYPE_CHECKING:
    from .capture.memory_source import MemorySource
    from .capture.steps import MemoryFormat
    from .transport.base import Address
    from .vocabulary import Vendor

TYPER = -1
"""Not taken here: let the typer command run."""


class _NotHere(Exception):
    """The arguments are not for the quick path."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _NotHere(message)


def _parser(name: str) -> _Parser:
    return _Parser(prog=f"kvmha-forensics {name}", add_help=False, allow_abbrev=False)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        raise _NotHere(f"not taken: {unknown}")
    return args


def _address(args: argparse.Namespace) -> Address:
    """``--qmp`` or ``--domain`` [``--connect``], as the typer commands take them."""
    if (args.qmp is None) == (args.domain is None):
        raise _NotHere("--qmp or --domain")
    if args.domain is None:
        if args.connect is not None or args.api_only:
            raise _NotHere("--connect without --domain")
        from .transport.qmp import Endpoint

        return Endpoint.parse(args.qmp)
    from .transport.libvirt import DEFAULT_URI, Domain

    return Domain(args.domain, args.connect or DEFAULT_URI, args.api_only, True)


def capture_parser() -> argparse.ArgumentParser:
    """``capture``'s options, as the typer command takes them."""
    p = _parser("capture")
    for name in ("--qmp", "--domain", "--connect"):
        p.add_argument(name)
    p.add_argument("--timeout", default=600.0)
    p.add_argument("--libvirt-api-only", action="store_true", dest="api_only")
    p.add_argument("--qemu-log", type=Path)
    p.add_argument("--out", type=Path, default=Path("."))
    p.add_argument("--memory-format", default="elf", choices=("elf", "kdump-zlib", "none"))
    p.add_argument("--memory-source", default="auto", choices=("auto", "direct", "dump"))
    for flag in ("--live", "--once", "--json"):
        p.add_argument(flag, action="store_true")
    return p


def _capture(argv: list[str]) -> int:
    args = _parse(capture_parser(), argv)
    timeout = _seconds(str(args.timeout), 1)
    from .capture.steps import CaptureOptions
    from .cli_commands import run_capture

    opts = CaptureOptions(
        _address(args), args.out, cast("MemoryFormat", args.memory_format), args.qemu_log,
        timeout, args.live, args.once, cast("MemorySource", args.memory_source),
    )  # fmt: skip
    return run_capture(opts, args.json)


def analyze_parser() -> argparse.ArgumentParser:
    """``analyze``'s arguments and options, as the typer command takes them."""
    p = _parser("analyze")
    p.add_argument("target", nargs="?", type=Path)
    for name in ("--vmlinux", "--qemu-log", "--console", "--output"):
        p.add_argument(name, type=Path)
    p.add_argument("--debuginfo-dir", type=Path, action="append")
    p.add_argument("--analyzer", action="append")
    p.add_argument("--cpu-vendor", choices=("intel", "amd"))
    p.add_argument("--format", default="text", choices=("text", "json", "markdown"))
    return p


def _analyze(argv: list[str]) -> int:
    args = _parse(analyze_parser(), argv)
    from .cli_commands import run_analyze

    return run_analyze(
        args.target,
        vmlinux=args.vmlinux,
        debuginfo_dirs=args.debuginfo_dir or (),
        qemu_log=args.qemu_log,
        console=args.console,
        cpu_vendor=cast("Vendor | None", args.cpu_vendor),
        fmt=args.format,
        output=args.output,
        analyzers=args.analyzer,
    )


def _seconds(text: str, minimum: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _NotHere(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < minimum:
        raise _NotHere(f"{text!r} is out of range")
    return value


COMMANDS: dict[str, Callable[[list[str]], int]] = {"capture": _capture, "analyze": _analyze}


def run(command: str, argv: list[str]) -> int:
    """Run ``command`` with ``argv`` as the typer command would, and return its exit code; or
    :data:`TYPER` before anything ran when the arguments are not for this path. Errors end as
    the typer app ends them: one line and the error's exit code."""
    try:
        setup_logging(False)
        return COMMANDS[command](argv)
    except _NotHere:
        return TYPER
    except ForensicsError as exc:
        fail(str(exc), int(exc.exit_code), exc.details)
    except KeyboardInterrupt:
        interrupted()
    except Exception as exc:
        internal(exc)
