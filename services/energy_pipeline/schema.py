"""The reading schema: the one place that says what a sensor reading is.

A reading, as the original exercise named its fields::

    {"sensorId": "offices-01", "area": "offices", "energyConsumption": 42.5,
     "timestamp": "2026-01-05T11:00:00.000Z", "readingId": "3f2a...-17"}

``energyConsumption`` is the energy in kWh used in the reading's interval;
``timestamp`` is the event time, ISO-8601 in UTC (``Z`` or ``+00:00``, fractions
allowed); ``readingId`` is set by our producer and optional on input (absent or
null). A processed reading adds ``isHighConsumption``: consumption strictly greater
than the threshold.

Validation never raises on bad input: it returns a :class:`Rejection` whose
``reason`` is one of :class:`Reason`, so that the transformer can route the message
to the dead-letter topic and count it. Valid readings take a fast path (msgspec
decodes and checks types in C); only a message that fails it is examined again,
slowly, to name the reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

import msgspec

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


_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STRING_LENGTH)]


class Reading(
    msgspec.Struct,
    frozen=True,
    omit_defaults=True,
    rename={
        "sensor_id": SENSOR_ID,
        "energy_consumption": ENERGY_CONSUMPTION,
        "reading_id": READING_ID,
        "incoming_flag": IS_HIGH_CONSUMPTION,
    },
):
    """A valid reading. ``energy_consumption`` is finite and >= 0.

    ``incoming_flag`` is an ``isHighConsumption`` the input already carried, kept
    undecoded (empty when it had none): the processed value then replaces it rather
    than appending the key a second time.
    """

    sensor_id: _Text
    area: _Text
    energy_consumption: Annotated[float, msgspec.Meta(ge=0)]
    timestamp: _Text
    reading_id: _Text | None = None
    incoming_flag: msgspec.Raw = msgspec.Raw()

    def to_json(self) -> bytes:
        return _encoder.encode(self)


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str


_encoder = msgspec.json.Encoder()
_reading_decoder = msgspec.json.Decoder(Reading)
_any_decoder = msgspec.json.Decoder()


def encode_reading(
    sensor_id: str,
    area: str,
    energy_consumption: float,
    timestamp: str,
    reading_id: str | None,
) -> bytes:
    """A reading as JSON bytes."""
    return _encoder.encode(Reading(sensor_id, area, energy_consumption, timestamp, reading_id))


def is_high(consumption: float, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """High means strictly greater than the threshold: exactly 100 is not high."""
    return consumption > threshold


_HIGH_KEY = b'"' + IS_HIGH_CONSUMPTION.encode() + b'"'
_TRUE_TAIL = b"," + _HIGH_KEY + b":true}"
_FALSE_TAIL = b"," + _HIGH_KEY + b":false}"


def processed_value(raw: bytes, reading: Reading, high: bool) -> bytes:
    """The value written to the processed (and alarm) topics: the valid input reading,
    every field of it as it came, plus ``isHighConsumption``.

    ``reading`` is what :func:`parse_reading` made of ``raw``. When the input has no
    flag of its own, ours is appended before the closing brace (no decoding again);
    otherwise the object is decoded, updated and encoded again.
    """
    if not len(reading.incoming_flag) and raw[-1:] == b"}":
        return raw[:-1] + (_TRUE_TAIL if high else _FALSE_TAIL)
    obj = _any_decoder.decode(raw)
    obj[IS_HIGH_CONSUMPTION] = high
    return _encoder.encode(obj)


def parse_timestamp(text: str) -> datetime | None:
    """Parse an ISO-8601 UTC timestamp; None when unparsable, naive or not UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.utcoffset() != _ZERO:
        return None
    return parsed


@lru_cache(maxsize=4096)
def _timestamp_ok(text: str) -> bool:
    # Readings of one round share their timestamp: most checks are cache hits.
    return parse_timestamp(text) is not None


def format_timestamp(moment: datetime) -> str:
    """The producer's canonical form: UTC with a ``Z`` suffix, millisecond precision."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_reading(raw: bytes | None) -> Reading | Rejection:
    """Decode and validate one Kafka message value."""
    if not raw:
        return Rejection(Reason.EMPTY_VALUE, "null or empty value")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Rejection(Reason.OVERSIZED, f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        reading = _reading_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        return diagnose(raw, str(error))
    if not _timestamp_ok(reading.timestamp):
        return Rejection(Reason.BAD_TIMESTAMP, reading.timestamp[:64])
    return reading


def diagnose(raw: bytes, fast_path_error: str = "") -> Rejection:
    """Why ``raw`` is not a reading, named precisely (the slow path)."""
    try:
        obj = _any_decoder.decode(raw)
    except msgspec.DecodeError as error:
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
    return _check_object(obj) or Rejection(Reason.WRONG_TYPE, fast_path_error[:120])


def _check_string(obj: dict[str, Any], field: str, required: bool) -> Rejection | None:
    if obj.get(field) is None:
        if field in obj and required:
            return Rejection(Reason.WRONG_TYPE, f"{field} must be a string, not null")
        return Rejection(Reason.MISSING_FIELD, field) if required else None
    value = obj[field]
    if not isinstance(value, str):
        return Rejection(Reason.WRONG_TYPE, f"{field} must be a string")
    if not value:
        return Rejection(Reason.EMPTY_STRING, field)
    if len(value) > MAX_STRING_LENGTH:
        return Rejection(Reason.STRING_TOO_LONG, f"{field} longer than {MAX_STRING_LENGTH}")
    return None


def _check_object(obj: Any) -> Rejection | None:
    """The first problem of a decoded JSON value as a reading, or None."""
    if not isinstance(obj, dict):
        return Rejection(Reason.NOT_OBJECT, type(obj).__name__)
    fields = ((SENSOR_ID, True), (AREA, True), (TIMESTAMP, True), (READING_ID, False))
    for field, required in fields:
        problem = _check_string(obj, field, required)
        if problem is not None:
            return problem
    if ENERGY_CONSUMPTION not in obj:
        return Rejection(Reason.MISSING_FIELD, ENERGY_CONSUMPTION)
    consumption = obj[ENERGY_CONSUMPTION]
    # bool is a subclass of int in Python, but a JSON true is not a number.
    if isinstance(consumption, bool) or not isinstance(consumption, int | float):
        return Rejection(Reason.WRONG_TYPE, f"{ENERGY_CONSUMPTION} must be a number")
    try:
        consumption = float(consumption)
    except OverflowError:
        consumption = math.inf
    if not math.isfinite(consumption):
        return Rejection(Reason.NOT_FINITE, ENERGY_CONSUMPTION)
    if consumption < 0:
        return Rejection(Reason.NEGATIVE_CONSUMPTION, str(consumption))
    if parse_timestamp(obj[TIMESTAMP]) is None:
        return Rejection(Reason.BAD_TIMESTAMP, obj[TIMESTAMP][:64])
    return None
