"""QMP endpoints: unix paths and HOST:PORT."""

from __future__ import annotations

import pytest

from kvmha_forensics.transport.qmp import Endpoint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/run/qemu/web1.qmp", Endpoint(path="/run/qemu/web1.qmp")),
        ("qmp.sock", Endpoint(path="qmp.sock")),
        ("127.0.0.1:4444", Endpoint(host="127.0.0.1", port=4444)),
        ("[::1]:4444", Endpoint(host="::1", port=4444)),
        (":4444", Endpoint(host="127.0.0.1", port=4444)),
        ("./dir:1/qmp.sock", Endpoint(path="./dir:1/qmp.sock")),
    ],
)
def test_parse(text: str, expected: Endpoint) -> None:
    assert Endpoint.parse(text) == expected
