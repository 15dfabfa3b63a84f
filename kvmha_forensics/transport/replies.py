"""Typed QMP replies: the fields the HA side and capture read, checked once at the boundary.

Each ``from_json`` takes the ``return`` value of one QMP command (qapi/*.json names its
fields), keeps what kvmha-forensics reads and ignores the rest; a reply without the fields
the command documents raises :class:`~..errors.NotAMonitor` (what answered is not the QEMU
monitor it claims to be). A transport that is not QMP returns the same shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import NotAMonitor
from ..vocabulary import JSON


def _object(reply: JSON, command: str) -> dict[str, object]:
    if not isinstance(reply, dict):
        raise NotAMonitor(f"the reply to {command} is not a JSON object: {reply!r:.80}")
    return reply


def _list(reply: JSON, command: str) -> list[dict[str, object]]:
    if not isinstance(reply, list) or not all(isinstance(r, dict) for r in reply):
        raise NotAMonitor(f"the reply to {command} is not a list of objects: {reply!r:.80}")
    return reply


def _str(doc: dict[str, object], key: str, command: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise NotAMonitor(f"the reply to {command} has no string {key!r}: {doc!r:.80}")
    return value


def _opt_str(doc: dict[str, object], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """``query-status``: the RunState name."""

    status: str

    @classmethod
    def from_json(cls, reply: JSON) -> StatusInfo:
        return cls(_str(_object(reply, "query-status"), "status", "query-status"))


@dataclass(frozen=True, slots=True)
class Job:
    """One entry of ``query-block-jobs`` (``device``) or ``query-jobs`` (``id``)."""

    id: str
    type: str
    status: str
    paused: bool

    @classmethod
    def list_from_json(cls, reply: JSON, command: str, key: str) -> list[Job]:
        """The jobs of a ``query-block-jobs`` (``key`` ``device``) or ``query-jobs`` (``id``)
        reply."""
        return [
            cls(
                _str(job, key, command),
                _str(job, "type", command),
                _str(job, "status", command),
                job.get("paused") is True,
            )
            for job in _list(reply, command)
        ]


@dataclass(frozen=True, slots=True)
class MigrationInfo:
    """``query-migrate``: the status, ``none`` when no migration was ever started."""

    status: str

    @classmethod
    def from_json(cls, reply: JSON) -> MigrationInfo:
        return cls(_opt_str(_object(reply, "query-migrate"), "status") or "none")


@dataclass(frozen=True, slots=True)
class DumpInfo:
    """``query-dump``: the dump's status and bytes done out of total."""

    status: str
    completed: int
    total: int

    @classmethod
    def from_json(cls, reply: JSON) -> DumpInfo:
        doc = _object(reply, "query-dump")
        done, total = doc.get("completed", 0), doc.get("total", 0)
        if not isinstance(done, int) or not isinstance(total, int):
            raise NotAMonitor(f"the reply to query-dump has no byte counts: {doc!r:.80}")
        return cls(_str(doc, "status", "query-dump"), done, total)


@dataclass(frozen=True, slots=True)
class BlockDevice:
    """One entry of ``query-block``: the device (or its qdev path), its node and I/O status."""

    device: str
    node: str | None
    io_status: str | None

    @classmethod
    def list_from_json(cls, reply: JSON) -> list[BlockDevice]:
        devices = []
        for dev in _list(reply, "query-block"):
            inserted = dev.get("inserted")
            node = _opt_str(inserted, "node-name") if isinstance(inserted, dict) else None
            name = _opt_str(dev, "device") or _opt_str(dev, "qdev") or "?"
            devices.append(cls(name, node, _opt_str(dev, "io-status")))
        return devices


def name_of(reply: JSON) -> str | None:
    """``query-name``: the guest's ``-name``, None when it has none."""
    return _opt_str(_object(reply, "query-name"), "name")


def uuid_of(reply: JSON) -> str | None:
    """``query-uuid``: the guest's UUID."""
    return _opt_str(_object(reply, "query-uuid"), "UUID")
