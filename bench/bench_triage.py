"""Triage speed: 10,000 text inputs (cold), and a second triage of 200 bundles (cache).

    .venv/bin/python bench/bench_triage.py [--inputs 10000] [--bundles 200] [--bundle DIR]
                                           [--jobs N]

Text inputs are fixtures/logs and fixtures/console files with mutations (renamed functions,
shifted timestamps and addresses, cut tails), in a temporary directory; the baselines, measured
in the same run on the same files, are reading every file, a frozen floor that does not change
with the parsers (each file decoded and split into lines, printk stamps cut, by one ``re``
pass: :func:`split_only`), and running the bare parsers (``classify``, ``parse_console`` /
``parse_qemu_log_file``) on each, in one process; the cold triage runs
with the default worker processes (``--jobs``) and again with ``jobs=1`` (the serial path,
same output). ``--bundles 0`` skips the bundle rows (no lab guest needed). Bundles are
copies of one bundle (``--bundle``, else one captured from the lab's panic guest with
``--memory-format none``), each with its console artifact changed and its manifest updated
(own checksums and ``created``), so every copy is a distinct cache key. Targets (issue 6):
10,000 text inputs ≤ 10 s; second triage of
200 bundles ≤ 2 s. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kvmha_forensics.capture.steps import CaptureOptions, capture
from kvmha_forensics.lab import launcher, scenarios
from kvmha_forensics.sources.classify import classify
from kvmha_forensics.sources.console import parse_console
from kvmha_forensics.sources.qemu_log import parse_qemu_log_file
from kvmha_forensics.transport.qmp import Endpoint
from kvmha_forensics.triage.cache import TriageCache
from kvmha_forensics.triage.grouping import MAX_JOBS, triage
from kvmha_forensics.triage.pool import usable_cpus

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_HEX = re.compile(rb"[0-9a-f]{8,16}")
_STAMP = re.compile(rb"\[\s*\d+\.\d{6}\]")


def make_text_inputs(target: Path, count: int) -> None:
    sources = [p.read_bytes() for p in sorted((FIXTURES / "logs").glob("*.log"))
               + sorted((FIXTURES / "console").glob("0*.txt")) if p.stat().st_size]  # fmt: skip
    rng = random.Random(6)
    for i in range(count):
        data = rng.choice(sources)
        if rng.random() < 0.3:  # a new culprit: a new signature for some formats
            data = data.replace(b"kvmha_lab_", f"fn{rng.randrange(50)}_".encode())
        data = _STAMP.sub(f"[{rng.uniform(0, 9999):12.6f}]".encode(), data, count=20)
        data = _HEX.sub(lambda m: f"{rng.getrandbits(32):08x}".encode().rjust(len(m[0]), b"0"),
                        data, count=10)  # fmt: skip
        if rng.random() < 0.1:
            data = data[: rng.randrange(len(data) // 2, len(data))]
        (target / f"{i:05d}.log").write_bytes(data)


#: A line with its printk stamp cut: the frozen floor's one pass (never edit it: figures from
#: different sessions compare through it).
_LINE = re.compile(r"^(?:\[\s*\d+\.\d+\]\s?)?(.*)$", re.MULTILINE)


def split_only(files: list[Path]) -> None:
    for path in files:
        _LINE.findall(path.read_bytes().decode("utf-8", errors="replace"))


def parse_only(files: list[Path]) -> None:
    for path in files:
        kind = classify(path).kind
        if kind and "qemu-log" in kind:
            parse_qemu_log_file(path)
        if kind and "console" in kind:
            parse_console(path.read_bytes().decode("utf-8", errors="replace"))


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn()`` (CPU: this process's and its waited-for children's,
    triage's forked workers included; other users' load on a shared host inflates it less
    than the wall time)."""
    start, cpu = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - start, _cpu() - cpu


def capture_bundle(out: Path) -> Path:
    """One panic bundle without memory, from a lab guest brought up and down here."""
    guest = asyncio.run(launcher.up(scenarios.get("panic"), out / "guest"))
    try:
        opts = CaptureOptions(Endpoint(path=guest.qmp), out / "bundles", "none")
        return asyncio.run(capture(opts)).bundle
    finally:
        launcher.down(Path(guest.dir))


