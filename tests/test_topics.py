"""Topic creation on the real broker: idempotent, partitions as defined."""

from __future__ import annotations

import uuid

import pytest

from energy_pipeline.schema import Reading, parse_reading
from energy_pipeline.topics import (
    DEFAULT_TOPICS,
    TopicOutcome,
    TopicSpec,
    delete_topics,
    ensure_topics,
    existing_partitions,
)

from conftest import KafkaUnderTest
from kafka_helpers import produce_values, read_topic

pytestmark = pytest.mark.kafka


def test_topic_creation_is_idempotent(kafka: KafkaUnderTest) -> None:
    suffix = uuid.uuid4().hex[:6]
    specs = [
        TopicSpec(f"{spec.name}-{suffix}", spec.partitions, spec.replicas, spec.config)
        for spec in DEFAULT_TOPICS.values()
    ]
    admin = kafka.admin()
    first = ensure_topics(admin, specs)
    assert [r.outcome for r in first] == [TopicOutcome.CREATED] * len(specs)
    second = ensure_topics(admin, specs)
    assert [r.outcome for r in second] == [TopicOutcome.EXISTS] * len(specs)
    partitions = existing_partitions(admin)
    assert {s.name: partitions[s.name] for s in specs} == {s.name: s.partitions for s in specs}
    assert sorted(delete_topics(admin, [s.name for s in specs])) == sorted(s.name for s in specs)


def test_fewer_partitions_than_asked_is_reported(kafka: KafkaUnderTest) -> None:
    name = kafka.topic("few", partitions=2)
    [result] = ensure_topics(kafka.admin(), [TopicSpec(name, partitions=4)])
    assert result.outcome is TopicOutcome.TOO_FEW_PARTITIONS
    assert "2 partitions, 4 asked" in result.message
    assert not result.ok


def test_round_trip_of_readings(kafka: KafkaUnderTest) -> None:
    topic = kafka.topic("roundtrip")
    readings = [
        Reading(f"lobby-{i:02d}", "lobby", i * 1.5, "2026-01-05T11:00:00.000Z", f"r{i}")
        for i in range(50)
    ]
    produce_values(kafka.settings(), topic, [(r.sensor_id.encode(), r.to_json()) for r in readings])
    records = read_topic(kafka.settings(), topic, expected=len(readings))
    back = [parse_reading(record.value) for record in records]
    assert sorted(back, key=lambda r: r.reading_id or "") == sorted(  # type: ignore[union-attr]
        readings, key=lambda r: r.reading_id or ""
    )
