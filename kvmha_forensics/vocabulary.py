"""Words every layer shares: the JSON aliases (one definition, used everywhere)."""

from __future__ import annotations

JSON = object
"""Any JSON value, as :func:`json.loads` returns it (narrow it before use)."""
JSONObject = dict[str, object]
"""A JSON object."""
