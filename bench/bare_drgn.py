"""Baseline for analysis, run with ``drgn -c DUMP -s VMLINUX``: dmesg and the crashed stack."""

from drgn.helpers.linux.printk import get_dmesg

prog = prog  # type: ignore[name-defined]  # noqa: PLW0127,F821 (drgn's script globals)
print(get_dmesg(prog).decode(errors="replace")[-4000:])
print(prog.crashed_thread().stack_trace())
