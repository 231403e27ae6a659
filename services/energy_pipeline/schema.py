"""The reading schema: the one place that says what a sensor reading is.

A reading, as the original exercise named its fields::

    {"sensorId": "offices-01", "area": "offices", "energyConsumption": 42.5,
     "timestamp": "2026-01-05T11:00:00Z", "readingId": "3f2a...-17"}

``energyConsumption`` is the energy in kWh used in the reading's interval;
``timestamp`` is the event time, ISO-8601 in UTC (``Z`` or ``+00:00``, fractions
allowed); ``readingId`` is set by our producer and optional on input. A processed
reading adds ``isHighConsumption``: consumption strictly greater than the threshold.

Validation never raises on bad input: it returns a :class:`Rejection` whose
``reason`` is one of :class:`Reason`, so that the transformer can route the message
to the dead-letter topic and count it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

DEFAULT_THRESHOLD = 100.0
# Longer strings are not ids or area names but garbage (or an attack on memory).
MAX_STRING_LENGTH = 256
# A reading is ~150 bytes; anything this large is not a reading.
MAX_MESSAGE_BYTES = 64 * 1024

SENSOR_ID = "sensorId"
AREA = "area"
ENERGY_CONSUMPTION = "energyConsumption"
TIMESTAMP = "timestamp"
READING_ID = "readingId"
IS_HIGH_CONSUMPTION = "isHighConsumption"

_ZERO = timedelta(0)


class Reason(StrEnum):
    """Why a message is not a valid reading (the dead-letter header and metric label)."""

    EMPTY_VALUE = "empty_value"
    OVERSIZED = "oversized"
    INVALID_UTF8 = "invalid_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    NEGATIVE_CONSUMPTION = "negative_consumption"
    BAD_TIMESTAMP = "bad_timestamp"
    EMPTY_STRING = "empty_string"
    STRING_TOO_LONG = "string_too_long"


@dataclass(frozen=True, slots=True)
class Reading:
    sensor_id: str
    area: str
    energy_consumption: float
    timestamp: str
    reading_id: str | None = None

    def to_json(self) -> bytes:
        return encode_reading(
            self.sensor_id, self.area, self.energy_consumption, self.timestamp, self.reading_id
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            SENSOR_ID: self.sensor_id,
            AREA: self.area,
            ENERGY_CONSUMPTION: self.energy_consumption,
            TIMESTAMP: self.timestamp,
        }
        if self.reading_id is not None:
            out[READING_ID] = self.reading_id
        return out


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str


def encode_reading(
    sensor_id: str, area: str, energy_consumption: float, timestamp: str, reading_id: str | None
) -> bytes:
    """A reading as JSON bytes (the producer's hot path: no object in between)."""
    if reading_id is None:
        return orjson.dumps(
            {
                SENSOR_ID: sensor_id,
                AREA: area,
                ENERGY_CONSUMPTION: energy_consumption,
                TIMESTAMP: timestamp,
            }
        )
    return orjson.dumps(
        {
            SENSOR_ID: sensor_id,
            AREA: area,
            ENERGY_CONSUMPTION: energy_consumption,
            TIMESTAMP: timestamp,
            READING_ID: reading_id,
        }
    )


def is_high(consumption: float, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """High means strictly greater than the threshold: exactly 100 is not high."""
    return consumption > threshold


def processed_json(reading: Reading, high: bool) -> bytes:
    """The value written to the processed (and alarm) topics."""
    out = reading.to_dict()
    out[IS_HIGH_CONSUMPTION] = high
    return orjson.dumps(out)


def parse_timestamp(text: str) -> datetime | None:
    """Parse an ISO-8601 UTC timestamp; None when unparsable, naive or not UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.utcoffset() != _ZERO:
        return None
    return parsed


def format_timestamp(moment: datetime) -> str:
    """The producer's canonical form: UTC with a ``Z`` suffix, millisecond precision."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _check_string(obj: dict[str, Any], field: str, required: bool) -> Rejection | None:
    if field not in obj:
        return Rejection(Reason.MISSING_FIELD, field) if required else None
    value = obj[field]
    if not isinstance(value, str):
        return Rejection(Reason.WRONG_TYPE, f"{field} must be a string")
    if not value:
        return Rejection(Reason.EMPTY_STRING, field)
    if len(value) > MAX_STRING_LENGTH:
        return Rejection(Reason.STRING_TOO_LONG, f"{field} longer than {MAX_STRING_LENGTH}")
    return None


def validate_object(obj: Any) -> Reading | Rejection:
    """Validate a decoded JSON value as a reading."""
    if not isinstance(obj, dict):
        return Rejection(Reason.NOT_OBJECT, type(obj).__name__)
    for field, required in (
        (SENSOR_ID, True),
        (AREA, True),
        (TIMESTAMP, True),
        (READING_ID, False),
    ):
        problem = _check_string(obj, field, required)
        if problem is not None:
            return problem
    if ENERGY_CONSUMPTION not in obj:
        return Rejection(Reason.MISSING_FIELD, ENERGY_CONSUMPTION)
    consumption = obj[ENERGY_CONSUMPTION]
    # bool is a subclass of int in Python, but a JSON true is not a number.
    if isinstance(consumption, bool) or not isinstance(consumption, int | float):
        return Rejection(Reason.WRONG_TYPE, f"{ENERGY_CONSUMPTION} must be a number")
    consumption = float(consumption)
    if not math.isfinite(consumption):
        return Rejection(Reason.NOT_FINITE, ENERGY_CONSUMPTION)
    if consumption < 0:
        return Rejection(Reason.NEGATIVE_CONSUMPTION, str(consumption))
    timestamp = obj[TIMESTAMP]
    if parse_timestamp(timestamp) is None:
        return Rejection(Reason.BAD_TIMESTAMP, timestamp[:64])
    return Reading(obj[SENSOR_ID], obj[AREA], consumption, timestamp, obj.get(READING_ID))


def parse_reading(raw: bytes | None) -> Reading | Rejection:
    """Decode and validate one Kafka message value."""
    if not raw:
        return Rejection(Reason.EMPTY_VALUE, "null or empty value")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Rejection(Reason.OVERSIZED, f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        # orjson reports invalid UTF-8 as a decode error; tell the two apart.
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return Rejection(Reason.INVALID_UTF8, str(error)[:120])
        # NaN and Infinity are not JSON, but some senders write them (Python's json
        # does): the standard library reads them, so the reason can say what is wrong.
        try:
            obj = json.loads(raw)
        except ValueError:
            return Rejection(Reason.NOT_JSON, str(error)[:120])
    return validate_object(obj)
