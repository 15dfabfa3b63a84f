"""The direct read of guest RAM (capture's default on the guest's host) against QEMU's dump.

Every ratio is against the bare ``dump-guest-memory`` (ELF) of a minimal QMP script on the same
guest in the same run. capture here is the whole CLI: checksums, and the core synced before the
bundle is renamed (the bare dump is not synced). Guests: idle 256 MB and 2 GB panicked guests
(the 2 GB one captured fresh, then after QEMU's own dump mapped every page), and a 2 GB guest
that filled ~1.5 GB of its memory with random data first. For that guest, the disk's floor in
the same rounds: the bytes the capture wrote, written durably and nothing else
(``bare_write.py``). kdump-zlib (idle 2 GB guest): the direct read's against QEMU's bare
kdump-zlib and against capture through QEMU's dump.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.bench_capture_analyze import bare_dump
from bench.common import PYTHON, ROUNDS, Run, run, table
from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.lab import assets, launcher, scenarios
from kvmha_forensics.lab.launcher import LabGuest

HERE = Path(__file__).parent
FILL_MB = 1536
FILLED = "2 GB, 1.5 GB filled"
KDUMP_ROUNDS = min(ROUNDS, 3)  # QEMU's kdump-zlib of a 2 GB guest takes seconds
LOADS: list[float] = []  # the 1-minute load average at the start of each round


@contextmanager
def guest(directory: Path, memory_mb: int, fill_mb: int = 0) -> Iterator[LabGuest]:
    scenario = scenarios.get("panic")
    up = asyncio.run(launcher.up(scenario, directory, memory_mb=memory_mb, fill_mb=fill_mb))
    try:
        yield up
    finally:
        launcher.down(directory)


def capture(
    qmp: str, target: Path, keep: bool = False, extra: tuple[str, ...] = (), via: str = "direct: "
) -> tuple[Run, Path | None, int]:
    """Capture into ``target``: its run, the bundle if kept, and the bytes its memory file
    holds on the disk (its holes hold none)."""
    argv = [PYTHON, "-m", "kvmha_forensics", "capture", "--qmp", qmp, "--out", str(target),
            *extra]  # fmt: skip
    result = run(argv)
    bundle = Path(result.output.strip().splitlines()[-1])
    steps = Bundle.open(bundle).manifest.steps
    detail = next(s.detail for s in steps if s.name == "memory-source")
    assert detail and detail.startswith(via), detail
    opened = Bundle.open(bundle)
    memory = next(a.path for a in opened.manifest.artifacts if a.kind.startswith("memory"))
    stored = (bundle / memory).stat().st_blocks * 512
    if not keep:
        shutil.rmtree(target)
        return result, None, stored
    return result, bundle, stored


def ratios(ours: list[Run], bare: list[Run]) -> str:
    values = sorted(x.seconds / y.seconds for x, y in zip(ours, bare, strict=True))
    return f"{statistics.median(values):.2f}x ({values[0]:.2f} to {values[-1]:.2f})"


def measure(
    g: LabGuest, root: Path, tag: str, floor: list[Run] | None = None
) -> tuple[list[Run], list[Run], Path]:
    """ROUNDS of (bare dump, capture), alternating who goes first; the last bundle is kept.
    With ``floor``, each capture is followed by the disk's floor for its bytes (appended)."""
    bare, ours = [], []
    kept = root
    for i in range(ROUNDS):
        LOADS.append(os.getloadavg()[0])
        pair = ("bare", "capture") if i % 2 == 0 else ("capture", "bare")
        for kind in pair:
            if kind == "bare":
                bare.append(bare_dump(g.qmp, root / f"bare-{tag}.elf"))
                continue
            result, bundle, stored = capture(g.qmp, root / f"b-{tag}-{i}", keep=i == ROUNDS - 1)
            ours.append(result)
            kept = bundle or kept
            if floor is not None:
                floor.append(bare_write(root / f"floor-{tag}", stored))
    return bare, ours, kept


def bare_write(path: Path, size: int) -> Run:
    """The disk's floor: ``size`` bytes written as capture writes them, synced, nothing else."""
    result = run([PYTHON, str(HERE / "bare_write.py"), str(path), str(size)])
    path.unlink()
    return result


