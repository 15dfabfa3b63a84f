"""The hardware analyzer on a guest console that reports a fatal machine check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kvmha_forensics.analyze import analyze, gather
from tests import schemas

MCE = Path(__file__).resolve().parents[2] / "fixtures" / "console" / "017-mce-fatal.txt"


def test_guest_machine_check_lines_make_a_host_memory_error(tmp_path: Path) -> None:
    console = tmp_path / "console.log"  # the golden's raw log, without its header
    console.write_text(MCE.read_text().split("\n\n", 1)[1])
    inputs, problems = gather(None, console=console)
    doc: dict[str, Any] = json.loads(json.dumps(analyze(inputs, problems).to_json()))
    schemas.check_report(doc)
    (hardware,) = [a for a in doc["analyzers"] if a["name"] == "hardware"]
    lines = hardware["facts"]["guest_mce_lines"]
    assert lines[0].endswith("CPU 0: Machine Check Exception: 4 Bank 1: be0000000000009f")
    assert any("Machine check: Processor context corrupt" in line for line in lines)
    assert hardware["facts"]["memory_failures"] == []
    (finding,) = hardware["findings"]
    assert finding["cause"] == "host-memory-error"
    assert doc["verdict"]["cause"] == "host-memory-error"


def test_mce_words_are_found_in_any_case_and_across_chunk_boundaries() -> None:
    """The whole-text test lowers the console a chunk at a time (bounded memory): a word that
    straddles two chunks, or is printed in another case, is still found."""
    from kvmha_forensics.analyzers import hardware

    straddling = "x" * (hardware._CHUNK - 5) + "MACHINE CHECK: bank 4" + "y" * 100
    assert hardware._mentions_mce(straddling)
    assert hardware._mentions_mce("[ 1.0] mce: [Hardware Error]: CPU 0: Machine Check")
    assert not hardware._mentions_mce("x" * (hardware._CHUNK * 2 + 7))
