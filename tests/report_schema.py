"""Reports are checked against the JSON Schema published in docs/report-schema.json."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "report-schema.json"


@cache
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def check(report: object) -> None:
    """Fail with every schema violation of ``report`` (a parsed JSON document)."""
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(report)]
    assert not errors, "\n".join(errors)
