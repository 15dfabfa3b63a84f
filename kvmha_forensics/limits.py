"""Time limits shared by the commands and the library (a light module: the CLI reads these
as option defaults without importing the QMP machinery)."""

STATUS_TIMEOUT = 2.0
"""Seconds ``status`` waits for QEMU before it answers ``busy``."""

# How much of an input is read (docs/limits.md). Inputs are files a guest or another user
# may have written: each read is bounded, whatever the file's size.
MAX_CONSOLE_BYTES = 64 << 20
"""A console log larger than this is analyzed by its last this-many bytes (where the crash is)."""
MAX_TEXT_BYTES = 16 << 20
"""Other text artifacts (register dumps, memory tree, VMCOREINFO): their first this-many bytes."""
MAX_JSON_BYTES = 16 << 20
"""A manifest or a JSON artifact larger than this is refused."""
MAX_RECORD_BYTES = 256 << 20
"""A triage ``--known`` record larger than this is refused (it grows with every signature)."""

# Reading the guest kernel from a dump follows pointers the guest wrote: it runs in a child
# bounded in time and address space (docs/limits.md), each overridable from the environment.
KERNEL_READ_SECONDS = 300.0
"""Seconds the guest kernel's reading (drgn) may take (``KVMHA_KERNEL_READ_SECONDS``)."""
KERNEL_READ_MIB = 4096
"""Address space, in MiB, of the process reading it (``KVMHA_KERNEL_READ_MIB``)."""
