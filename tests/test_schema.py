"""The reading schema: every class of bad input has its reason; edge cases pass."""

from __future__ import annotations

import json

import pytest

from energy_pipeline.schema import (
    MAX_MESSAGE_BYTES,
    MAX_STRING_LENGTH,
    Reading,
    Reason,
    Rejection,
    is_high,
    parse_reading,
    processed_value,
)

from reading_helpers import with_

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, Reason.EMPTY_VALUE),
        (b"", Reason.EMPTY_VALUE),
        (b"x" * (MAX_MESSAGE_BYTES + 1), Reason.OVERSIZED),
        (b'{"sensorId": "\xff\xfe"}', Reason.INVALID_UTF8),
        (b"not json", Reason.NOT_JSON),
        (b'{"sensorId": "a",', Reason.NOT_JSON),
        (b"[1, 2]", Reason.NOT_OBJECT),
        (b"42", Reason.NOT_OBJECT),
        (b"null", Reason.NOT_OBJECT),
        (with_(sensorId=...), Reason.MISSING_FIELD),
        (with_(area=...), Reason.MISSING_FIELD),
        (with_(energyConsumption=...), Reason.MISSING_FIELD),
        (with_(timestamp=...), Reason.MISSING_FIELD),
        (with_(energyConsumption="42"), Reason.WRONG_TYPE),
        (with_(energyConsumption=True), Reason.WRONG_TYPE),
        (with_(energyConsumption=None), Reason.WRONG_TYPE),
        (with_(sensorId=7), Reason.WRONG_TYPE),
        (with_(readingId=7), Reason.WRONG_TYPE),
        (with_(energyConsumption=float("nan")), Reason.NOT_FINITE),
        (with_(energyConsumption=float("inf")), Reason.NOT_FINITE),
        (with_(energyConsumption=float("-inf")), Reason.NOT_FINITE),
        (with_().replace(b"42.5", b"1e999"), Reason.NOT_FINITE),
        (with_().replace(b"42.5", b"1" + b"0" * 400), Reason.NOT_FINITE),
        (with_(energyConsumption=-0.5), Reason.NEGATIVE_CONSUMPTION),
        (with_(timestamp="yesterday"), Reason.BAD_TIMESTAMP),
        (with_(timestamp="2026-01-05T11:00:00"), Reason.BAD_TIMESTAMP),  # naive
        (with_(timestamp="2026-01-05T11:00:00+02:00"), Reason.BAD_TIMESTAMP),  # not UTC
        (with_(timestamp="2026-13-05T11:00:00Z"), Reason.BAD_TIMESTAMP),
        (with_(sensorId=""), Reason.EMPTY_STRING),
        (with_(area=""), Reason.EMPTY_STRING),
        (with_(area="a" * (MAX_STRING_LENGTH + 1)), Reason.STRING_TOO_LONG),
    ],
)
def test_rejections_carry_their_reason(raw: bytes | None, reason: Reason) -> None:
    result = parse_reading(raw)
    assert isinstance(result, Rejection)
    assert result.reason is reason


@pytest.mark.parametrize(
    "raw",
    [
        with_(),
        with_(readingId=...),  # other senders may omit it
        with_(area="cafetería"),
        with_(timestamp="2026-01-05T11:00:00+00:00"),
        with_(timestamp="2026-01-05T11:00:00.123456Z"),
        with_(energyConsumption=0),
        with_(energyConsumption=100),
        with_(area="a" * MAX_STRING_LENGTH),
        with_(extra="ignored"),
        with_(readingId=None),  # null is absent
    ],
)
def test_valid_edge_cases(raw: bytes) -> None:
    assert isinstance(parse_reading(raw), Reading)


def test_exactly_the_threshold_is_not_high() -> None:
    assert not is_high(100.0)
    assert is_high(100.001)
    assert is_high(6.0, threshold=5.0)


@pytest.mark.parametrize(
    "raw",
    [
        with_(area="cafetería", energyConsumption=120, extra="kept"),
        '{"sensorId":"s","area":"cafetería","energyConsumption":120,'
        '"timestamp":"2026-01-05T11:00:00Z"}'.encode(),
        b'{"sensorId":"s","area":"lobby","energyConsumption":120,'
        b'"timestamp":"2026-01-05T11:00:00Z","isHighConsumption":false}   ',
        b'{"sensorId":"s","area":"lobby","energyConsumption":120,'
        b'"timestamp":"2026-01-05T11:00:00Z","isHigh\\u0043onsumption":null}',
        with_(energyConsumption=120) + b"\n",
    ],
)
def test_processed_reading_keeps_every_field_and_sets_the_flag(raw: bytes) -> None:
    reading = parse_reading(raw)
    assert isinstance(reading, Reading)
    out = json.loads(processed_value(raw, reading, is_high(reading.energy_consumption)))
    assert out == {**json.loads(raw), "isHighConsumption": True}


def test_reading_json_round_trips() -> None:
    reading = Reading("s", "lobby", 1.25, "2026-01-05T11:00:00.000Z", "id-1")
    assert parse_reading(reading.to_json()) == reading
