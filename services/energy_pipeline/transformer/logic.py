"""What the transformer does to one message, as plain functions of data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from energy_fastpath import FastPath

from energy_pipeline.schema import (
    DEFAULT_THRESHOLD,
    MAX_MESSAGE_BYTES,
    MAX_STRING_LENGTH,
    Rejection,
    parse_timestamp,
)
from energy_pipeline.tariff import Tariff, is_off_hours

# Dead-letter headers: why, and where the original message came from.
DLQ_REASON = "dlq.reason"
DLQ_DETAIL = "dlq.detail"
DLQ_SOURCE_TOPIC = "dlq.source.topic"
DLQ_SOURCE_PARTITION = "dlq.source.partition"
DLQ_SOURCE_OFFSET = "dlq.source.offset"


@dataclass(frozen=True)
class Thresholds:
    """Consumption strictly above the threshold is high; areas may have their own."""

    default: float = DEFAULT_THRESHOLD
    per_area: Mapping[str, float] | None = None

    def of(self, area: str) -> float:
        """The threshold of an area."""
        return self.per_area.get(area, self.default) if self.per_area else self.default


def fast_path(thresholds: Thresholds) -> FastPath:
    """The compiled fast path (services/fastpath) for these thresholds and the
    schema's limits."""
    return FastPath(
        thresholds.default, dict(thresholds.per_area or {}), MAX_MESSAGE_BYTES, MAX_STRING_LENGTH
    )


class EventTimeRates:
    """Price per kWh and off-hours flag of an event time, remembered per timestamp
    string (the readings of one round share theirs)."""

    MAX_REMEMBERED = 10_000

    def __init__(self, tariff: Tariff) -> None:
        self.tariff = tariff
        self._known: dict[str, tuple[float, bool]] = {}

    def of(self, timestamp: str) -> tuple[float, bool]:
        known = self._known.get(timestamp)
        if known is None:
            moment = parse_timestamp(timestamp)
            # Valid readings always parse; None cannot happen for them.
            known = (self.tariff.price_at(moment), is_off_hours(moment)) if moment else (0.0, False)
            if len(self._known) >= self.MAX_REMEMBERED:
                self._known.clear()
            self._known[timestamp] = known
        return known


def dead_letter_headers(
    rejection: Rejection,
    topic: str,
    partition: int,
    offset: int,
    original: object,
) -> list[tuple[str, str | bytes | None]]:
    """The original headers, then ours: the reason and the source position."""
    kept: list[tuple[str, str | bytes | None]] = (
        list(original) if isinstance(original, list) else []
    )
    return [
        *kept,
        (DLQ_REASON, rejection.reason.value.encode()),
        (DLQ_DETAIL, rejection.detail.encode("utf-8", "replace")[:512]),
        (DLQ_SOURCE_TOPIC, topic.encode()),
        (DLQ_SOURCE_PARTITION, str(partition).encode()),
        (DLQ_SOURCE_OFFSET, str(offset).encode()),
    ]
