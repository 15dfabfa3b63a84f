"""The hook contract with payloads that quote a hostile guest: a real hook process is run."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

from kvmha_forensics.ha.hooks import HookSpec, environment, run_hook

HOOK = textwrap.dedent("""\
    import json, os, sys
    env = {k: v for k, v in os.environ.items() if k.startswith("KVMHA_")}
    with open(sys.argv[1], "w") as f:
        json.dump({"env": env, "stdin": json.loads(sys.stdin.read())}, f)
""")


def test_a_nul_in_the_verdict_reaches_the_hook_escaped_in_env_and_whole_on_stdin(
    tmp_path: Path,
) -> None:
    """Guest memory may put NUL in the panic message; the hook still runs and gets both."""
    out = tmp_path / "hook.json"
    summary = "Kernel panic - not syncing: a\0b\x1b[2J"
    payload = {"kind": "report", "verdict_summary": summary, "reasons": ["x\0", "y"]}
    spec = HookSpec((sys.executable, "-c", HOOK, str(out)))
    result = asyncio.run(run_hook(spec, "report", payload))
    assert (result.returncode, result.error) == (0, None)
    got = json.loads(out.read_text())
    assert got["stdin"]["verdict_summary"] == summary
    assert got["env"]["KVMHA_VERDICT_SUMMARY"] == "Kernel panic - not syncing: a\\x00b\x1b[2J"
    assert got["env"]["KVMHA_REASONS"] == "x\\x00\ny"


def test_environment_leaves_text_without_nul_as_it_is() -> None:
    env = environment({"guest": "vm é\\x00", "failover_safe": True, "qemu_pid": None})
    assert env == {"KVMHA_GUEST": "vm é\\x00", "KVMHA_FAILOVER_SAFE": "1", "KVMHA_QEMU_PID": ""}
