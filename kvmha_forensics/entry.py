"""The ``kvmha-forensics`` console script.

``status`` is what a resource agent's monitor runs every few seconds, and must answer within
100 ms: it takes a short path (argparse, the status library) instead of the full typer CLI,
whose imports alone cost about 0.15 s. Its options and output are those of the typer command
(``cli_ha.status_cmd``); a test runs both and compares. Everything else goes to the typer app.
"""

from __future__ import annotations

import sys

FAST = "status"
HELP = frozenset({"-h", "--help"})


def _status(argv: list[str]) -> int:
    import argparse
    import asyncio
    import logging
    import math

    from .errors import ForensicsError
    from .ha.status import render, status
    from .limits import STATUS_TIMEOUT
    from .transport.qmp import Endpoint

    parser = argparse.ArgumentParser(prog="kvmha-forensics status", add_help=False)
    parser.add_argument("--qmp")
    parser.add_argument("--json", action="store_true", dest="as_json")
    parser.add_argument("--timeout", default=str(STATUS_TIMEOUT))
    args, unknown = parser.parse_known_args(argv)
    try:
        timeout = float(args.timeout)
    except ValueError:
        timeout = math.nan
    if unknown or args.qmp is None or not (math.isfinite(timeout) and timeout >= 0.05):
        return -1  # let the typer CLI say what is wrong, as for every other command
    logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
    try:
        result = asyncio.run(status(Endpoint.parse(args.qmp), timeout))
    except ForensicsError as exc:
        sys.stderr.write(f"kvmha-forensics: error: {exc}\n")
        return int(exc.exit_code)
    sys.stdout.write(render(result, args.as_json))
    return int(result.exit_code)


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == [FAST] and not HELP & set(argv):
        code = _status(argv[1:])
        if code >= 0:
            sys.exit(code)
    from .cli import main as cli_main

    cli_main()