def bare_kdump(qmp: str, dump: Path) -> Run:
    """QEMU's own kdump-zlib (its flattened stream, neither rearranged nor hashed nor synced)."""
    result = run([PYTHON, str(HERE / "bare_dump.py"), qmp, str(dump), "kdump-zlib"])
    dump.unlink()
    return result


def measure_kdump(g: LabGuest, root: Path) -> list[tuple[str, ...]]:
    """KDUMP_ROUNDS of (QEMU's bare kdump-zlib, capture through it, capture from the direct
    read), rotating who goes first."""
    kinds = ("bare", "qemu", "direct")
    runs: dict[str, list[Run]] = {k: [] for k in kinds}
    kdump = ("--memory-format", "kdump-zlib")
    for i in range(KDUMP_ROUNDS):
        LOADS.append(os.getloadavg()[0])
        for kind in kinds[i % 3 :] + kinds[: i % 3]:
            if kind == "bare":
                runs[kind].append(bare_kdump(g.qmp, root / "bare.kdump"))
            elif kind == "qemu":
                via = ("--memory-source", "dump")
                runs[kind].append(capture(g.qmp, root / f"k-q-{i}", extra=kdump + via,
                                          via="dump-guest-memory: ")[0])  # fmt: skip
            else:
                runs[kind].append(capture(g.qmp, root / f"k-d-{i}", extra=kdump)[0])
    bare, qemu, direct = runs["bare"], runs["qemu"], runs["direct"]
    return [("capture, kdump-zlib from the direct read", _med(bare), _med(direct),
             ratios(direct, bare), _rss(direct)),
            ("capture, kdump-zlib through QEMU's dump", _med(bare), _med(qemu),
             ratios(qemu, bare), _rss(qemu)),
            ("direct vs through QEMU (same rounds)", _med(qemu), _med(direct),
             ratios(direct, qemu), "")]  # fmt: skip


