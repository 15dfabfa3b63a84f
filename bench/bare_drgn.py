"""Baseline for analysis, run with ``drgn -c DUMP -s VMLINUX``: dmesg and the crashed stack."""
# ruff: noqa: F821  (drgn defines ``prog`` for the scripts it runs)

from drgn.helpers.linux.printk import get_dmesg

print(get_dmesg(prog).decode(errors="replace")[-4000:])
print(prog.crashed_thread().stack_trace())
