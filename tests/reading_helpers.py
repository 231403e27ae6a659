"""Readings for the schema and fast-path tests: one valid reading, and variations."""

from __future__ import annotations

import json

VALID = {
    "sensorId": "offices-01",
    "area": "offices",
    "energyConsumption": 42.5,
    "timestamp": "2026-01-05T11:00:00.000Z",
    "readingId": "r-1",
}


def with_(*, ascii_only: bool = True, **changes: object) -> bytes:
    """VALID with fields changed (``...`` removes one), as JSON bytes. ``ascii_only``
    writes other characters as \\u escapes (json.dumps's default); without it they are
    UTF-8."""
    body = dict(VALID)
    for key, value in changes.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return json.dumps(body, ensure_ascii=ascii_only).encode()