def main() -> str:
    rows: list[tuple[str, ...]] = []
    medians: dict[str, float] = {}
    rss: list[float] = []
    analyze_rows: list[tuple[str, ...]] = []
    vmlinux = assets.kernel().vmlinux
    drgn = str(Path(PYTHON).with_name("drgn"))
    with tempfile.TemporaryDirectory(prefix="kvmha-bench-direct-") as tmp:
        root = Path(tmp)
        kept: dict[str, Path] = {}
        with guest(root / "g2048", 2048) as g:
            fresh = capture(g.qmp, root / "fresh")[0]  # before anything mapped every page
            first_bare = bare_dump(g.qmp, root / "bare-first.elf")
            bare, ours, kept["idle 2 GB"] = measure(g, root, "2048")
            rows.append(("idle 2 GB, fresh (1 round)", f"{first_bare.seconds:.2f} s",
                         f"{fresh.seconds:.2f} s", f"{fresh.seconds / first_bare.seconds:.2f}x",
                         "≤ 0.35x", f"{fresh.max_rss_mb:.0f} MB"))  # fmt: skip
            rows.append(("idle 2 GB, after QEMU's dump", _med(bare), _med(ours),
                         ratios(ours, bare), "≤ 0.35x", _rss(ours)))  # fmt: skip
            medians["2048"] = statistics.median(r.seconds for r in ours)
            rss += [fresh.max_rss_mb] + [r.max_rss_mb for r in ours]
            kdump_rows = measure_kdump(g, root)
        with guest(root / "g256", 256) as g:
            bare, ours, _ = measure(g, root, "256")
            rows.append(("idle 256 MB", _med(bare), _med(ours), ratios(ours, bare), "",
                         _rss(ours)))  # fmt: skip
            medians["256"] = statistics.median(r.seconds for r in ours)
            rss += [r.max_rss_mb for r in ours]
        with guest(root / "gfill", 2048, FILL_MB) as g:
            floor: list[Run] = []
            bare, ours, kept[FILLED] = measure(g, root, "fill", floor)
            rows.append((f"2 GB, {FILL_MB} MiB filled", _med(bare), _med(ours),
                         ratios(ours, bare), "≤ 1.0x", _rss(ours)))  # fmt: skip
            floor_rows = [("the floor vs the bare dump", _med(bare), _med(floor),
                           ratios(floor, bare)),
                          ("capture vs the floor", _med(floor), _med(ours),
                           ratios(ours, floor))]  # fmt: skip
            rss += [r.max_rss_mb for r in ours]
        for label, bundle in kept.items():
            dump = Bundle.open(bundle).file("memory-elf")
            bare_argv = [
                drgn,
                "-q",
                "-c",
                str(dump),
                "-s",
                str(vmlinux),
                str(HERE / "bare_drgn.py"),
            ]
            # the vmlinux drgn is given: without it analysis reads no dmesg and no stack
            our_argv = [PYTHON, "-m", "kvmha_forensics", "analyze", str(bundle), "--format", "json",
                        "--vmlinux", str(vmlinux)]  # fmt: skip
            b, o = [], []
            for _ in range(ROUNDS):
                LOADS.append(os.getloadavg()[0])
                b.append(run(bare_argv))
                o.append(run(our_argv))
            doc = json.loads(o[-1].output)
            kernel = next(a for a in doc["analyzers"] if a["name"] == "guest-kernel")
            assert kernel["facts"]["dmesg"] and kernel["facts"]["stack"], "no dmesg or stack read"
            verdict = doc["verdict"]["cause"]
            analyze_rows.append((label, _med(b), _med(o), ratios(o, b), "≤ 1.2x", verdict))
        dump = Bundle.open(kept[FILLED]).file("memory-elf")
        verify_argv = [PYTHON, "-m", "kvmha_forensics", "bundle", "verify", str(kept[FILLED])]
        b, o = [], []
        for _ in range(ROUNDS):
            b.append(run(["sha256sum", str(dump)]))
            o.append(run(verify_argv))
        verify_row = (FILLED, _med(b), _med(o), ratios(o, b))
    header: tuple[str, ...] = ("guest", "bare dump-guest-memory (median)",
                               "capture, direct (median)", "ratio: median (range)", "target",
                               "capture peak RSS")  # fmt: skip
    out = [table(f"capture with the direct read ({ROUNDS} rounds) vs bare dump", header, rows)]
    header = ("filled 2 GB guest", "baseline (median)", "measured (median)",
              "ratio: median (range)")  # fmt: skip
    out.append(table("the disk's floor in the same rounds: the bytes each filled capture wrote, "
                     "written durably by bare_write.py, nothing read or hashed", header,
                     floor_rows))  # fmt: skip
    scale = medians["2048"] / medians["256"]
    out.append(f"idle 2 GB / idle 256 MB capture: {scale:.2f}x (target ≤ 1.5x); "
               f"peak RSS of every capture ≤ {max(rss):.0f} MB (target ≤ 150 MB)\n")  # fmt: skip
    header = ("idle 2 GB guest", "baseline (median)", "measured (median)", "ratio: median (range)",
              "peak RSS")  # fmt: skip
    out.append(table(f"kdump-zlib ({KDUMP_ROUNDS} rounds) vs QEMU's bare kdump-zlib", header,
                     kdump_rows))  # fmt: skip
    out.append(f"load average (1 min) at the rounds' starts: {min(LOADS):.2f} to "
               f"{max(LOADS):.2f}, median {statistics.median(LOADS):.2f}\n")  # fmt: skip
    header = ("bundle", "bare drgn (median)", "analyze (median)", "ratio", "target", "cause")
    out.append(table(f"analyze of direct captures ({ROUNDS} rounds) vs bare drgn", header,
                     analyze_rows))  # fmt: skip
    header = ("bundle", "sha256sum of the dump (median)", "bundle verify (median)", "ratio")
    out.append(table(f"bundle verify ({ROUNDS} rounds: chunks on every core) vs sha256sum",
                     header, [verify_row]))  # fmt: skip
    return "\n".join(out)


def _med(runs: list[Run]) -> str:
    return f"{statistics.median(r.seconds for r in runs):.2f} s"


def _rss(runs: list[Run]) -> str:
    return f"{max(r.max_rss_mb for r in runs):.0f} MB"


if __name__ == "__main__":
    print(main())
