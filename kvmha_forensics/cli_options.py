"""Option checks shared by the commands (typer's ``min=`` lets NaN through: every comparison
with NaN is false)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated

import typer


def seconds(minimum: float) -> Callable[[float], float]:
    """A typer callback: ``value`` must be a finite number of seconds, at least ``minimum``."""

    def check(value: float) -> float:
        if not math.isfinite(value) or value < minimum:
            raise typer.BadParameter(f"{value:g} is not a number of seconds >= {minimum:g}")
        return value

    return check


def choice(*allowed: str) -> Callable[[str], str]:
    """A typer callback: ``value`` must be one of ``allowed``."""

    def check(value: str) -> str:
        if value not in allowed:
            raise typer.BadParameter(f"use {', '.join(allowed[:-1])} or {allowed[-1]}")
        return value

    return check


MemoryFormatOption = Annotated[
    str,
    typer.Option(
        "--memory-format", callback=choice("elf", "kdump-zlib", "none"),
        help="elf, kdump-zlib or none.",
    ),
]  # fmt: skip
MemorySourceOption = Annotated[
    str,
    typer.Option(
        "--memory-source", callback=choice("auto", "direct", "dump"),
        help="auto (read QEMU's memory directly when possible), direct, or dump"
        " (QEMU's dump-guest-memory).",
    ),
]  # fmt: skip
