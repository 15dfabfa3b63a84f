"""What the commands share without typer: the rich consoles (made on first use), the progress
bar, and the one-line error with its exit code. The typer app (:mod:`.cli`) and the console
script's quick paths (:mod:`.cli_quick`) both use them."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, NoReturn

from .errors import ExitCode
from .printable import printable

if TYPE_CHECKING:
    from rich.console import Console

MAX_ERROR = 1000  # characters of an error message shown (a peer's garbage may be quoted)
_RICH_TERMINAL_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE")  # rich reads these to decide


@cache
def console(stderr: bool = False) -> Console:
    """The rich console for stdout or stderr, made on first use (quick commands skip rich)."""
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True)


def err() -> Console:
    return console(stderr=True)


def stdout() -> Console:
    return console()


def stdout_is_terminal() -> bool:
    """Whether rich would call stdout a terminal; rich is imported only when it could (stdout
    a tty, or one of the variables rich reads to decide set)."""
    if not sys.stdout.isatty() and not any(v in os.environ for v in _RICH_TERMINAL_ENV):
        return False
    return stdout().is_terminal


def setup_logging(verbose: bool) -> None:
    """Log to stderr: warnings, or everything with ``--verbose``."""
    import logging

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:  # drgn warns about what the report already states (e.g. no module list)
        logging.getLogger("drgn").setLevel(logging.ERROR)
        # qemu.qmp logs a cancelled handshake (a held socket) as ERROR lines: we say it once
        logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)


def emit_json(obj: object) -> None:
    """One JSON document on one line of stdout, flushed (JSON-lines output)."""
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, float | None], None]]:
    """A progress callback: a rich bar on a terminal, silence elsewhere."""
    if not (enabled and sys.stderr.isatty()):  # rich is imported only for a terminal
        yield lambda _description, _percent: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err(), transient=True) as bar:
        task = bar.add_task("", total=100)

        def update(description: str, percent: float | None) -> None:
            bar.update(task, description=description, completed=percent or 0)

        yield update


def fail(message: str, code: int, details: str | None = None) -> NoReturn:
    """One line on stderr (control characters escaped: it may quote a file name or a guest),
    then ``details`` when there are any, and exit with ``code``."""
    if len(message) > MAX_ERROR:
        message = message[:MAX_ERROR] + f"… ({len(message) - MAX_ERROR} more characters)"
    sys.stderr.write(f"kvmha-forensics: error: {printable(message, one_line=True)}\n")
    if details:
        sys.stderr.write(printable(details) + "\n")
    sys.exit(code)


def interrupted() -> NoReturn:
    """Ctrl-C: one line, exit 130 (as a shell reports SIGINT)."""
    sys.stderr.write("kvmha-forensics: interrupted\n")
    sys.exit(130)


def internal(exc: Exception) -> NoReturn:
    """An exception no command expected: one line and exit 1, or its traceback when
    ``KVMHA_DEBUG`` is set."""
    if os.environ.get("KVMHA_DEBUG"):
        raise exc
    fail(f"internal error: {type(exc).__name__}: {exc} "
         "(set KVMHA_DEBUG=1 for the traceback and report it)", int(ExitCode.INTERNAL))  # fmt: skip
