"""Triage over a mixed directory: grouping, JUnit schema, the --known gate, the cache, bad input.

The expected groups are computed independently: each input analyzed on its own with
``analyze``/``gather``, exactly as ``kvmha-forensics analyze`` would.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import xmlschema
from typer.testing import CliRunner

from kvmha_forensics import analysis
from kvmha_forensics.analyze import analyze, gather
from kvmha_forensics.cli import app
from kvmha_forensics.errors import ExitCode, InputError
from kvmha_forensics.sources.classify import classify
from kvmha_forensics.triage.cache import TriageCache
from kvmha_forensics.triage.grouping import TriageResult, triage
from kvmha_forensics.triage.junit import to_junit
from kvmha_forensics.triage.render import to_markdown, to_table

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
JUNIT_XSD = FIXTURES / "junit" / "junit.xsd"
LOGS = sorted(p for p in (FIXTURES / "logs").glob("*.log") if p.stat().st_size)
CONSOLES = sorted((FIXTURES / "console").glob("[0-9]*.txt"))
GARBAGE = bytes(range(256)) * 64


def expected_signature(path: Path) -> str:
    """The signature ``analyze`` gives this input on its own."""
    if (path / "manifest.json").is_file():
        return analyze(*gather(path)).verdict.signature
    kind = classify(path).kind
    assert kind in ("qemu-log", "console", "qemu-log+console"), (path, kind)
    qemu_log = path if "qemu-log" in kind else None
    console = path if "console" in kind else None
    return analyze(*gather(None, qemu_log=qemu_log, console=console)).verdict.signature


@pytest.fixture(scope="module")
def mixed(lab: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fixture logs and consoles, duplicates under other names, garbage, an empty file, and
    two real bundles (symlinked in: a bundle's memory dump is large)."""
    root = tmp_path_factory.mktemp("mixed")
    (root / "logs").mkdir()
    (root / "consoles" / "dup").mkdir(parents=True)
    for p in LOGS:
        shutil.copy(p, root / "logs" / p.name)
    for p in CONSOLES:
        shutil.copy(p, root / "consoles" / p.name)
    shutil.copy(CONSOLES[0], root / "consoles" / "dup" / "copy-of-first.log")
    shutil.copy(LOGS[0], root / "consoles" / "dup" / "renamed-qemu.txt")
    (root / "garbage.bin").write_bytes(GARBAGE)
    (root / "empty.log").write_bytes(b"")
    (root / "bundles").mkdir()
    for name in ("panic", "oops"):
        (root / "bundles" / name).symlink_to(lab.bundle(name))  # type: ignore[attr-defined]
    return root


@pytest.fixture(scope="module")
def result(mixed: Path, tmp_path_factory: pytest.TempPathFactory) -> TriageResult:
    return triage([mixed], cache=TriageCache(tmp_path_factory.mktemp("cache")))


def members_of(result: TriageResult) -> dict[str, set[str]]:
    return {g.signature: {m.path for m in g.members} for g in result.groups}


def test_groups_are_the_signatures_analyze_gives(mixed: Path, result: TriageResult) -> None:
    inputs = [p for p in mixed.rglob("*") if p.is_file() and p.stat().st_size
              and p.name != "garbage.bin" and "bundles" not in p.parts]  # fmt: skip
    inputs += [mixed / "bundles" / "panic", mixed / "bundles" / "oops"]
    expected: dict[str, set[str]] = {}
    for p in inputs:
        expected.setdefault(expected_signature(p), set()).add(str(p))
    assert members_of(result) == expected
    for group in result.groups:
        assert len(group.members) == group.to_json()["count"]
        assert group.first_seen <= group.last_seen
        assert group.representative in group.members
    assert result.stats.analyzed == len(inputs)


def test_duplicates_and_kinds_share_groups(mixed: Path, result: TriageResult) -> None:
    groups = {m: g.signature for g in result.groups for m in (x.path for x in g.members)}
    consoles = mixed / "consoles"
    assert (
        groups[str(consoles / "dup" / "copy-of-first.log")]
        == groups[str(consoles / CONSOLES[0].name)]
    )
    assert (
        groups[str(consoles / "dup" / "renamed-qemu.txt")]
        == groups[str(mixed / "logs" / LOGS[0].name)]
    )
    # The panic bundle and the panic lab guest's console decode to one signature.
    assert groups[str(mixed / "bundles" / "panic")] == groups[str(consoles / "001-lab-panic.txt")]
    assert groups[str(mixed / "bundles" / "panic")] != groups[str(mixed / "bundles" / "oops")]
    kinds = {m.path: m.kind for g in result.groups for m in g.members}
    assert kinds[str(mixed / "bundles" / "oops")] == "bundle"


