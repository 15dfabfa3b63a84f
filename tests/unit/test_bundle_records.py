"""Bundle records read back into the types that wrote them: code.json and identity's query-block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvmha_forensics.errors import NotAMonitor
from kvmha_forensics.transport.replies import BlockDevice
from kvmha_forensics.x86.code import CodeAtRip

QUERY_BLOCK = Path(__file__).parents[2] / "fixtures" / "qmp" / "query-block-io-error.json"


def test_code_at_rip_reads_back_what_it_wrote() -> None:
    known = CodeAtRip(0, "long-64", 0x7C2A, 0x7C2A, 0x7C2A, b"\x90" * 16, b"\x0f\x0b" + b"\0" * 14)
    unknown = CodeAtRip(None, None, 0xFFF0, 0xFFFF0, None, None, None)
    for code in (known, unknown):
        assert CodeAtRip.from_json(json.loads(json.dumps(code.to_json()))) == code


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"cpu": 0, "mode": "real", "linear": "0x10"},  # no rip
        {"cpu": "0", "mode": "real", "rip": "0x10", "linear": "0x10"},
        {"cpu": 0, "mode": "real", "rip": 16, "linear": "0x10"},
        {"cpu": 0, "mode": "real", "rip": "0x10", "linear": "0x10", "at_rip": "zz"},
        {"cpu": True, "mode": "real", "rip": "0x10", "linear": "0x10"},
    ],
)
def test_code_at_rip_refuses_other_shapes(doc: object) -> None:
    with pytest.raises(ValueError):
        CodeAtRip.from_json(doc)


def test_query_block_of_a_disk_that_failed() -> None:
    (disk,) = BlockDevice.list_from_json(json.loads(QUERY_BLOCK.read_text()))
    assert disk == BlockDevice("/machine/peripheral/vd0/virtio-backend", "disk0", "failed")


def test_query_block_that_is_not_a_list_of_objects() -> None:
    for reply in ({"error": "x"}, [1], "block"):
        with pytest.raises(NotAMonitor):
            BlockDevice.list_from_json(reply)
