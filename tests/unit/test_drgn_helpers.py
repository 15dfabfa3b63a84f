"""drgn's Linux helpers are imported without their package's ``__init__`` (which imports
every helper module and drgn's CLI), and the real package is still there for anyone after."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import kvmha_forensics.kernel
loaded = sorted(m for m in sys.modules if m.startswith("drgn"))
from drgn.helpers.linux import for_each_task, list_for_each_entry  # the real package
print(json.dumps({"loaded": loaded, "same": for_each_task is kvmha_forensics.kernel.for_each_task}))
"""


def test_the_kernel_module_loads_only_the_helpers_it_uses() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, timeout=60).stdout  # fmt: skip
    doc = json.loads(out)
    loaded = doc["loaded"]
    assert "drgn.helpers.linux.printk" in loaded and "drgn.helpers.linux.kallsyms" in loaded
    assert "drgn.cli" not in loaded and "drgn.helpers.linux.slab" not in loaded
    assert "drgn.helpers.linux" not in loaded  # the stand-in is gone once the imports ran
    assert doc["same"]  # the real package, imported after, hands out the same helpers
