"""analyze of direct captures against bare drgn, start-up included: issue 15's ≤ 1.2x.

The analyze rows of bench_direct.py alone (that bench also times every capture, minutes of
work): an idle 2 GB panicked guest and one that filled 1.5 GB of its memory first are each
captured once with the direct read; then, per round, bare drgn (``drgn -c DUMP -s VMLINUX``
printing dmesg and the crashed thread's stack, bench/bare_drgn.py) and ``analyze BUNDLE
--vmlinux VMLINUX`` run back to back, who goes first rotating. ``KVMHA_BENCH_BEFORE=DIR`` (a
checkout of other code, e.g. ``git archive main``, with ``kvmha_forensics/analyzers`` linked
to its ``analyzers``, as the editable install maps it) adds that code's analyze to every
round, run from DIR with DIR first on the path: a change and its baseline in the same run.
"""

from __future__ import annotations

import compileall
import json
import os
import statistics
import tempfile
from pathlib import Path

from bench.bench_direct import FILL_MB, capture, guest
from bench.common import PYTHON, ROUNDS, Run, run, table
from kvmha_forensics.capture.bundle import Bundle
from kvmha_forensics.lab import assets

HERE = Path(__file__).parent
BEFORE = os.environ.get("KVMHA_BENCH_BEFORE")


def _ratio(ours: list[Run], bare: list[Run]) -> str:
    values = sorted(x.seconds / y.seconds for x, y in zip(ours, bare, strict=True))
    return f"{statistics.median(values):.2f}x ({values[0]:.2f} to {values[-1]:.2f})"


def _med(runs: list[Run]) -> str:
    return f"{statistics.median(r.seconds for r in runs):.2f} s"


def main() -> str:
    vmlinux = assets.kernel().vmlinux
    drgn = str(Path(PYTHON).with_name("drgn"))
    kinds = ["bare", "analyze"] + (["before"] if BEFORE else [])
    if BEFORE:
        assert (Path(BEFORE) / "kvmha_forensics" / "analyzers").is_dir(), "link the analyzers"
        for folder in ("kvmha_forensics", "analyzers"):
            compileall.compile_dir(Path(BEFORE) / folder, quiet=1)
    rows: list[tuple[str, ...]] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kvmha-bench-analyze-") as tmp:
        root = Path(tmp)
        bundles: dict[str, Path] = {}
        for label, fill in (("idle 2 GB", 0), (f"2 GB, {FILL_MB} MiB filled", FILL_MB)):
            with guest(root / f"g{fill}", 2048, fill) as g:
                bundle = capture(g.qmp, root / f"b{fill}", keep=True)[1]
                assert bundle is not None
                bundles[label] = bundle
        for label, bundle in bundles.items():
            dump = Bundle.open(bundle).file("memory-elf")
            argv = {
                "bare": [drgn, "-q", "-c", str(dump), "-s", str(vmlinux),
                         str(HERE / "bare_drgn.py")],
                "analyze": [PYTHON, "-m", "kvmha_forensics", "analyze", str(bundle), "--format",
                            "json", "--vmlinux", str(vmlinux)],
            }  # fmt: skip
            if BEFORE:  # the other checkout's package first on the path
                argv["before"] = ["env", "-C", BEFORE, f"PYTHONPATH={BEFORE}", *argv["analyze"]]
            runs: dict[str, list[Run]] = {k: [] for k in kinds}
            for i in range(ROUNDS):
                loads.append(os.getloadavg()[0])
                for kind in kinds[i % len(kinds) :] + kinds[: i % len(kinds)]:
                    runs[kind].append(run(argv[kind]))
            verdicts = {json.loads(runs[k][-1].output)["verdict"]["cause"] for k in kinds[1:]}
            row = [label, _med(runs["bare"]), _med(runs["analyze"]),
                   _ratio(runs["analyze"], runs["bare"]), " / ".join(sorted(verdicts))]  # fmt: skip
            if BEFORE:
                row[3:3] = [_med(runs["before"]), _ratio(runs["before"], runs["bare"]),
                            _ratio(runs["analyze"], runs["before"])]  # fmt: skip
            rows.append(tuple(row))
    header = ["direct capture", "bare drgn (median)", "analyze (median)",
              "analyze vs bare, ≤ 1.2x: median (range)", "verdict"]  # fmt: skip
    if BEFORE:
        header[3:3] = ["before (median)", "before vs bare", "analyze vs before"]
    out = table(f"analyze of direct captures vs bare drgn ({ROUNDS} rounds)", header, rows)
    return out + (
        f"\nload average (1 min) at the rounds' starts: {min(loads):.2f} to {max(loads):.2f}, "
        f"median {statistics.median(loads):.2f}\n"
    )


if __name__ == "__main__":
    print(main())
