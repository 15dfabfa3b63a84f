"""Signature ids. A signature is a short stable title like syzkaller's (``guest-oops: BUG:
kernel NULL pointer dereference in kvmha_lab_oops``), built by each analyzer from data tables
that leave out addresses, pids, CPU numbers, timestamps and build paths; its id is the first
16 hex digits of its SHA-256, for file names and grouping keys.
"""

from __future__ import annotations

import hashlib


def signature_id(signature: str) -> str:
    return hashlib.sha256(signature.encode()).hexdigest()[:16]
