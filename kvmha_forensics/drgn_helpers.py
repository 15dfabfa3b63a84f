"""The drgn Linux helpers :mod:`.kernel` uses, imported without their package's ``__init__``.

``drgn.helpers.linux``'s ``__init__`` imports every helper module of drgn (and, through them,
drgn's CLI): 72 drgn modules instead of 28, ~50 ms of every guest-kernel read on this host,
on the read's critical path. While the imports below run, a bare package object with the real
package's path stands in for it; it is taken away after, so a later ``import
drgn.helpers.linux`` (a user's plugin, drgn's own code) gets the real package.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

PACKAGE = "drgn.helpers.linux"


@contextmanager
def package_alone() -> Iterator[None]:
    """Let modules of :data:`PACKAGE` be imported without running its ``__init__``."""
    if PACKAGE in sys.modules:
        yield
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"{PACKAGE} is not an installed package")
    stand_in = types.ModuleType(PACKAGE)
    stand_in.__path__ = list(spec.submodule_search_locations)
    stand_in.__spec__ = spec
    sys.modules[PACKAGE] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(PACKAGE) is stand_in:
            del sys.modules[PACKAGE]


with package_alone():
    from drgn.helpers.linux.kallsyms import load_module_kallsyms, load_vmlinux_kallsyms
    from drgn.helpers.linux.module import address_to_module
    from drgn.helpers.linux.panic import tainted
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.printk import get_printk_records
    from drgn.helpers.linux.sched import task_state_to_char
    from drgn.helpers.linux.timekeeping import uptime

__all__ = [
    "address_to_module",
    "for_each_task",
    "get_printk_records",
    "load_module_kallsyms",
    "load_vmlinux_kallsyms",
    "tainted",
    "task_state_to_char",
    "uptime",
]
