"""capture and analyze on real guests of 256 MB and 2 GB, against their bare baselines.

capture through QEMU's ``dump-guest-memory`` (``--memory-source dump``; the direct read is
measured in bench_direct.py) vs. the bare ``dump-guest-memory`` (same format) of a minimal
QMP script, and vs. the floor of any checksummed capture (that script plus a thread hashing
the file as QEMU writes it); analyze vs. bare drgn printing dmesg and the crashed thread's stack.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path

from bench.common import PYTHON, ROUNDS, Run, guest, median, run, table
from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.lab import assets

SIZES = (256, 2048)
KINDS = ("bare", "floor", "capture")
HERE = Path(__file__).parent


def ratio(ours: list[Run], bare: list[Run]) -> str:
    """The median of the per-round ratios, with their range (each round's runs back to back:
    steadier than a ratio of medians when the disk's speed wanders between rounds)."""
    ratios = sorted(x.seconds / y.seconds for x, y in zip(ours, bare, strict=True))
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f} to {ratios[-1]:.2f})"


def dump_ratio(floor: list[Run], bare: list[Run]) -> str:
    """The floor's ratio on the dump alone, as the scripts time it (no interpreter start-up)."""
    ratios = sorted(float(f.output) / float(b.output) for f, b in zip(floor, bare, strict=True))
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f} to {ratios[-1]:.2f})"


def row(size: int, bare: list[Run], ours: list[Run]) -> tuple[str, ...]:
    b, o = median(bare), median(ours)
    return (f"{size} MB", f"{b.seconds:.2f} s", f"{o.seconds:.2f} s", ratio(ours, bare),
            f"{o.max_rss_mb:.0f} MB")  # fmt: skip


# Each output is deleted right after its timed run, before the next sync: neither side's
# writeback then lands on the other's clock (the last bundle is kept: it is small to sync).
def bare_dump(qmp: str, dump: Path, checksum: bool = False) -> Run:
    result = run([PYTHON, str(HERE / "bare_dump.py"), qmp, str(dump), "elf"]
                 + (["sha256"] if checksum else []))  # fmt: skip
    dump.unlink()
    return result


def capture(qmp: str, target: Path, keep: bool) -> Run:
    argv = ["capture", "--qmp", qmp, "--out", str(target), "--memory-source", "dump"]
    result = run([PYTHON, "-m", "kvmha_forensics", *argv])
    if not keep:
        shutil.rmtree(target)
    return result


def main() -> str:
    out = []
    vmlinux = assets.kernel().vmlinux
    drgn = str(Path(PYTHON).with_name("drgn"))
    capture_rows, analyze_rows = [], []
    with tempfile.TemporaryDirectory(prefix="kvmha-bench-") as tmp:
        root = Path(tmp)
        bundles: dict[int, Path] = {}
        for size in SIZES:
            with guest("panic", root / f"g{size}", size) as g:
                bare: list[Run] = []
                floor: list[Run] = []
                ours: list[Run] = []
                bare_dump(g.qmp, root / "warm-up.elf")  # untimed: the guest's memory paged in
                for i in range(ROUNDS):  # rotate who goes first
                    dump, target = root / f"bare-{i}.elf", root / f"bundles-{size}-{i}"
                    for kind in KINDS[i % 3 :] + KINDS[: i % 3]:
                        if kind == "bare":
                            bare.append(bare_dump(g.qmp, dump))
                        elif kind == "floor":
                            floor.append(bare_dump(g.qmp, dump, checksum=True))
                        else:
                            ours.append(capture(g.qmp, target, keep=i == ROUNDS - 1))
                bundles[size] = next(target.iterdir())  # the last round's, analyzed below
                floors = (ratio(floor, bare), dump_ratio(floor, bare), ratio(ours, floor))
                capture_rows.append((*row(size, bare, ours), *floors))
        for size, path in bundles.items():
            dump = Bundle.open(path).file("memory-elf")
            script = str(HERE / "bare_drgn.py")
            bare_argv = [drgn, "-q", "-c", str(dump), "-s", str(vmlinux), script]
            # the vmlinux drgn is given: without it analysis reads no dmesg and no stack
            our_argv = [PYTHON, "-m", "kvmha_forensics", "analyze", str(path), "--format", "json",
                        "--vmlinux", str(vmlinux)]  # fmt: skip
            bare, ours = [], []
            for _ in range(ROUNDS):
                bare.append(run(bare_argv))
                ours.append(run(our_argv))
            analyze_rows.append(row(size, bare, ours))
    title = f"capture (ELF, {ROUNDS} rounds) vs bare dump-guest-memory"
    header = ("guest", "bare dump (median)", "capture (median)", "ratio: median (range) ≤ 1.15x",
              "capture peak RSS (≤ 150 MB)", "floor (bare dump + sha256) vs bare",
              "the same, dump only", "capture vs floor")  # fmt: skip
    out.append(table(title, header, capture_rows))
    title = f"analyze ({ROUNDS} rounds) vs bare drgn (dmesg + crashed stack)"
    header = ("guest", "bare drgn (median)", "analyze (median)", "ratio: median (range) ≤ 1.5x",
              "analyze peak RSS (≤ 500 MB)")  # fmt: skip
    out.append(table(title, header, analyze_rows))
    small, large = (float(r[2].split()[0]) for r in analyze_rows)
    out.append(f"analyze 2 GB / 256 MB: {large / small:.2f}x (target ≤ 1.3x)\n")
    return "\n".join(out)


if __name__ == "__main__":
    print(main())
