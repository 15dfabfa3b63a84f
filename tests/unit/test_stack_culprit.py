"""The culprit drgn's stack gives when the console has none: the first frame below the crash
machinery (stacks as drgn unwound them from real lab dumps)."""

from __future__ import annotations

import pytest

from kvmha_forensics.analyzers.guest_kernel import stack_culprit
from kvmha_forensics.kernel_facts import Frame

TOP = [("pvpanic_panic_notify", "pvpanic"), ("notifier_call_chain", None),
       ("atomic_notifier_call_chain", None), ("panic", None)]  # fmt: skip


@pytest.mark.parametrize(
    ("frames", "culprit"),
    [
        (
            [("oops_end", None), ("page_fault_oops", None), ("handle_page_fault", None),
             ("exc_page_fault", None), ("asm_exc_page_fault", None),
             ("kvmha_lab_oops", "kvmha_lab"), ("kvmha_lab_write", "kvmha_lab")],
            "kvmha_lab_oops [kvmha_lab]",
        ),
        (
            [("watchdog_timer_fn", None), ("__run_hrtimer", None),
             ("__hrtimer_run_queues", None), ("hrtimer_interrupt", None),
             ("local_apic_timer_interrupt", None), ("__sysvec_apic_timer_interrupt", None),
             ("sysvec_apic_timer_interrupt", None), ("asm_sysvec_apic_timer_interrupt", None),
             ("kvmha_lab_spin", "kvmha_lab")],
            "kvmha_lab_spin [kvmha_lab]",
        ),
        ([], None),
    ],
)  # fmt: skip
def test_stack_culprit(frames: list[tuple[str, str | None]], culprit: str | None) -> None:
    stack = tuple(Frame(name, module, None) for name, module in [*TOP, *frames])
    assert stack_culprit(stack) == culprit
