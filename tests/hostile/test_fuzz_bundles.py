"""Random hostile bundles fed to ``bundle verify``, ``analyze`` and ``triage``: manifests
mutated, nested or missing; artifacts that are FIFOs, devices, sockets, links, directories,
huge sparse files, absurd ELF headers or plain garbage.

Each command runs in a child forked from a fresh fork server (the imports are paid once), its
address space capped (``setrlimit(RLIMIT_AS)``, ``MEMORY_CAP``, docs/limits.md) and a time limit
per input (``TIME_LIMIT``): a hang, a traceback, an internal error or running out of memory
fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hostile.forkserver import TIME_LIMIT
from tests.hostile.hostile import FIXTURES, PANIC_CONSOLE, manifest

BUNDLES = 10
SEED = int(os.environ.get("KVMHA_FUZZ_SEED", "1126"))
GIB = 1 << 30
QEMU_LOG = (FIXTURES / "logs" / "emulation-failure-kvm.stderr.log").read_bytes()
KINDS = ("console", "qemu-log", "memory-elf", "memory-kdump", "registers", "mtree", "freeze",
         "events", "identity", "vmcoreinfo", "kvm-exit", "code", "vcpu-stats")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Run:
    code: int
    stdout: str
    stderr: str
    max_rss: int  # KiB
    hung: bool


class ForkServer:
    """:mod:`tests.hostile.forkserver`, started fresh: each command in a capped child."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile.forkserver"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip

    def run(self, *argv: str) -> Run:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        found = Run(**json.loads(self.proc.stdout.readline()))
        assert not found.hung, f"kvmha-forensics {' '.join(argv)} hung (> {TIME_LIMIT:g}s)"
        return found

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _elf(rng: random.Random) -> bytes:
    """An ELF64 core header with random, often absurd, program-header fields."""
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    phoff = rng.choice([64, 1 << 60, (1 << 64) - 1, rng.randrange(1 << 40)])
    phnum = rng.choice([0, 1, 3, 0xFFFF, rng.randrange(1 << 16)])
    head = (4).to_bytes(2, "little") + (62).to_bytes(2, "little") + (1).to_bytes(4, "little")
    head += bytes(8) + phoff.to_bytes(8, "little") + rng.randrange(1 << 64).to_bytes(8, "little")
    head += bytes(4) + (64).to_bytes(2, "little") + (56).to_bytes(2, "little")
    head += phnum.to_bytes(2, "little") + bytes(6)
    table = b"".join(
        (rng.choice([1, 4])).to_bytes(4, "little") + bytes(4)
        + rng.randrange(1 << 64).to_bytes(8, "little") + bytes(8)
        + rng.randrange(1 << 64).to_bytes(8, "little") + bytes(24)
        for _ in range(3)
    )  # fmt: skip
    return ident + head + table + rng.randbytes(rng.randrange(256))


def _regular(rng: random.Random) -> bytes:
    return rng.choice([
        lambda: PANIC_CONSOLE,
        lambda: QEMU_LOG,
        lambda: rng.randbytes(rng.randrange(4096)),
        lambda: b"[" * rng.randrange(1, 300_000),
        lambda: b"\x1b]0;pwned\x07" + PANIC_CONSOLE[-2000:],
        lambda: _elf(rng),
        lambda: b"KDUMP   " + rng.randbytes(64),
        lambda: json.dumps({"status": "x" * rng.randrange(100)}).encode(),
    ])()  # fmt: skip


def _special(rng: random.Random, path: Path) -> None:
    """A file that is not what it claims: a FIFO, a link, a socket, a directory, sparse."""
    choice = rng.randrange(7)
    if choice == 0:
        os.mkfifo(path)
    elif choice == 1:
        path.symlink_to(rng.choice(["/dev/zero", "/dev/null", "/etc/passwd", "/nonexistent"]))
    elif choice == 2:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(path))
    elif choice == 3:
        path.mkdir()
    elif choice == 4:
        path.symlink_to(path.parent)  # a loop
    else:
        with path.open("wb") as f:  # huge and sparse, ending in a panic
            f.truncate(rng.randrange(1, 8) * GIB)
            f.seek(0, os.SEEK_END)
            f.write(PANIC_CONSOLE[-4000:] if choice == 5 else _elf(rng))


def _bundle(rng: random.Random, where: Path) -> None:
    where.mkdir()
    artifacts: list[dict[str, object]] = []
    for index in range(rng.randrange(1, 6)):
        name = f"a{index}"
        kind = rng.choice(KINDS)
        path = where / name
        if rng.random() < 0.5:
            data = _regular(rng)
            path.write_bytes(data)
            size, digest = len(data), hashlib.sha256(data).hexdigest()
        else:
            _special(rng, path)
            size, digest = rng.randrange(1 << 20), "0" * 64  # never the true size of a huge one
        if rng.random() < 0.1:
            name = rng.choice(["../../etc/passwd", "/etc/passwd", "a/../b", "", "a0/x"])
        artifacts.append({"path": name, "kind": kind, "size": size, "sha256": digest,
                          "description": "fuzz"})  # fmt: skip
    doc = manifest(artifacts)
    text = json.dumps(doc).encode()
    mutation = rng.randrange(8)
    target = where / "manifest.json"
    if mutation == 0:
        text = bytearray(text)
        for _ in range(rng.randrange(1, 20)):
            text[rng.randrange(len(text))] = rng.randrange(256)
        target.write_bytes(bytes(text))
    elif mutation == 1:
        depth = rng.randrange(10, 300_000)
        target.write_bytes(b"[" * depth + b"]" * depth)
    elif mutation == 2:
        _special(rng, target)
    elif mutation == 3:
        target.write_bytes(text[: rng.randrange(len(text))])
    else:
        target.write_bytes(text)


def clean(run: Run, allowed: tuple[int, ...], what: str) -> None:
    assert run.code in allowed, (what, run.code, run.stderr[-2000:])
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, (what, run.stderr)
    assert "MemoryError" not in run.stdout + run.stderr, (what, "memory cap reached")
    if run.code == 3:
        assert len(run.stderr.strip().splitlines()) >= 1, what
        assert run.stderr.strip().splitlines()[-1].startswith("kvmha-forensics: error:"), what


@pytest.mark.skipif(sys.platform != "linux", reason="fork, FIFOs and RLIMIT_AS as on Linux")
def test_random_hostile_bundles(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    peak = 0
    server = ForkServer()
    for index in range(BUNDLES):
        where = tmp_path / f"b{index}"
        _bundle(rng, where)
        label = f"seed {SEED} bundle {index}: {sorted(p.name for p in where.iterdir())}"
        verify = server.run("bundle", "verify", str(where))
        clean(verify, (0, 3), f"verify {label}")
        analyzed = server.run("analyze", str(where), "--format", "json")
        clean(analyzed, (0, 3, 7), f"analyze {label}")
        if analyzed.code != 3:
            assert "\x1b" not in analyzed.stdout  # JSON escapes it
        peak = max(peak, verify.max_rss, analyzed.max_rss)
    triaged = server.run("triage", "--no-cache", str(tmp_path))
    clean(triaged, (0, 3, 20), "triage")
    assert "\x1b" not in triaged.stdout + triaged.stderr
    peak = max(peak, triaged.max_rss)
    server.close()
    print(f"fuzz seed {SEED}: {BUNDLES} bundles, peak RSS {peak // 1024} MiB")
