"""Reading topics back in tests: read committed, from the beginning, until a count or
until nothing new arrives for a while."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from energy_pipeline import kafka
from energy_pipeline.settings import ServiceSettings


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    partition: int
    offset: int
    headers: dict[str, bytes]


def to_record(message: Message) -> Record:
    headers = cast(list[tuple[str, bytes]], message.headers() or [])
    return Record(
        message.key(),
        message.value(),
        message.timestamp()[1],
        message.partition() or 0,
        message.offset() or 0,
        dict(headers),
    )


def read_topic(
    settings: ServiceSettings,
    topic: str,
    expected: int | None = None,
    timeout: float = 60.0,
    idle: float = 3.0,
) -> list[Record]:
    """All committed records of ``topic``: stop at ``expected`` records, or after ``idle``
    seconds without a new one (``expected`` None), or at ``timeout``."""
    consumer = Consumer(kafka.reader_config(settings, f"test-reader-{uuid.uuid4().hex[:8]}"))
    records: list[Record] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            if expected is not None and len(records) >= expected:
                break
            if expected is None and records and time.monotonic() - last_new > idle:
                break
            batch = consumer.consume(num_messages=10_000, timeout=0.5)
            for message in batch:
                if message.error():
                    continue
                records.append(to_record(message))
            if batch:
                last_new = time.monotonic()
    finally:
        consumer.close()
    return records


def end_offsets(settings: ServiceSettings, topic: str, partitions: int) -> int:
    """Sum of high watermarks: how many offsets the topic holds (markers included)."""
    consumer = Consumer(kafka.reader_config(settings, f"test-offsets-{uuid.uuid4().hex[:8]}"))
    try:
        total = 0
        for partition in range(partitions):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high
        return total
    finally:
        consumer.close()


def produce_values(
    settings: ServiceSettings, topic: str, messages: Sequence[tuple[bytes | None, bytes | None]]
) -> None:
    """Write (key, value) pairs and wait until every one is acknowledged."""
    producer = Producer(kafka.producer_config(settings))
    failures: list[str] = []

    def on_delivery(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    for key, value in messages:
        producer.produce(topic, value, key, on_delivery=on_delivery)
    remaining = producer.flush(30)
    assert remaining == 0 and not failures, (remaining, failures[:3])
