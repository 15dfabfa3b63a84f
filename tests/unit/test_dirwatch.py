"""``watch --socket-dir``'s view of its directory (transport/dirwatch.py) on real files: a
socket made in a new subdirectory is found, a removed one is no longer listed and its guest
is forgotten, with inotify and with the mtime checks that stand in where it is unavailable."""

from __future__ import annotations

import asyncio
import errno
import shutil
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from kvmha_forensics.ha.records import Record, StateChange
from kvmha_forensics.ha.watch import Watcher, WatchOptions
from kvmha_forensics.transport import dirwatch
from kvmha_forensics.transport.dirwatch import RESCAN, SocketDirectory

# An upper bound on each wait, below RESCAN: a change inotify missed fails the test instead of
# being found by the net. Never a speed requirement.
BOUND = min(30.0, RESCAN / 2)


@pytest.fixture
def sockets() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def listen(stack: ExitStack, path: Path) -> Path:
    sock = stack.enter_context(socket.socket(socket.AF_UNIX))
    sock.bind(str(path))
    sock.listen()
    return path


def paths(found: list[object] | None) -> list[str]:
    assert found is not None
    return [str(e) for e in found]


async def changed(where: SocketDirectory, stop: asyncio.Event) -> list[str]:
    """Wait for the next change (bounded), then list."""
    await asyncio.wait_for(where.wait(stop), BOUND)
    found = where.look()
    while found is None:  # woken by the fallback's timer before the change showed
        await asyncio.wait_for(where.wait(stop), BOUND)
        found = where.look()
    return paths(found)


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "mtime-checks"])
def test_socket_in_a_new_subdirectory_is_found_and_a_removed_one_dropped(
    tmp_path: Path, sockets: ExitStack, inotify: bool
) -> None:
    top = tmp_path / "run"
    top.mkdir()
    first = listen(sockets, top / "a.sock")

    async def scenario() -> None:
        where = SocketDirectory(top, "*.sock", inotify=inotify)
        assert (where.notify is not None) is inotify
        stop = asyncio.Event()
        try:
            assert paths(where.look()) == [str(first)]
            assert where.look() is None  # nothing changed: no listing
            (top / "vm2").mkdir()
            new = listen(sockets, top / "vm2" / "qmp.sock")
            assert await changed(where, stop) == [str(first), str(new)]
            new.unlink()
            assert await changed(where, stop) == [str(first)]
            # the subdirectory replaced by another of the same name: its sockets still seen
            shutil.rmtree(top / "vm2")
            assert await changed(where, stop) == [str(first)]
            (top / "vm2").mkdir()
            await changed(where, stop)
            again = listen(sockets, top / "vm2" / "qmp.sock")
            assert await changed(where, stop) == [str(first), str(again)]
        finally:
            where.close()

    asyncio.run(scenario())


def test_out_of_inotify_watches_falls_back_to_mtime_checks(
    tmp_path: Path, sockets: ExitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "vm1").mkdir()
    first = listen(sockets, tmp_path / "vm1" / "qmp.sock")

    def full(self: dirwatch.Inotify, path: Path, mask: int) -> int:
        raise OSError(errno.ENOSPC, "inotify_add_watch: No space left on device", str(path))

    monkeypatch.setattr(dirwatch.Inotify, "add", full)

    async def scenario() -> None:
        where = SocketDirectory(tmp_path, "qmp.sock")
        stop = asyncio.Event()
        try:
            assert paths(where.look()) == [str(first)]
            await asyncio.wait_for(where.wait(stop), BOUND)
            assert where.notify is None  # closed: mtime checks from now on
            (tmp_path / "vm2").mkdir()
            new = listen(sockets, tmp_path / "vm2" / "qmp.sock")
            assert await changed(where, stop) == [str(first), str(new)]
        finally:
            where.close()

    asyncio.run(scenario())


def test_watcher_picks_up_a_new_subdirectory_and_forgets_a_removed_socket(
    tmp_path: Path, sockets: ExitStack
) -> None:
    """A socket that never greets (the watcher retries it) appears in a new subdirectory,
    then is removed: the watcher starts a task for it, and ends and forgets that task."""
    records: list[Record] = []
    path = tmp_path / "vm1" / "qmp.sock"

    async def scenario() -> None:
        opts = WatchOptions(socket_dir=tmp_path, pattern="qmp.sock", analyze=False,
                            connect_timeout=0.2, retry_max=0.2)  # fmt: skip
        w = Watcher(opts, records.append)
        run = asyncio.create_task(w.run())
        try:
            await asyncio.sleep(0.1)
            path.parent.mkdir()
            listen(sockets, path)
            async with asyncio.timeout(BOUND):
                while str(path) not in w.guests:
                    await asyncio.sleep(0.02)
                while not any(isinstance(r, StateChange) and r.qmp == str(path)
                              for r in records):  # fmt: skip
                    await asyncio.sleep(0.02)
            path.unlink()
            async with asyncio.timeout(BOUND):
                while str(path) in w.guests:
                    await asyncio.sleep(0.02)
        finally:
            w.stop()
            await asyncio.wait_for(run, BOUND)

    asyncio.run(scenario())
    unreachable = [r for r in records if isinstance(r, StateChange)]
    assert unreachable and unreachable[0].state == "unreachable"
