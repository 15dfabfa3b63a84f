"""The hook contract: a command run on each HA signal and again with the bundle and verdict.

The hook gets the payload twice over: as ``KVMHA_*`` environment variables and as one JSON
object on its standard input. It runs in its own session (process group) without a shell,
and within a time limit: past it, the group gets SIGTERM, then SIGKILL. Its exit status is
logged and reported, never fatal: 0 means handled, anything else a failed hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ..vocabulary import JSONObject

log = logging.getLogger(__name__)

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL for a hook past its time limit


@dataclass(frozen=True, slots=True)
class HookSpec:
    """The hook command (an argv, no shell) and its time limit in seconds."""

    argv: tuple[str, ...]
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class HookResult:
    """How a hook run ended: its exit status (None when it could not start), and why not 0."""

    phase: str
    returncode: int | None
    timed_out: bool
    seconds: float
    error: str | None = None


def _scalar(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        return "\n".join(_scalar(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def environment(payload: Mapping[str, object]) -> dict[str, str]:
    """``KVMHA_<KEY>`` for each payload key (booleans 1/0, lists one item per line).

    A value cannot hold NUL in the environment, and a verdict quotes guest memory that may:
    NUL is written ``\\x00`` there (stdin's JSON keeps it as ``\\u0000``)."""
    return {
        f"KVMHA_{key.upper()}": _scalar(value).replace("\0", "\\x00")
        for key, value in payload.items()
    }


def _kill_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


async def run_hook(spec: HookSpec, phase: str, payload: JSONObject) -> HookResult:
    """Run the hook for ``phase`` with ``payload``; log and return how it ended."""
    start = time.monotonic()
    env = {**os.environ, **environment(payload)}
    data = (json.dumps(payload, sort_keys=True) + "\n").encode()
    try:
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        log.warning("hook %s (%s) cannot start: %s", spec.argv[0], phase, exc.strerror or exc)
        return HookResult(phase, None, False, time.monotonic() - start, str(exc))
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(data), spec.timeout)
    except TimeoutError:
        _kill_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE)
        except TimeoutError:
            _kill_group(proc, signal.SIGKILL)
            await proc.wait()
        log.warning("hook %s (%s) killed after %gs", spec.argv[0], phase, spec.timeout)
        return HookResult(phase, proc.returncode, True, time.monotonic() - start, "timed out")
    except BaseException:
        _kill_group(proc, signal.SIGKILL)
        raise
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        log.warning("hook %s (%s) exited %s: %s", spec.argv[0], phase, proc.returncode, tail[0])
        return HookResult(phase, proc.returncode, False, seconds, tail[0] or None)
    log.info("hook %s (%s) done in %.2fs", spec.argv[0], phase, seconds)
    return HookResult(phase, 0, False, seconds)
