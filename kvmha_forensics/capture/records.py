"""JSON records of parsed evidence, written into the bundle beside the raw text they come from.

Analysis re-parses the raw text (a newer parser reads an old bundle better); these records
are for people and other tools that read a bundle without kvmha-forensics.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..sources.registers import VcpuRegisters
from ..vocabulary import Vendor
from ..x86.modes import mode_of

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# The QEMU log's parser and the decoders (~40 ms of imports: their regexes and tables) are
# imported by the one function that uses them, and only for a log that is not empty.


def _plain(value: object) -> object:
    """dataclass fields → JSON: bytes as hex, dict keys as strings, tuples as lists."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _with_decoded(parsed: DataclassInstance, decoded: DataclassInstance) -> dict[str, object]:
    record = _plain(asdict(parsed))
    assert isinstance(record, dict)
    return {**record, "decoded": _plain(asdict(decoded))}


def registers_record(vcpus: list[VcpuRegisters]) -> list[object]:
    """Every vCPU's registers as typed fields and its CPU mode (from CR0, EFER and CS); the
    raw dump stays in ``registers.txt``."""
    return [
        _plain({**{k: v for k, v in asdict(r).items() if k != "raw"}, "mode": mode_of(r)})
        for r in vcpus
    ]


def kvm_exit_record(log: Path, vendor: Vendor | None) -> dict[str, object] | None:
    """The KVM failures in QEMU's log, parsed and decoded; None when it has none."""
    if log.stat().st_size == 0:
        return None
    from ..sources.qemu_log import parse_qemu_log_file
    from ..x86.decode import decode_entry_failure, decode_internal_error

    parsed = parse_qemu_log_file(log)
    if not (
        parsed.internal_errors or parsed.entry_failures or parsed.run_failures or parsed.shutdowns
    ):
        return None
    code = parsed.code
    return {
        "vendor": vendor,
        "qemu_version": parsed.qemu_version,
        "internal_errors": [
            _with_decoded(e, decode_internal_error(e, vendor)) for e in parsed.internal_errors
        ],
        "internal_errors_total": parsed.internal_errors_total,
        "entry_failures": [
            _plain(asdict(e)) if e.hardware_error is None
            else _with_decoded(e, decode_entry_failure(e.hardware_error, vendor))
            for e in parsed.entry_failures
        ],
        "run_failures": [_plain(asdict(r)) for r in parsed.run_failures],
        "shutdowns": [_plain(asdict(s)) for s in parsed.shutdowns],
        "code": None if code is None else {
            "bytes": ["??" if b is None else f"{b:02x}" for b in code.values],
            "rip_index": code.rip_index,
        },
    }  # fmt: skip
