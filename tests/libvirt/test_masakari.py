"""The Masakari hook (ha/hook/kvmha-masakari-notify) from libvirt's events, no extra socket: a
real domain panics, ``watch --domain`` signals it, the hook sends the instance notification
Masakari's API takes (POST /v1/notifications, type VM, masakari-instancemonitor's payload) to a
recording HTTP endpoint standing in for Masakari (a real one needs Keystone: not installed)."""

from __future__ import annotations

import datetime
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.ha.test_watch import Watch, kind
from tests.libvirt.conftest import Domains

pytestmark = pytest.mark.lab
HOOK = Path(__file__).resolve().parents[2] / "ha" / "hook" / "kvmha-masakari-notify"
TOKEN = "kvmha-test-token"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: object


@contextmanager
def masakari(status: int = 202) -> Iterator[tuple[str, list[Request]]]:
    """A recording endpoint for Masakari's API: its URL (with /v1) and the requests it got;
    it answers ``status`` (202, as Masakari accepts a notification)."""
    got: list[Request] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(size))
            got.append(Request("POST", self.path, dict(self.headers.items()), body))
            reply = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", got
    finally:
        server.shutdown()
        server.server_close()


def qemu_argv(name: str) -> list[str]:
    pid = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_masakari_hook_sends_the_instance_notification_from_libvirt_events(
    lv: Domains, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dom = lv.start("panic", paused=True)
    uuid = lv.conn.lookupByName(dom.name).UUIDString()
    argv = qemu_argv(dom.name)
    assert "-qmp" not in argv and argv.count("-mon") == 1  # libvirt's own monitor, no other
    with masakari() as (url, requests):
        monkeypatch.setenv("KVMHA_MASAKARI_URL", url)
        monkeypatch.setenv("KVMHA_MASAKARI_TOKEN", TOKEN)
        monkeypatch.setenv("KVMHA_MASAKARI_HOST", "compute-1")
        w = Watch(tmp_path / "watch.err", "--domain", dom.name, "--no-analyze",
                  "--hook", str(HOOK))  # fmt: skip
        try:
            signal = lv.frozen_signal(w, dom)
            hook = w.wait(kind("hook", dom.name), "hook run")
            assert w.stop()[0] == 0
        finally:
            w.kill()
    assert signal["failover_safe"] is True and signal["cause"] == "guest-panicked"
    # monitor mode: signaled from QEMU's own event, before libvirtd was asked anything; its
    # answer, read next, confirmed it (no second signal, no other state)
    assert signal["detected_by"] == "event GUEST_PANICKED" and signal["qemu_time"]
    assert [r for r in w.records if r["kind"] in ("signal", "state")][-1] == signal
    assert hook["returncode"] == 0, hook
    (request,) = requests
    assert (request.method, request.path) == ("POST", "/v1/notifications")
    assert request.headers["X-Auth-Token"] == TOKEN
    assert request.headers["Content-Type"] == "application/json"
    notification = request.body["notification"]  # type: ignore[index]
    sent = datetime.datetime.fromisoformat(notification.pop("generated_time"))
    assert sent.tzinfo is not None
    assert abs(sent.timestamp() - float(str(signal["time"]))) < 1  # the signal's second
    assert notification == {
        "type": "VM",
        "hostname": "compute-1",
        "payload": {"event": "LIFECYCLE", "instance_uuid": uuid,
                    "vir_domain_event": "STOPPED_FAILED"},
    }  # fmt: skip


def run_hook(signal: dict[str, object], url: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "KVMHA_MASAKARI_URL": url, "KVMHA_MASAKARI_TOKEN": TOKEN}
    return subprocess.run([str(HOOK)], input=json.dumps(signal), capture_output=True,
                          text=True, env=env, timeout=60, check=False)  # fmt: skip


def test_masakari_hook_sends_nothing_for_an_unsafe_freeze_and_says_when_refused(
    lv: Domains,
) -> None:
    dom = lv.frozen("panic")
    signal: dict[str, object] = {"kind": "signal", "state": "frozen", "failover_safe": False,
                                 "guest": dom.name, "qmp": f"{dom.name}@{dom.uri}",
                                 "time": time.time()}  # fmt: skip
    with masakari(401) as (url, requests):
        unsafe = run_hook(signal, url)
        refused = run_hook({**signal, "failover_safe": True}, url)
    assert unsafe.returncode == 0 and len(requests) == 1  # only the safe one was sent
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "kvmha-masakari-notify: Masakari refused the notification: HTTP 401 Unauthorized"
    ]
