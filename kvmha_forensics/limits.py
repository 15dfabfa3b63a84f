"""Time limits shared by the commands and the library (a light module: the CLI reads these
as option defaults without importing the QMP machinery)."""

STATUS_TIMEOUT = 2.0
"""Seconds ``status`` waits for QEMU before it answers ``busy``."""
