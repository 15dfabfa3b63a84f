"""Documents are checked against the JSON Schemas published in docs/: reports and manifests."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator

DOCS = Path(__file__).resolve().parents[1] / "docs"
REPORT = DOCS / "report-schema.json"
MANIFEST = DOCS / "bundle-manifest-schema.json"


@cache
def _validator(schema_file: Path) -> Draft202012Validator:
    schema = json.loads(schema_file.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _check(schema_file: Path, doc: object) -> None:
    found = _validator(schema_file).iter_errors(doc)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in found]
    assert not errors, "\n".join(errors)


def check_report(doc: object) -> None:
    """Fail with every violation of the report schema by ``doc`` (parsed JSON)."""
    _check(REPORT, doc)


def check_manifest(doc: object) -> None:
    """Fail with every violation of the manifest schema by ``doc`` (parsed JSON)."""
    _check(MANIFEST, doc)
