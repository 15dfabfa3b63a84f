"""capture and analyze on real guests of 256 MB and 2 GB, against their bare baselines.

capture vs. the bare ``dump-guest-memory`` (same format) of a minimal QMP script;
analyze vs. bare drgn printing dmesg and the crashed thread's stack.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench.common import PYTHON, ROUNDS, Run, guest, median, run, table
from kvmha_forensics.bundle import Bundle
from kvmha_forensics.lab import assets

SIZES = (256, 2048)


def row(size: int, bare: Run, ours: Run) -> tuple[str, ...]:
    ratio = ours.seconds / bare.seconds
    return (f"{size} MB", f"{bare.seconds:.2f} s", f"{ours.seconds:.2f} s", f"{ratio:.2f}x",
            f"{ours.max_rss_mb:.0f} MB")  # fmt: skip


def main() -> str:
    out = []
    vmlinux = assets.kernel().vmlinux
    drgn = str(Path(PYTHON).with_name("drgn"))
    here = Path(__file__).parent
    capture_rows, analyze_rows = [], []
    with tempfile.TemporaryDirectory(prefix="kvmha-bench-") as tmp:
        root = Path(tmp)
        bundles: dict[int, Path] = {}
        for size in SIZES:
            with guest("panic", root / f"g{size}", size) as g:
                bare: list[Run] = []
                ours: list[Run] = []
                for i in range(ROUNDS):  # alternate who goes first: the disk remembers
                    dump = root / f"bare-{size}-{i}.elf"
                    target = root / f"bundles-{size}-{i}"
                    bare_argv = [PYTHON, str(here / "bare_dump.py"), g.qmp, str(dump), "elf"]
                    our_argv = [PYTHON, "-m", "kvmha_forensics", "capture", "--qmp", g.qmp,
                                "--out", str(target)]  # fmt: skip
                    for who in (bare_argv, our_argv) if i % 2 == 0 else (our_argv, bare_argv):
                        (bare if who is bare_argv else ours).append(run(who))
                    dump.unlink()
                    if i == 0:
                        bundles[size] = next(target.iterdir())
                    else:
                        shutil.rmtree(target)
                capture_rows.append(row(size, median(bare), median(ours)))
        for size, path in bundles.items():
            dump = Bundle.open(path).file("memory-elf")
            bare_argv = [
                drgn,
                "-q",
                "-c",
                str(dump),
                "-s",
                str(vmlinux),
                str(here / "bare_drgn.py"),
            ]
            our_argv = [PYTHON, "-m", "kvmha_forensics", "analyze", str(path), "--format", "json"]
            bare = [run(bare_argv) for _ in range(ROUNDS)]
            ours = [run(our_argv) for _ in range(ROUNDS)]
            analyze_rows.append(row(size, median(bare), median(ours)))
    title = f"capture (ELF, median of {ROUNDS}) vs bare dump-guest-memory"
    header = ("guest", "bare dump", "capture", "ratio (≤ 1.15x)", "capture peak RSS (≤ 150 MB)")
    out.append(table(title, header, capture_rows))
    title = f"analyze (median of {ROUNDS}) vs bare drgn (dmesg + crashed stack)"
    header = ("guest", "bare drgn", "analyze", "ratio (≤ 1.5x)", "analyze peak RSS (≤ 500 MB)")
    out.append(table(title, header, analyze_rows))
    small, large = (float(r[2].split()[0]) for r in analyze_rows)
    out.append(f"analyze 2 GB / 256 MB: {large / small:.2f}x (target ≤ 1.3x)\n")
    return "\n".join(out)


if __name__ == "__main__":
    print(main())
