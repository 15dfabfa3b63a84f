"""The ``triage`` command: group many crashes by signature, gate CI on new ones.

Registered on the main app in :mod:`kvmha_forensics.cli`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from .errors import InputError
from .printable import printable
from .private import write_private

if TYPE_CHECKING:
    from .vocabulary import Vendor


def triage_cmd(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Bundles, QEMU logs, console logs, vmcores, or directories of them."),
    ],
    known: Annotated[
        Path | None,
        typer.Option("--known", help="An earlier triage --json record: its signatures are known."),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the triage record (JSON) here.")
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Write JUnit XML (a test case per group).")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Write a Markdown summary (PR comment).")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Analyze everything again; write no cache.")
    ] = False,
    cpu_vendor: Annotated[
        str | None, typer.Option("--cpu-vendor", help="intel or amd, for text inputs.")
    ] = None,
    debuginfo_dir: Annotated[
        list[Path] | None, typer.Option("--debuginfo-dir", help="Where to look for vmlinux.")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", "-j", min=1, help="Analyzing processes (default: the usable CPUs, max 8)."
        ),
    ] = None,
) -> None:
    """Analyze every input, group by crash signature, and say which signatures are new.

    Exit codes: 0 no new signature, 20 new signatures (every signature is new without
    --known), 3 nothing analyzable (every input skipped) or the --known file cannot be used,
    2 usage.
    """
    from .triage.cache import TriageCache, default_cache_dir
    from .triage.grouping import Options, triage
    from .triage.junit import to_junit
    from .triage.render import to_markdown, to_table

    if cpu_vendor not in (None, "intel", "amd"):
        raise typer.BadParameter("use intel or amd", param_hint="--cpu-vendor")
    options = Options(cast("Vendor | None", cpu_vendor), tuple(debuginfo_dir or ()))
    cache = None if no_cache else TriageCache(default_cache_dir())
    result = triage(inputs, known, cache=cache, options=options, jobs=jobs)
    if json_out:
        write_private(json_out, json.dumps(result.to_json(), indent=1, sort_keys=True) + "\n")
    if junit:
        write_private(junit, to_junit(result))
    if markdown:
        write_private(markdown, to_markdown(result))
    sys.stdout.write(to_table(result))
    for skipped in result.skipped:
        line = printable(f"skipped {skipped.path}: {skipped.reason}", one_line=True)
        typer.echo(line, err=True)
    if result.nothing_analyzable:
        raise InputError(
            f"nothing analyzable: all {len(result.skipped)} inputs were skipped (see above)",
            "give bundles, QEMU logs, console logs or vmcores",
        )
    raise typer.Exit(int(result.exit_code))
