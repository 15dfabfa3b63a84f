"""The published report schema (docs/report-schema.json): its causes, and the unknown verdict.

Every report the other tests make is checked against it too (tests/schemas.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from kvmha_forensics.analyze import analyze, gather
from kvmha_forensics.vocabulary import CAUSES
from tests import schemas


def test_a_console_without_a_crash_gives_unknown_in_the_same_schema(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_text("[    0.000000] Linux version 6.1.0\n[    1.359084] Run /init as init\n")
    inputs, problems = gather(None, console=console)
    doc = json.loads(json.dumps(analyze(inputs, problems).to_json()))
    schemas.check_report(doc)
    verdict = doc["verdict"]
    assert (verdict["cause"], verdict["culprit"], verdict["evidence"]) == ("unknown", None, [])


def test_the_published_schema_lists_the_closed_set_of_causes() -> None:
    schema = json.loads(schemas.REPORT.read_text())
    assert tuple(schema["$defs"]["cause"]["enum"]) == CAUSES
