"""The endings every command shares (typer app and quick paths): a bug is one line and exit 1,
or its traceback with KVMHA_DEBUG; Ctrl-C is one line and exit 130."""

from __future__ import annotations

import pytest

from kvmha_forensics.cli_console import internal, interrupted


def test_a_bug_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KVMHA_DEBUG", raising=False)
    with pytest.raises(SystemExit) as ended:
        internal(ValueError("bad\x1b[31m value"))
    assert ended.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err
    assert err.startswith("kvmha-forensics: error: internal error: ValueError: bad")
    assert "set KVMHA_DEBUG=1" in err


def test_kvmha_debug_gives_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVMHA_DEBUG", "1")
    with pytest.raises(ValueError, match="bad value"):
        internal(ValueError("bad value"))


def test_ctrl_c_is_one_line_and_exit_130(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        interrupted()
    assert ended.value.code == 130
    assert capsys.readouterr().err == "kvmha-forensics: interrupted\n"