def copy_bundles(source: Path, target: Path, count: int) -> None:
    manifest = json.loads((source / "manifest.json").read_text())
    for i in range(count):
        dest = target / f"bundle-{i:04d}"
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns("memory.*"))
        doc = json.loads(json.dumps(manifest))
        doc["created"] = f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"
        doc["artifacts"] = [a for a in doc["artifacts"] if not a["kind"].startswith("memory")]
        for art in doc["artifacts"]:
            if art["kind"] == "console":
                path = dest / art["path"]
                with path.open("ab") as f:
                    f.write(f"[ 9999.000000] bench copy {i}\n".encode())
                art["size"] = path.stat().st_size
                art["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (dest / "manifest.json").write_text(json.dumps(doc))


def main(argv: list[str] | None = None) -> str:
    """Run both benchmarks; the Markdown table (``python -m bench`` prints it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--bundles", type=int, default=200)
    parser.add_argument("--bundle", type=Path, help="a bundle to copy (default: capture one)")
    parser.add_argument("--jobs", type=int, help="worker processes (default: triage's own)")
    args = parser.parse_args(argv or [])
    rows: list[tuple[str, tuple[float, float], tuple[float, float] | None]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-triage-") as tmp_name:
        tmp = Path(tmp_name)
        texts = tmp / "texts"
        texts.mkdir()
        make_text_inputs(texts, args.inputs)
        files = sorted(texts.iterdir())
        read = timed(lambda: [p.read_bytes() for p in files])
        floor = timed(lambda: split_only(files))
        parse = timed(lambda: parse_only(files))
        cache = TriageCache(tmp / "cache-text")
        holder: list[object] = []
        cold = timed(lambda: holder.append(triage([texts], cache=cache, jobs=args.jobs)))
        warm = timed(lambda: triage([texts], cache=cache, jobs=args.jobs))
        serial = timed(lambda: triage([texts], cache=TriageCache(tmp / "cache-serial"), jobs=1))
        groups = len(getattr(holder[0], "groups", ()))
        n = args.inputs
        jobs = args.jobs or min(usable_cpus(), MAX_JOBS)
        rows += [
            (f"read {n} text inputs (baseline)", read, None),
            (f"split {n} text inputs into lines, re only (frozen floor)", floor, None),
            (f"classify + parse {n} text inputs (baseline)", parse, floor),
            (f"triage {n} text inputs, cold cache, {jobs} jobs ({groups} groups)", cold, parse),
            (f"triage {n} text inputs, cold cache, 1 job", serial, parse),
            (f"triage {n} text inputs, second run (cache)", warm, parse),
            (f"triage {n} text inputs, cold cache, {jobs} jobs, vs the floor", cold, floor),
        ]
        if args.bundles <= 0:
            return _table(rows, load_before)
        source = args.bundle or capture_bundle(tmp / "lab")
        bundles = tmp / "bundles"
        bundles.mkdir()
        copy_bundles(source, bundles, args.bundles)
        bcache = TriageCache(tmp / "cache-bundles")
        first = timed(lambda: triage([bundles], cache=bcache))
        second = timed(lambda: triage([bundles], cache=bcache))
        rows += [
            (f"triage {args.bundles} bundles, first run (baseline)", first, None),
            (f"triage {args.bundles} bundles, second run (cache)", second, first),
        ]
    return _table(rows, load_before)


def _table(
    rows: list[tuple[str, tuple[float, float], tuple[float, float] | None]], load_before: float
) -> str:
    load = f"load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    lines = ["### triage", "", load, "",
             "| what | seconds | CPU seconds | ratio to baseline (wall, CPU) |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for what, (seconds, cpu), base in rows:
        ratio = f"{seconds / base[0]:.2f}x, {cpu / base[1]:.2f}x" if base else "-"
        lines.append(f"| {what} | {seconds:.2f} | {cpu:.2f} | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main(sys.argv[1:]))
