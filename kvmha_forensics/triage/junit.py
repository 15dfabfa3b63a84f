"""Triage as JUnit XML: one test case per signature group, failing with the group's summary.

CI dashboards (Jenkins, GitLab, GitHub test reporters) show each crash signature as a failed
test, its ``message`` the verdict summary and its text the members; ``new``/``known`` is in the
test case name's suffix and the suite's properties. Validated against
``fixtures/junit/junit.xsd`` in the tests.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ..printable import printable
from .grouping import TriageResult

SUITE = "kvmha-forensics triage"


def to_junit(result: TriageResult) -> str:
    """The result as a JUnit ``<testsuites>`` document (UTF-8 XML text)."""
    count = str(len(result.groups))
    seconds = f"{result.stats.seconds:.3f}"
    root = ET.Element("testsuites", name=SUITE, tests=count, failures=count, errors="0",
                      time=seconds)  # fmt: skip
    suite = ET.SubElement(
        root, "testsuite", name=SUITE, tests=count, failures=count, errors="0",
        skipped="0", time=seconds, timestamp=result.created.removesuffix("Z"),
    )  # fmt: skip
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("inputs", result.stats.inputs),
        ("skipped_inputs", result.stats.skipped),
        ("new_groups", len(result.new_groups)),
    ):
        ET.SubElement(props, "property", name=name, value=str(value))
    for group in result.groups:
        verdict = group.representative.analysis.verdict
        case = ET.SubElement(
            suite, "testcase", name=f"{group.signature} [{'new' if group.new else 'known'}]",
            classname=f"kvmha-forensics.{verdict.cause}", time="0",
        )  # fmt: skip
        failure = ET.SubElement(case, "failure", message=_clean(verdict.summary),
                                type=verdict.cause)  # fmt: skip
        lines = [
            f"signature: {group.signature} ({group.signature_id})",
            f"culprit: {verdict.culprit or '-'}",
            f"count: {len(group.members)}, first seen {group.first_seen}, "
            f"last seen {group.last_seen}",
            f"representative: {group.representative.path}",
            "members:",
            *(f"  {m.seen} {m.kind} {m.path}" for m in group.members),
        ]
        failure.text = _clean("\n".join(lines))
    if result.skipped:
        err = ET.SubElement(suite, "system-err")
        err.text = _clean("\n".join(f"skipped {s.path}: {s.reason}" for s in result.skipped))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _clean(text: str) -> str:
    """Escape control characters, drop what XML 1.0 cannot hold (guest text may contain any)."""
    return "".join(
        c for c in printable(text)
        if c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd"
        or c >= "\U00010000"
    )  # fmt: skip
