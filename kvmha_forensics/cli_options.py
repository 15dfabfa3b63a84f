"""Option checks shared by the commands (typer's ``min=`` lets NaN through: every comparison
with NaN is false)."""

from __future__ import annotations

import math
from collections.abc import Callable

import typer


def seconds(minimum: float) -> Callable[[float], float]:
    """A typer callback: ``value`` must be a finite number of seconds, at least ``minimum``."""

    def check(value: float) -> float:
        if not math.isfinite(value) or value < minimum:
            raise typer.BadParameter(f"{value:g} is not a number of seconds >= {minimum:g}")
        return value

    return check
