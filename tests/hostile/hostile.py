"""Helpers for the hostile-input tests: the CLI run under a memory cap and a time limit, and
bundles built by hand (a valid manifest over whatever artifacts a test plants)."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

CLI = [sys.executable, "-m", "kvmha_forensics"]
MEMORY_CAP = 2 << 30
"""Address space the CLI gets in these tests (docs/limits.md: MAX_ANALYSIS_MEMORY)."""
TIME_LIMIT = 60.0
"""Seconds any one command may take here: far above what a bounded one needs; a hang ends
in ``subprocess.TimeoutExpired``, which fails the test."""
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PANIC_CONSOLE = (FIXTURES / "console" / "001-lab-panic.txt").read_bytes()


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def cli(
    *args: str,
    timeout: float = TIME_LIMIT,
    env: Mapping[str, str] | None = None,
    cap: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``kvmha-forensics ARGS`` with its memory capped; a hang raises TimeoutExpired."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
        preexec_fn=_cap_memory if cap else None,
        stdin=subprocess.DEVNULL,
    )


def one_line(stderr: str) -> str:
    """The single line of ``stderr``; fails the test if there is a traceback or more lines."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and len(lines) == 1, stderr[-3000:]
    return lines[0]


KIND_OF = {
    "console.log": "console",
    "qemu-stderr.log": "qemu-log",
    "memory.elf": "memory-elf",
    "freeze.json": "freeze",
    "registers.txt": "registers",
}


def manifest(artifacts: list[dict[str, object]]) -> dict[str, object]:
    return {
        "format": "kvmha-forensics-bundle",
        "schema_version": 1,
        "tool": {"name": "kvmha-forensics", "version": "0"},
        "created": "2026-01-01T00:00:00Z",
        "host": {"hostname": "h", "kernel": "6.1", "machine": "x86_64", "cpu_vendor": "intel",
                 "kvm_module": "kvm_intel"},
        "guest": {"name": "hostile"},
        "status": "complete",
        "reasons": [],
        "steps": [],
        "artifacts": artifacts,
    }  # fmt: skip


def entry(path: str, kind: str, data: bytes = b"") -> dict[str, object]:
    return {"path": path, "kind": kind, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "description": "planted"}  # fmt: skip


def bundle(directory: Path, files: Mapping[str, bytes], planted: Mapping[str, str] = {}) -> Path:
    """A bundle in ``directory``: ``files`` written with a true manifest entry each;
    ``planted`` names artifacts listed in the manifest that the test creates itself (a FIFO,
    a link), with their kind."""
    directory.mkdir(parents=True)
    artifacts = []
    for name, data in files.items():
        (directory / name).write_bytes(data)
        artifacts.append(entry(name, KIND_OF.get(name, "other"), data))
    artifacts += [entry(name, kind) for name, kind in planted.items()]
    (directory / "manifest.json").write_text(json.dumps(manifest(artifacts)))
    return directory


def nested(top: Path, names: list[str], console: bytes | None = None) -> None:
    """Directories ``top/names[0]/names[1]/…``, made through descriptors (the path of the
    deepest may be longer than PATH_MAX); each level holds ``console`` as ``panic.log``."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            os.mkdir(name, dir_fd=fd)
            below = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
            if console is not None:
                out = os.open("panic.log", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
                os.write(out, console)
                os.close(out)
    finally:
        os.close(fd)


def unnest(top: Path, name: str) -> None:
    """Remove what :func:`nested` made of one repeated ``name``, a level at a time (the
    tree is too deep for pytest's recursive removal)."""
    level = top / name
    while level.exists():
        (level / "panic.log").unlink(missing_ok=True)
        if (level / name).exists():
            (level / name).rename(top / "next")
            level.rmdir()
            (top / "next").rename(level)
        else:
            level.rmdir()
