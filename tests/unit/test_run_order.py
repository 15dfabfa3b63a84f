"""The guest kernel's analyzer runs last, so that the others run while its read (a child
process) works; the results stay in the order given."""

from __future__ import annotations

from typing import cast

from kvmha_forensics.analysis import KERNEL_ANALYZER, Analyzer, Context, Inputs, Outcome, run_all


def test_the_kernel_analyzer_runs_last_and_its_result_stays_in_place() -> None:
    ran: list[str] = []

    def analyzer(name: str) -> type[Analyzer]:
        def run(self: object, ctx: Context) -> Outcome:
            ran.append(name)
            return Outcome()

        attributes = {"name": name, "version": 1, "description": f"test {name}",
                      "requires": frozenset(), "refines": frozenset(), "run": run}  # fmt: skip
        return cast(type[Analyzer], type(name.title(), (), attributes))

    names = ["console", KERNEL_ANALYZER, "kvm-exit", "storage"]
    heard: list[str] = []
    ctx = Context(Inputs("test", "text", {}))
    results = run_all(ctx, [analyzer(n) for n in names], lambda r: heard.append(r.name))
    assert ran == heard == ["console", "kvm-exit", "storage", KERNEL_ANALYZER]
    assert [r.name for r in results] == names
    assert all(r.status == "ok" for r in results)
