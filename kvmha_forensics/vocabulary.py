"""Words every layer shares: the JSON aliases, the freeze causes in their specificity order,
the CPU vendors. Each is defined here once."""

from __future__ import annotations

from typing import Literal, get_args

JSON = object
"""Any JSON value, as :func:`json.loads` returns it (narrow it before use)."""
JSONObject = dict[str, object]
"""A JSON object."""

Cause = Literal[
    "kvm-emulation-failure", "kvm-entry-failure", "kvm-internal-error", "triple-fault",
    "host-memory-error", "storage-nospace", "storage-io-error", "guest-oops", "guest-bug",
    "guest-lockup", "guest-hung-task", "guest-oom", "watchdog", "guest-panic", "unknown",
]  # fmt: skip
"""Why a guest froze. Listed most specific first: between equally sure findings the more
specific cause wins (a KVM failure explains a panic that follows it, not the reverse)."""
CAUSES: tuple[Cause, ...] = get_args(Cause)


def specificity(cause: Cause) -> int:
    """``cause``'s rank in :data:`CAUSES` (0 is the most specific)."""
    return CAUSES.index(cause)


Vendor = Literal["intel", "amd"]
"""The host CPU's vendor: it decides how KVM's exit reasons and VM-entry errors read."""
