"""Golden case files for any parser, as syzkaller keeps them (``pkg/report/testdata``).

A case is one raw input and its expected results as ``KEY: value`` header lines. Inline: the
headers, a blank line, then the raw input (console cases). Sidecar: the raw file stays
byte-exact (a recorded QEMU log other tests read as it is) and its headers live in
``NAME.expected`` beside it. ``pytest --update-goldens`` rewrites the headers from what the
parser gives now; review the change with ``git diff fixtures``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SIDECAR = ".expected"


@dataclass(frozen=True)
class Case:
    """A case file: where it is, its expected headers, the raw input."""

    path: Path
    headers: dict[str, str]
    raw: str
    sidecar: bool

    @property
    def name(self) -> str:
        return self.path.name


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR)


def parse_headers(text: str, keys: Sequence[str], where: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        assert colon and key in keys, f"{where}: bad header line {line!r} (keys: {keys})"
        headers[key] = value.strip()
    return headers


def read_case(path: Path, keys: Sequence[str], *, sidecar: bool = False) -> Case:
    """The case at ``path``: headers inline, or with ``sidecar`` from ``NAME.expected`` (none
    yet: no headers, so the check fails until ``--update-goldens`` writes them)."""
    if sidecar:
        side = sidecar_of(path)
        text = side.read_text(encoding="utf-8") if side.is_file() else ""
        headers = parse_headers(text, keys, side.name)
        return Case(path, headers, path.read_text(encoding="utf-8", errors="replace"), True)
    text = path.read_text(encoding="utf-8")
    head, sep, raw = text.partition("\n\n")
    assert sep, f"{path.name}: no blank line after the headers"
    return Case(path, parse_headers(head, keys, path.name), raw, False)


def render_headers(headers: dict[str, str], keys: Sequence[str]) -> str:
    return "".join(f"{key}: {headers[key]}".rstrip() + "\n" for key in keys if key in headers)


def write_case(case: Case, headers: dict[str, str], keys: Sequence[str]) -> None:
    """Replace ``case``'s headers (inline or sidecar); the raw input is never touched."""
    text = render_headers(headers, keys)
    if case.sidecar:
        sidecar_of(case.path).write_text(text, encoding="utf-8")
    else:
        case.path.write_text(text + "\n" + case.raw, encoding="utf-8")


def check_case(
    case: Case, actual: dict[str, str], keys: Sequence[str], update: bool, defaults: dict[str, str]
) -> None:
    """Assert the parser's ``actual`` headers are the case's (``defaults`` fill keys a file
    may leave out, e.g. ``CORRUPTED: N``), or with ``update`` write them."""
    if update:
        write_case(case, actual, keys)
        return
    assert {**defaults, **actual} == {**defaults, **case.headers}, case.name
