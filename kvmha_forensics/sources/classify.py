"""Tell what a file is from its first bytes: a QEMU log, a guest console, a vmcore, or neither.

Triage is handed whole directories of whatever CI kept; this decides which parser sees a file,
and says why a file is skipped (empty, binary, UTF-16, JSON, no known markers). Only the head
(:data:`HEAD_BYTES`) is read, so a file of any size costs the same. Never raises on content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InputError
from ..input_files import read_input
from . import flattened
from .elfcore import ELF_MAGIC, is_core

HEAD_BYTES = 256 * 1024

Kind = Literal["qemu-log", "console", "qemu-log+console", "vmcore"]

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_CONTROLS = bytes(b for b in range(0x20) if b not in b"\t\n\r\x0c\x1b")
#: QEMU log markers, each behind a plain substring it holds (tested first: one regex of many
#: alternatives is tried at every position of a 256 KiB head, a substring test is not).
_QEMU_WORDS = ("KVM internal error", "KVM: entry failed", "kvm: unhandled exit",
               "kvm run failed", "QEMU emulator version", "KVM_EXIT_FAIL_ENTRY",
               "Failure during vcpu run", "FailEntry(", "kvm_run_exit",
               # KVM refusing QEMU's vCPU state or vCPU, whatever the program name
               # (Proxmox's "kvm:"), and libvirt's domain log: its start-up header, its
               # record of a disk error
               "Failed to put registers", "Failed to get registers", "kvm_init_vcpu",
               "starting up libvirt version", "IO error device=")  # fmt: skip
_QEMU_PATTERNS = (
    ("extra data[", re.compile(r"extra data\[\d+\]:")),
    ("emulation failure", re.compile(r"\bemulation failure\b")),
    ("qemu-system-", re.compile(r"qemu-system-\w+:")),
    ("AX=", re.compile(r"^\s*(?:\(qemu\)\s*)?[RE]AX=[0-9a-fA-F]{8}", re.MULTILINE)),
    ("Code=", re.compile(r"^\s*(?:\(qemu\)\s*)?Code=[0-9a-fA-F?<]{2}", re.MULTILINE)),
)
#: Console markers as plain substrings (a substring test is far cheaper than one regex of
#: many alternatives over a 256 KiB head); the few that need a pattern are tried after.
_CONSOLE_WORDS = (
    "Linux version ", "Kernel panic - not syncing", "not syncing", "Call Trace:",
    "WARNING: CPU: ", "rcu: INFO: ", "KASAN: ", "[Hardware Error]", "invoked oom-killer",
    "Out of memory", "Internal error: Oops", "Unable to handle kernel", "UBSAN: ", "KFENCE: ",
    "soft lockup", "hard LOCKUP", "Hard LOCKUP", "blocked for more than", "detected stall",
    "---[ end trace", "kernel BUG at ", "invalid opcode: ", "general protection fault",
    "Kernel panic: ", "Internal error: ", "locking dependency detected", "recursive locking",
    "inconsistent lock state", "refcount_t: ",
)  # fmt: skip
_CONSOLE_PATTERNS = (
    ("BUG: ", re.compile(r"\bBUG: ")),
    ("Oops: ", re.compile(r"\bOops: ")),
    ("RIP: ", re.compile(r"\bRIP: [0-9a-fA-F]{4}:")),
    ("INFO: task ", re.compile(r"INFO: task .{1,64} blocked")),
    ("]", re.compile(r"^.{0,40}?\[\s*\d+\.\d{6}\]", re.MULTILINE)),
)


def _qemu_marker(text: str) -> bool:
    if any(word in text for word in _QEMU_WORDS):
        return True
    return any(hint in text and rx.search(text) for hint, rx in _QEMU_PATTERNS)


def _console_marker(text: str) -> bool:
    if any(word in text for word in _CONSOLE_WORDS):
        return True
    return any(hint in text and rx.search(text) for hint, rx in _CONSOLE_PATTERNS)


@dataclass(frozen=True, slots=True)
class Classified:
    """What a file is (``kind``), or why it is skipped (``skip``); ``notes`` qualify a kind."""

    path: Path
    kind: Kind | None
    skip: str | None = None
    notes: tuple[str, ...] = ()


DumpKind = Literal["memory-elf", "memory-kdump", "elf-not-core", "flattened"]


def dump_kind(head: bytes) -> DumpKind | None:
    """What a file's first bytes say of it as a memory dump; None when it is none at all."""
    if head.startswith(ELF_MAGIC):
        return "memory-elf" if is_core(head) else "elf-not-core"
    if head.startswith(flattened.KDUMP_SIGNATURE):
        return "memory-kdump"
    if head.startswith(flattened.SIGNATURE):
        return "flattened"
    return None


def classify_head(path: Path, head: bytes, size: int) -> Classified:
    """Classify from ``head`` (the file's first bytes) and the file's ``size``."""
    if size == 0 or not head:
        return Classified(path, None, "empty file")
    dump = dump_kind(head)
    if dump == "elf-not-core":
        return Classified(path, None, "an ELF file, but not a core dump")
    if dump in ("memory-elf", "memory-kdump"):
        return Classified(path, "vmcore")
    if dump == "flattened":
        return Classified(
            path, None, "a makedumpfile flattened stream: rearrange it with makedumpfile -R"
        )
    if head.startswith(_UTF16_BOMS):
        return Classified(path, None, "UTF-16 text: convert it with iconv -f UTF-16 -t UTF-8")
    if b"\0" in head or _control_ratio(head) > 0.1:
        return Classified(path, None, "binary data, neither a log nor a vmcore")
    text = head.decode("utf-8", errors="replace")
    notes = []
    # A multi-byte character cut by the end of the head is not an encoding problem.
    replaced = text[:-3].count("\ufffd") if len(head) == HEAD_BYTES else text.count("\ufffd")
    if replaced:
        notes.append(f"not valid UTF-8: {replaced} undecodable bytes in the first "
                     f"{len(head)} were replaced")  # fmt: skip
    if text.lstrip().startswith("{"):
        return Classified(path, None, "a JSON document, not a log")
    qemu = _qemu_marker(text)
    console = _console_marker(text)
    if qemu and console:
        return Classified(path, "qemu-log+console", None, tuple(notes))
    if qemu:
        return Classified(path, "qemu-log", None, tuple(notes))
    if console:
        return Classified(path, "console", None, tuple(notes))
    return Classified(
        path, None, f"no QEMU log or kernel console markers in the first {len(head)} bytes"
    )


def classify(path: Path, follow: bool = True) -> Classified:
    """Classify a file by its content; a file that is not a regular one (a FIFO, a device, a
    link when ``follow`` is false) or cannot be read is skipped with the reason."""
    try:
        read = read_input(path, HEAD_BYTES, follow=follow)
    except InputError as exc:
        return Classified(path, None, exc.message.removeprefix(f"{path} is "))
    return classify_head(path, read.data, read.size)


def _control_ratio(head: bytes) -> float:
    """The share of bytes that are C0 controls other than tab, newline, CR, FF and ESC."""
    return (len(head) - len(head.translate(None, _CONTROLS))) / len(head)
