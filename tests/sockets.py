"""Unix-socket peers that are not QEMU, for the transport's error paths."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def one_reply(path: Path, reply: bytes) -> Iterator[Path]:
    """A socket at ``path`` that answers its first client with ``reply`` and hangs up."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            conn.sendall(reply)
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        yield path
    finally:
        server.close()