def test_bad_files_are_skipped_with_the_reason(mixed: Path, result: TriageResult) -> None:
    skipped = {s.path: s.reason for s in result.skipped}
    assert skipped == {
        str(mixed / "garbage.bin"): "binary data, neither a log nor a vmcore",
        str(mixed / "empty.log"): "empty file",
    }


def test_junit_validates_against_the_schema(result: TriageResult) -> None:
    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    xml = to_junit(result)
    schema.validate(xml)
    doc = schema.to_dict(xml)
    suite = doc["testsuite"][0]
    assert suite["@tests"] == len(result.groups) == len(suite["testcase"])
    messages = {c["failure"][0]["@message"] for c in suite["testcase"]}
    assert messages == {g.representative.analysis.verdict.summary for g in result.groups}


def test_schema_rejects_what_ci_servers_reject() -> None:
    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    assert not schema.is_valid('<testsuites><testsuite tests="1"><testcase name="x"/>'
                               "</testsuite></testsuites>")  # fmt: skip  # suite lacks its name
    assert not schema.is_valid('<testsuites><testsuite name="s" tests="-1"/></testsuites>')


def test_markdown_and_table_list_every_group(result: TriageResult) -> None:
    md, table = to_markdown(result), to_table(result)
    for g in result.groups:
        assert g.signature.replace("|", "\\|").replace("`", "'") in md
        assert g.signature in table
    assert "empty.log" in md


def run_cli(*args: str) -> tuple[int, str]:
    outcome = CliRunner().invoke(app, list(args))
    return outcome.exit_code, outcome.output


def test_known_gates_on_new_signatures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    crashes = tmp_path / "crashes"
    crashes.mkdir()
    for p in (*CONSOLES[:3], *LOGS[:3]):
        shutil.copy(p, crashes / p.name)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    junit = tmp_path / "junit.xml"
    code, _ = run_cli("triage", str(crashes), "--json", str(first), "--junit", str(junit))
    assert code == ExitCode.NEW_SIGNATURES
    record = json.loads(first.read_text())
    assert record["groups"] and all(g["new"] for g in record["groups"])
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(junit))

    code, out = run_cli("triage", str(crashes), "--known", str(first), "--json", str(second))
    assert code == ExitCode.OK, out
    assert not any(g["new"] for g in json.loads(second.read_text())["groups"])

    # A signature the record lacks: the BUG console with another culprit.
    bug = (FIXTURES / "console" / "003-lab-bug.txt").read_text()
    (crashes / "new-bug.txt").write_text(bug.replace("kvmha_lab_bug", "brand_new_fn"))
    code, _ = run_cli("triage", str(crashes), "--known", str(second), "--json", str(first))
    assert code == ExitCode.NEW_SIGNATURES
    new = [g for g in json.loads(first.read_text())["groups"] if g["new"]]
    assert [m["path"] for g in new for m in g["members"]] == [str(crashes / "new-bug.txt")]

    # The record carries known signatures forward even when a run does not see them.
    (crashes / "new-bug.txt").unlink()
    code, _ = run_cli("triage", str(crashes / CONSOLES[0].name), "--known", str(first),
                      "--json", str(second))  # fmt: skip
    assert code == ExitCode.OK
    code, _ = run_cli("triage", str(crashes), "--known", str(second))
    assert code == ExitCode.OK


