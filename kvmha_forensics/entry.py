"""The ``kvmha-forensics`` console script.

``status`` is what a resource agent's monitor runs every few seconds, and must answer within
100 ms: it takes a short path (argparse, the status library) instead of the full typer CLI,
whose imports alone cost about 0.15 s. Its options and output are those of the typer command
(``cli_ha.status_cmd``); a test runs both and compares. ``capture`` and ``analyze`` take quick
paths too (:mod:`.cli_quick`). Everything else goes to the typer app.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from argparse import Namespace

    from .transport.base import Address

FAST = "status"
HELP = frozenset({"-h", "--help"})


class _NotHere(Exception):
    """The arguments are not for the quick path."""


def _status(argv: list[str]) -> int:
    import argparse
    import asyncio
    import logging
    import math

    from .errors import ForensicsError
    from .ha.status import render, status
    from .limits import STATUS_TIMEOUT
    from .printable import printable

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise _NotHere(message)  # typer says what is wrong, in one line

    parser = Parser(prog="kvmha-forensics status", add_help=False)
    parser.add_argument("--qmp")
    parser.add_argument("--domain")
    parser.add_argument("--connect")
    parser.add_argument("--libvirt-api-only", action="store_true", dest="api_only")
    parser.add_argument("--json", action="store_true", dest="as_json")
    parser.add_argument("--timeout", default=str(STATUS_TIMEOUT))
    try:
        args, unknown = parser.parse_known_args(argv)
    except _NotHere:
        return -1
    try:
        timeout = float(args.timeout)
    except ValueError:
        timeout = math.nan
    libvirt_only = args.connect is not None or args.api_only
    one_guest = (args.qmp is None) != (args.domain is None)
    if unknown or not one_guest or not (math.isfinite(timeout) and timeout >= 0.05):
        return -1  # let the typer CLI say what is wrong, as for every other command
    if args.qmp is not None and libvirt_only:
        return -1
    logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
    try:
        result = asyncio.run(status(_address(args), timeout))
    except ForensicsError as exc:  # one line, as cli_console.fail writes it (a peer's
        sys.stderr.write(f"kvmha-forensics: error: {printable(str(exc), one_line=True)}\n")
        return int(exc.exit_code)  # bytes may be quoted in it)
    sys.stdout.write(render(result, args.as_json))
    return int(result.exit_code)


def _address(args: Namespace) -> Address:
    if args.domain is None:
        from .transport.qmp import Endpoint

        return Endpoint.parse(args.qmp)
    from .transport.libvirt import DEFAULT_URI, Domain

    return Domain(args.domain, args.connect or DEFAULT_URI, args.api_only, events=False)


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == [FAST] and not HELP & set(argv):
        code = _status(argv[1:])
        if code >= 0:
            sys.exit(code)
    if argv[:1] in (["capture"], ["analyze"]) and not HELP & set(argv):
        from . import cli_quick

        code = cli_quick.run(argv[0], argv[1:])
        if code != cli_quick.TYPER:
            sys.exit(code)
    from .cli import main as cli_main

    cli_main()
