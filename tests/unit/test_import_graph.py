"""The import graph: no cycles, and every import points down the layers (docs/architecture.md).

Every import counts: at module level, inside functions, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "kvmha_forensics"

# Bottom first: a module may import modules of its own layer or of any layer below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "",
            "errors",
            "vocabulary",
            "serial",
            "limits",
            "xdg",
            "private",
            "signature",
            "printable",
            "input_files",
            "locks",
            "bounded",
        ),
    ),
    ("sources", ("sources",)),
    ("x86", ("x86",)),
    ("transport", ("transport",)),
    ("ha", ("ha",)),  # freeze, status, hooks, records; not ha.watch (below)
    ("capture", ("capture",)),
    (
        "analysis",
        (
            "analysis",
            "debuginfo",
            "kernel",
            "kernel_facts",
            "kernel_read",
            "drgn_helpers",
            "kvm_failure",
            "analyzers",
        ),
    ),
    ("report", ("report",)),
    ("analyze", ("analyze",)),
    ("triage", ("triage",)),
    ("watch", ("ha.watch",)),  # the watcher drives capture and analysis
    ("lab", ("lab",)),  # a user of the library, never used by it
    (
        "cli",
        (
            "cli",
            "cli_ha",
            "cli_triage",
            "cli_options",
            "cli_console",
            "cli_commands",
            "cli_quick",
            "entry",
            "demo",
            "__main__",
        ),
    ),
]


def module_files() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module; ``analyzers/`` installs as the package's."""
    for base, prefix in ((ROOT / PACKAGE, PACKAGE), (ROOT / "analyzers", f"{PACKAGE}.analyzers")):
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join([prefix, *parts]), path


MODULES = dict(module_files())


def imports_of(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports (a package counts as its ``__init__``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]  # fmt: skip
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def layer(name: str) -> int:
    """The index in LAYERS of the longest prefix that names ``name``."""
    rest = name.removeprefix(PACKAGE).removeprefix(".")
    best, length = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            hit = rest == prefix or rest.startswith(f"{prefix}.") or (prefix == "" and rest == "")
            if hit and len(prefix) > length:
                best, length = index, len(prefix)
    assert best >= 0, f"{name} is in no layer: add it to LAYERS"
    return best


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        layer(name)


def test_no_import_points_up() -> None:
    upward = [
        f"{src} ({LAYERS[layer(src)][0]}) imports {dst} ({LAYERS[layer(dst)][0]})"
        for src, targets in GRAPH.items()
        for dst in targets
        if layer(dst) > layer(src)
    ]
    assert upward == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("", "lab"),  # the library never imports the lab (cli, demo are its users)
        ("report", "triage"),
        ("sources", "report"),
        ("sources", "x86"),  # x86 reads parsed sources; never the other way
        ("transport", "ha"),
        ("transport", "capture"),
    ],
)
def test_forbidden_imports(importer: str, imported: str) -> None:
    users = {"lab", "cli", "cli_ha", "cli_triage", "entry", "demo", "__main__"}

    def under(name: str, prefix: str) -> bool:
        rest = name.removeprefix(PACKAGE).removeprefix(".")
        return prefix == "" or rest == prefix or rest.startswith(f"{prefix}.")

    found = [
        f"{src} imports {dst}"
        for src, targets in GRAPH.items()
        if under(src, importer) and not any(under(src, u) for u in users if importer == "")
        for dst in targets
        if under(dst, imported)
    ]
    assert found == []


def test_no_cycles() -> None:
    """Tarjan's strongly connected components: each must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    assert cycles == []


def test_the_graph_sees_imports() -> None:
    """The checks above are only as good as the parser: it finds known edges of each kind."""
    assert f"{PACKAGE}.ha.freeze" in GRAPH[f"{PACKAGE}.capture.steps"]  # relative, from ..
    assert f"{PACKAGE}.capture.bundle" in GRAPH[f"{PACKAGE}.capture.steps"]  # from . import x
    assert f"{PACKAGE}.debuginfo" in GRAPH[f"{PACKAGE}.analysis"]  # inside a function
    assert f"{PACKAGE}.analysis" in GRAPH[f"{PACKAGE}.analyzers.runstate"]  # absolute