def test_known_must_be_a_triage_record(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(InputError, match="not a triage record"):
        triage([FIXTURES / "console"], bad)
    done = subprocess.run(
        [sys.executable, "-m", "kvmha_forensics", "triage", str(tmp_path / "missing-dir")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == ExitCode.BAD_INPUT
    assert (
        done.stderr.strip() == f"kvmha-forensics: error: {tmp_path / 'missing-dir'} does not exist"
    )


def test_second_run_is_served_from_the_cache(mixed: Path, tmp_path: Path) -> None:
    cache = TriageCache(tmp_path / "triage")
    first = triage([mixed], cache=cache)
    # a fresh cache: only the two copies under other names (same content) are hits
    assert (first.stats.cache_hits, first.stats.cache_misses) == (2, first.stats.analyzed - 2)
    second = triage([mixed], cache=cache)
    assert second.stats.cache_misses == 0
    assert second.stats.cache_hits == second.stats.analyzed == first.stats.analyzed
    assert members_of(second) == members_of(first)
    assert [g.to_json()["verdict"] for g in second.groups] == [
        g.to_json()["verdict"] for g in first.groups
    ]
    assert stat.S_IMODE((tmp_path / "triage").stat().st_mode) == 0o700
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600

    uncached = triage([mixed], cache=None)
    assert uncached.stats.cache_hits == 0


def test_a_corrupt_cache_entry_is_ignored_and_rewritten(tmp_path: Path) -> None:
    cache = TriageCache(tmp_path / "triage")
    inputs = [FIXTURES / "console"]
    first = triage(inputs, cache=cache)
    with sqlite3.connect(cache.path) as db:
        keys = [k for (k,) in db.execute("SELECT key FROM entries")]
        assert keys
        for i, key in enumerate(keys):
            doc = ["\0garbage", '{"version": 1}', "[]"][i % 3]
            db.execute("UPDATE entries SET doc = ? WHERE key = ?", (doc, key))
    again = triage(inputs, cache=TriageCache(tmp_path / "triage"))
    assert again.stats.cache_hits == 0
    assert members_of(again) == members_of(first)
    assert triage(inputs, cache=TriageCache(tmp_path / "triage")).stats.cache_misses == 0


def test_a_cache_file_that_is_no_database_is_replaced(tmp_path: Path) -> None:
    cache = TriageCache(tmp_path / "triage")
    cache.root.mkdir(mode=0o700)
    cache.path.write_bytes(GARBAGE)
    inputs = [FIXTURES / "console"]
    assert triage(inputs, cache=cache).stats.cache_hits == 0
    assert triage(inputs, cache=TriageCache(cache.root)).stats.cache_misses == 0


def test_changed_bundle_artifact_is_analyzed_again(lab: object, tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(lab.bundle("panic", "none"), bundle)  # type: ignore[attr-defined]
    cache = TriageCache(tmp_path / "triage")
    assert triage([bundle], cache=cache).stats.cache_misses == 1
    assert triage([bundle], cache=cache).stats.cache_misses == 0
    console = next(p for p in bundle.iterdir() if "console" in p.name)
    with console.open("ab") as f:
        f.write(b"tampered\n")
    again = triage([bundle], cache=cache)
    assert again.stats.cache_misses == 1
    size = console.stat().st_size
    said = f"{console.name}: {size} bytes, the manifest says {size - len(b'tampered') - 1}"
    assert any(said in n for n in again.groups[0].members[0].notes), again.groups[0].members[0]


def test_encodings(tmp_path: Path) -> None:
    text = (FIXTURES / "console" / "002-lab-oops.txt").read_text()
    (tmp_path / "latin1.log").write_bytes(text.replace("Linux", "Linux é").encode("latin-1"))
    (tmp_path / "utf16.log").write_bytes(text.encode("utf-16"))
    result = triage([tmp_path])
    assert [s.reason.split(":")[0] for s in result.skipped] == ["UTF-16 text"]
    (member,) = [m for g in result.groups for m in g.members]
    assert any("not valid UTF-8" in n for n in member.notes)
    assert member.analysis.verdict.cause == "guest-oops"


@pytest.mark.parametrize(
    "text",
    [
        "kvm: Failed to put registers after init: Invalid argument\n",  # Proxmox's program name
        "Error: kvm_init_vcpu: kvm_arch_init_vcpu failed (0): Bad address\n",
        "2017-08-12 08:15:45.296+0000: starting up libvirt version: 3.2.1, qemu version: 2.9.0\n",
        "2026-04-27 15:13:00.598+0000: IO error device='sata0-0-0' reason='No space left'\n",
    ],
)
def test_qemu_and_libvirt_lines_without_qemu_system_prefix_are_qemu_logs(
    tmp_path: Path, text: str
) -> None:
    """fixtures/real qemu-logs 058 and 060 were skipped: no marker triage knew."""
    path = tmp_path / "pasted.log"
    path.write_text(text)
    assert classify(path).kind == "qemu-log"


def test_huge_inputs_stay_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated emulation failures (a real 2 GB case, scaled down) and a console larger than
    the console cap: memory stays well below the files' size."""
    block = (FIXTURES / "logs" / "emulation-failure-kvm.stderr.log").read_bytes()
    with (tmp_path / "huge-qemu.log").open("wb") as f:
        for _ in range(8 * 1024 * 1024 // len(block)):
            f.write(block)
    console = (FIXTURES / "console" / "002-lab-oops.txt").read_bytes()
    filler = b"[    1.000000] filler line of an idle guest\n" * 4096
    with (tmp_path / "huge-console.log").open("wb") as f:
        for _ in range(8 * 1024 * 1024 // len(filler)):
            f.write(filler)
        f.write(console)
    monkeypatch.setattr(analysis, "MAX_CONSOLE_BYTES", 256 * 1024)
    triage([FIXTURES / "logs", FIXTURES / "console"])  # imports and caches outside the measure
    tracemalloc.start()
    try:
        result = triage([tmp_path])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024  # each file is 8 MiB
    by_path = {m.path: (g, m) for g in result.groups for m in g.members}
    group, member = by_path[str(tmp_path / "huge-console.log")]
    assert group.signature == expected_signature(FIXTURES / "console" / "002-lab-oops.txt")
    assert any("only its last 262144 were analyzed" in n for n in member.notes)
    group, _ = by_path[str(tmp_path / "huge-qemu.log")]
    assert group.signature == expected_signature(
        FIXTURES / "logs" / "emulation-failure-kvm.stderr.log"
    )
