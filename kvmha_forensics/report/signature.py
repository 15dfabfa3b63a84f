"""Stable crash signatures: no addresses, pids, CPU numbers, timestamps or build paths.

A signature is a short title like syzkaller's (``guest-oops: BUG: kernel NULL pointer
dereference in kvmha_lab_oops``); its id is the first 16 hex digits of its SHA-256, for
file names and grouping keys.
"""

from __future__ import annotations

import hashlib
import re

_VOLATILE = (
    (re.compile(r"\+0x[0-9a-f]+/0x[0-9a-f]+"), ""),  # symbol offsets/sizes
    (re.compile(r"\b0x[0-9a-f]{5,}\b", re.I), "ADDR"),  # addresses
    (re.compile(r"\b[0-9a-f]{12,16}\b", re.I), "ADDR"),  # bare 64-bit words
    (re.compile(r"\bCPU#?\s?\d+\b"), "CPU"),
    (re.compile(r"\b(pid|PID)[:= ]\s?\d+\b"), "pid"),
    (re.compile(r"\[\s*\d+\.\d+\]"), ""),  # printk timestamps
    (re.compile(r"(?<![\w.])/[\w./-]+/([\w.-]+\.[chS]):\d+"), r"\1"),  # build paths, lines
    (re.compile(r"\s+"), " "),
)


def normalize(title: str) -> str:
    for pattern, replacement in _VOLATILE:
        title = pattern.sub(replacement, title)
    return title.strip()


def signature_id(signature: str) -> str:
    return hashlib.sha256(signature.encode()).hexdigest()[:16]
