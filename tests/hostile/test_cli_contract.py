"""The one-line error contract on usage errors and unusable QMP sockets, absurd time limits,
and status on a socket path that does not exist (issue 11, item 9 and the decisions)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.hostile import cli, one_line
from tests.sockets import one_reply

USAGE, QMP, MISSING = 2, 5, 14


@pytest.mark.parametrize(
    "args",
    [
        ("capture", "--qmp", "/x", "--timeout", "0"),
        ("capture", "--qmp", "/x", "--timeout", "nan"),
        ("capture", "--qmp", "/x", "--timeout", "inf"),
        ("status", "--qmp", "/x", "--timeout", "nan"),
        ("status", "--qmp", "/x", "--timeout", "0"),
        ("watch", "--qmp", "/x", "--grace", "nan"),
        ("watch", "--qmp", "/x", "--poll", "nan"),
        ("watch", "--qmp", "/x", "--capture-timeout", "nan"),
        ("analyze", "--no-such-option"),
        ("triage",),
        ("bundle", "verify"),
        ("bundle", "prune", "/x", "--older-than", "nan"),
        ("bundle", "prune", "/x", "--older-than", "-1"),
        ("no-such-command",),
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...]) -> None:
    """Item 9 and --timeout nan: typer's five-line box is one line, exit 2; NaN and infinite
    time limits are refused."""
    done = cli(*args, timeout=30)
    assert done.returncode == USAGE, (done.returncode, done.stderr)
    line = one_line(done.stderr)
    assert line.startswith("kvmha-forensics: error:"), line


@pytest.fixture
def silent_socket(tmp_path: Path) -> Iterator[Path]:
    """A unix socket that accepts connections and never says a word (a held QMP socket)."""
    path = tmp_path / "held.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_held_socket_is_one_line(silent_socket: Path, tmp_path: Path) -> None:
    """Item 9: qemu.qmp's own 'ERROR qemu.qmp.protocol ... CancelledError' lines came before
    the real message."""
    done = cli("capture", "--qmp", str(silent_socket), "--out", str(tmp_path / "o"),
               "--timeout", "2")  # fmt: skip
    assert done.returncode == QMP, done.stderr
    assert "greeting" in one_line(done.stderr)
    done = cli("status", "--qmp", str(silent_socket), "--timeout", "0.5")
    assert done.returncode == 9 and done.stderr == "", done.stderr


def test_garbage_speaking_socket_is_one_line(tmp_path: Path) -> None:
    with one_reply(tmp_path / "talker.sock", b"{" * 100_000 + b"\n") as path:
        done = cli("capture", "--qmp", str(path), "--out", str(tmp_path / "o"), "--timeout", "2")
    assert done.returncode == QMP, done.stderr
    one_line(done.stderr)


def test_status_on_a_missing_path_is_a_configuration_error(tmp_path: Path) -> None:
    """A mistyped --qmp is not 'gone' (which HA reads as: fail the guest over): it has its own
    exit code, 14, and says it is a configuration error."""
    missing = tmp_path / "typo.sock"
    for args in ((), ("--json",)):
        done = cli("status", "--qmp", str(missing), *args)
        assert done.returncode == MISSING, (done.returncode, done.stdout, done.stderr)
    doc = json.loads(done.stdout)
    assert doc["state"] == "missing" and doc["failover_safe"] is False
    assert "configuration" in doc["reasons"][0]
    typer_path = cli("--verbose", "status", "--qmp", str(missing))  # not the fast path
    assert typer_path.returncode == MISSING, typer_path.stderr


def test_status_gone_says_what_it_rests_on(tmp_path: Path) -> None:
    """A socket file nobody listens on (QEMU killed): gone, and the reason says so."""
    path = tmp_path / "stale.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the file stays, nobody listens
    done = cli("status", "--qmp", str(path), "--json")
    assert done.returncode == 13, done.stderr
    reason = json.loads(done.stdout)["reasons"][0]
    assert "refused" in reason and "exists" in reason
