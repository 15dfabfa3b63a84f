"""One serializer for every record the tool writes: a dataclass's fields, as plain JSON.

``to_json(record)`` walks ``dataclasses.fields`` (as :func:`dataclasses.asdict` does) and turns
each value into plain JSON with :func:`plain`; ``extra`` adds derived values (an exit code, a
signature id) or replaces a field by its printed form (a rounded time). A record whose JSON
has another shape than its fields (renamed or nested keys) keeps its own ``to_json``, which
:func:`plain` then uses wherever that record is nested.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import TYPE_CHECKING

from .vocabulary import JSON, JSONObject

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def to_json(record: DataclassInstance, **extra: JSON) -> JSONObject:
    """``record``'s fields through :func:`plain`, then ``extra`` (which wins on a name)."""
    doc = {f.name: plain(getattr(record, f.name)) for f in fields(record)}
    doc.update(extra)
    return doc


def plain(value: object) -> JSON:
    """``value`` as JSON: its own ``to_json()``, a dataclass's fields, an enum's value, a
    sequence as a list, a mapping as an object; anything else as it is."""
    if isinstance(value, str | int | float | bool) and not isinstance(value, Enum):
        return value
    if value is None:
        return None
    if hasattr(value, "to_json"):
        return value.to_json()
    if is_dataclass(value) and not isinstance(value, type):
        return to_json(value)
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return value
