"""The compiled fast path (services/fastpath) against the reading schema, and its
producer on the real broker.

The fast path handles the plain valid readings and leaves everything else to the
Python path (energy_pipeline.schema), which has the last word. These tests hold the
two to agreement: whatever the fast path accepts, the schema accepts with the same
processed value, flag and counts; what the producer writes is accepted (else the
fast path would silently never run); and bad input of every class is left alone.
A batch's readings are produced, in order, with their keys and timestamps, through
the compiled producer to the real broker, and read back.

confluent_kafka's Message cannot be made outside a consumer, so the messages here are
plain objects with the same methods; the transformer's tests feed it real ones.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from energy_fastpath import Producer

from energy_pipeline import kafka as kafka_clients
from energy_pipeline.producer.model import Simulation, SimulationConfig
from energy_pipeline.schema import (
    MAX_MESSAGE_BYTES,
    MAX_STRING_LENGTH,
    Rejection,
    encode_reading,
    format_timestamp,
    is_high,
    parse_reading,
    processed_value,
)
from energy_pipeline.transformer.logic import Thresholds, fast_path

from conftest import KafkaUnderTest
from kafka_helpers import read_topic
from reading_helpers import VALID
from reading_helpers import with_ as reading_with

unit = pytest.mark.unit

# The fast path reads UTF-8 as it is: its readings are written without escapes.
with_ = partial(reading_with, ascii_only=False)


@dataclass
class ConsumedMessage:
    """What the fast path reads of a consumed message."""

    payload: bytes | None
    partition_number: int = 0
    offset_number: int = 0
    failure: object = None
    key_bytes: bytes | None = b"sensor"
    timestamp_ms: int = 1_000

    def error(self) -> object:
        return self.failure

    def value(self) -> bytes | None:
        return self.payload

    def partition(self) -> int:
        return self.partition_number

    def offset(self) -> int:
        return self.offset_number

    def key(self) -> bytes | None:
        return self.key_bytes

    def timestamp(self) -> tuple[int, int]:
        return (1, self.timestamp_ms)


Verdict = tuple[bytes, bool, dict[tuple[str, str], list[float]]]


def fast_verdict(raw: bytes | None, thresholds: Thresholds | None = None) -> Verdict | None:
    if raw is None:
        return None
    accepted = fast_path(thresholds or Thresholds()).accept(raw)
    if accepted is None:
        return None
    value, high, area, timestamp, consumption = accepted
    return value, high, {(area, timestamp): [1, consumption, int(high)]}


def schema_verdict(raw: bytes | None, thresholds: Thresholds | None = None) -> Verdict | None:
    thresholds = thresholds or Thresholds()
    reading = parse_reading(raw)
    if isinstance(reading, Rejection):
        return None
    assert raw is not None
    high = is_high(reading.energy_consumption, thresholds.of(reading.area))
    counts = [1, reading.energy_consumption, int(high)]
    return processed_value(raw, reading, high), high, {(reading.area, reading.timestamp): counts}


def assert_agree(raw: bytes | None, thresholds: Thresholds | None = None) -> bool:
    """The fast path's verdict, if it gives one, is the schema's; True if it gave one."""
    fast = fast_verdict(raw, thresholds)
    if fast is not None:
        assert fast == schema_verdict(raw, thresholds), raw
    return fast is not None


@unit
def test_every_reading_the_producer_writes_takes_the_fast_path() -> None:
    simulation = Simulation(SimulationConfig(sensors_per_area=5, seed=7, fault_rate=0.05))
    raws = []
    for round_number in range(200):
        moment, readings = simulation.next_round()
        for sensor, value in readings:
            raws.append(
                encode_reading(
                    sensor.sensor_id,
                    sensor.area,
                    value,
                    format_timestamp(moment),
                    f"run-{round_number}",
                )
            )
    assert len(raws) > 1000
    assert all(assert_agree(raw) for raw in raws)


@unit
@pytest.mark.parametrize(
    "raw",
    [
        with_(),
        with_(readingId=...),
        with_(readingId=None),
        with_(area="cafetería"),
        with_(area="办公室", sensorId="办公室-01"),
        with_(timestamp="2026-01-05T11:00:00+00:00"),
        with_(timestamp="2026-01-05T11:00:00Z"),
        with_(timestamp="2026-01-05T11:00:00.1Z"),
        with_(timestamp="2026-01-05T11:00:00.123456Z"),
        with_(timestamp="2024-02-29T23:59:59Z"),
        with_(energyConsumption=0),
        with_(energyConsumption=100),
        with_(energyConsumption=100.00000000000001),
        with_(energyConsumption=-0.0),
        with_(energyConsumption=1e300),
        with_(area="a" * MAX_STRING_LENGTH),
        with_(extra="ignored", flag=True, off=False, nothing=None, number=-1.5e-3),
        b'{ "sensorId" : "s" ,\t"area":"lobby",\n"energyConsumption":7,"timestamp":'
        b'"2026-01-05T11:00:00Z"}',
        b'  {"sensorId":"s","area":"lobby","energyConsumption":7,'
        b'"timestamp":"2026-01-05T11:00:00Z"}',
    ],
)
def test_plain_valid_readings_take_the_fast_path_with_the_schemas_result(raw: bytes) -> None:
    assert assert_agree(raw)


@unit
@pytest.mark.parametrize(
    "raw",
    [
        # Valid, but of a form the fast path leaves to the schema.
        json.dumps({**VALID, "area": "cafetería"}).encode(),  # written caf\u00e9ter\u00eda
        with_().replace(b'"offices"', b'"off\\u0069ces"'),
        with_(extra={"nested": [1, 2, {"x": None}]}),
        with_(extra=[1]),
        with_(isHighConsumption=True),
        with_(isHighConsumption=None),
        with_() + b"\n",
        with_(timestamp="2026-01-05T11:00:00-00:00"),
        with_(timestamp="2026-01-05T11:00:00.1234567Z"),
        with_(timestamp="2026-01-05 11:00:00Z"),
        with_(area="é" * MAX_STRING_LENGTH),  # 256 characters, 512 bytes
        b'{"sensorId":"s","area":"lobby","energyConsumption":1,'
        b'"timestamp":"2026-01-05T11:00:00Z","isHigh\\u0043onsumption":false}',
        # Invalid: every class of the schema's reasons.
        None,
        b"",
        b"x" * (MAX_MESSAGE_BYTES + 1),
        b'{"sensorId": "\xff\xfe"}',
        with_(extra="x").replace(b'"x"', b'"\xed\xa0\x80"'),  # a UTF-8 surrogate
        with_(extra="x").replace(b'"x"', b'"tab\there"'),  # a raw control character
        with_().replace(b"42.5", b"042.5"),
        with_().replace(b"42.5", b"42."),
        with_().replace(b"42.5", b".5"),
        with_().replace(b"42.5", b"+42.5"),
        with_().replace(b"42.5", b"4e"),
        with_().replace(b"42.5", b"0x2A"),
        with_().replace(b"42.5", b"Infinity"),
        with_().replace(b'"r-1"', b"nul"),
        with_().replace(b"}", b",}"),
        with_().replace(b", ", b" "),
        b"{}",
        b"not json",
        b"[1, 2]",
        b"null",
        with_(sensorId=...),
        with_(area=...),
        with_(energyConsumption=...),
        with_(timestamp=...),
        with_(energyConsumption="42"),
        with_(energyConsumption=True),
        with_(energyConsumption=None),
        with_(sensorId=7),
        with_(readingId=7),
        with_(readingId=""),
        with_(energyConsumption=float("nan")),
        with_(energyConsumption=float("inf")),
        with_().replace(b"42.5", b"1e999"),
        with_().replace(b"42.5", b"1" + b"0" * 400),
        with_(energyConsumption=-0.5),
        with_(timestamp="yesterday"),
        with_(timestamp="2026-01-05T11:00:00"),
        with_(timestamp="2026-01-05T11:00:00+02:00"),
        with_(timestamp="2026-13-05T11:00:00Z"),
        with_(timestamp="2026-02-29T11:00:00Z"),
        with_(timestamp="2026-01-05T24:00:00Z"),
        with_(timestamp="2026-01-05T23:59:60Z"),
        with_(timestamp="0000-01-05T11:00:00Z"),
        with_(sensorId=""),
        with_(area=""),
        with_(area="a" * (MAX_STRING_LENGTH + 1)),
        with_().replace(b'"area"', b'"area": "x", "area"'),  # a duplicate field
    ],
)
def test_everything_else_is_left_to_the_schema(raw: bytes | None) -> None:
    assert fast_verdict(raw) is None


@unit
def test_mutated_readings_never_disagree_with_the_schema() -> None:
    """Random damage to valid readings: whatever the fast path still accepts, the
    schema accepts the same way."""
    rng = random.Random(20261204)
    alphabet = b'{}[]",:.-+eE0123456789 \\uZ\x00\xff\xc3\xa9tnfalsr'
    seeds = [with_(), with_(energyConsumption=120.5, area="lobby"), with_(readingId=...)]
    accepted = 0
    for _ in range(20_000):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(raw))
            action = rng.randrange(3)
            if action == 0:
                del raw[position]
            elif action == 1:
                raw.insert(position, rng.choice(alphabet))
            else:
                raw[position] = rng.choice(alphabet)
        accepted += assert_agree(bytes(raw))
    # Some damage leaves a valid reading (a digit changed): the property was tested.
    assert accepted > 1000


@unit
def test_area_thresholds_flag_as_the_schema_does() -> None:
    thresholds = Thresholds(100.0, {"lobby": 20.0, "cafetería": 150.0})
    for area, consumption, high in [
        ("lobby", 25.0, True),
        ("lobby", 20.0, False),
        ("cafetería", 120.0, False),
        ("cafetería", 150.5, True),
        ("offices", 100.5, True),
    ]:
        raw = with_(area=area, energyConsumption=consumption)
        verdict = fast_verdict(raw, thresholds)
        assert verdict is not None and verdict[1] is high, (area, consumption)
        assert assert_agree(raw, thresholds)


@pytest.fixture
def producer(kafka: KafkaUnderTest) -> Iterator[Producer]:
    """The compiled producer on the real broker, configured as the transformer's."""
    producer = Producer(
        kafka_clients.librdkafka_path(), kafka_clients.producer_config(kafka.settings())
    )
    yield producer
    producer.flush(30)


@pytest.mark.kafka
def test_a_batch_is_produced_in_order_counted_and_its_offsets_are_the_next_ones(
    kafka: KafkaUnderTest, producer: Producer
) -> None:
    class Failure:
        pass

    batch = [
        ConsumedMessage(with_(area="lobby", energyConsumption=10), 0, 5, key_bytes=b"a"),
        ConsumedMessage(with_(area="lobby", energyConsumption=110), 1, 7, timestamp_ms=7),
        ConsumedMessage(b"not json", 0, 6),
        ConsumedMessage(with_(area="offices", energyConsumption=1.5), 1, 8, key_bytes=None),
        ConsumedMessage(with_(area="lobby", energyConsumption=5, timestamp="2026-01-05T12:00:00Z")),
        ConsumedMessage(with_(area="lobby", energyConsumption=0.5), 0, 9, timestamp_ms=9),
        ConsumedMessage(None, 3, 99, failure=Failure()),  # a consumer error: no offset
    ]
    batch[4].partition_number, batch[4].offset_number = 2, 1
    # One partition each: the order of the outputs is the order they were produced in.
    processed, alerts = kafka.topic("fast-processed", 1), kafka.topic("fast-alerts", 1)
    others: list[ConsumedMessage] = []
    groups, next_offsets = fast_path(Thresholds()).transform(
        batch, producer, processed, alerts, others.append
    )
    assert producer.flush(30) == 0 and producer.delivery_failures == 0
    assert others == [batch[2], batch[6]]
    assert groups == {
        ("lobby", VALID["timestamp"]): [3, 120.5, 1],
        ("offices", VALID["timestamp"]): [1, 1.5, 0],
        ("lobby", "2026-01-05T12:00:00Z"): [1, 5.0, 0],
    }
    assert next_offsets == {0: 10, 1: 9, 2: 2}
    fast = [message for message in batch if message not in others]
    records = read_topic(kafka.settings(), processed, expected=len(fast))
    assert [(r.key, r.value, r.timestamp_ms) for r in records] == [
        (m.key_bytes, schema_verdict(m.payload)[0], m.timestamp_ms)  # type: ignore[index]
        for m in fast
    ]
    [alarm] = read_topic(kafka.settings(), alerts, expected=1)
    assert (alarm.key, alarm.timestamp_ms) == (b"sensor", 7)
    assert alarm.value is not None and alarm.value == records[1].value
    assert alarm.value.endswith(b'"isHighConsumption":true}')
    assert fast_path(Thresholds()).transform([], producer, processed, alerts, others.append) == (
        {},
        {},
    )


@pytest.mark.kafka
def test_a_batch_of_mixed_message_classes_is_refused(
    kafka: KafkaUnderTest, producer: Producer
) -> None:
    @dataclass
    class Other(ConsumedMessage):
        pass

    topic = kafka.topic("fast-refused", 1)
    with pytest.raises(TypeError, match="one class"):
        fast_path(Thresholds()).transform(
            [ConsumedMessage(with_()), Other(with_())], producer, topic, topic, print
        )


@pytest.mark.kafka
def test_the_producer_writes_headers_and_null_values_and_transactions(
    kafka: KafkaUnderTest,
) -> None:
    settings = kafka.settings()
    topic = kafka.topic("native-producer", 1)
    producer = Producer(
        kafka_clients.librdkafka_path(),
        kafka_clients.transactional_producer_config(settings, f"test-{topic}"),
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"aborted", b"k", 1_000)
    producer.produce(topic, b"aborted too", b"k", 1_500)
    producer.abort_transaction(30)  # purges what it had not sent: not a failure
    producer.begin_transaction()
    headers: list[tuple[str, str | bytes | None]] = [("why", b"bad"), ("text", "t"), ("none", None)]
    producer.produce(topic, None, b"k", 2_000, headers)
    producer.produce(topic, b"v", None, 3_000)
    # Offsets of a consumer group committed within the transaction.
    group = f"native-{topic}"
    consumer = Consumer(kafka_clients.consumer_config(settings, group))
    try:
        producer.send_offsets_to_transaction(
            [TopicPartition(topic, 0, 2)], consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(30)
        [committed] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        consumer.close()
    assert committed.offset == 2
    records = read_topic(settings, topic, expected=2)
    assert [(r.key, r.value, r.timestamp_ms) for r in records] == [
        (b"k", None, 2_000),
        (None, b"v", 3_000),
    ]
    assert records[0].headers == {"why": b"bad", "text": b"t", "none": None}
    assert producer.delivery_failures == 0 and producer.last_delivery_error == ""


@unit
def test_the_producer_names_a_bad_setting_and_counts_failed_deliveries() -> None:
    library = kafka_clients.librdkafka_path()
    with pytest.raises(KafkaException, match="no.such.setting"):
        Producer(library, {"bootstrap.servers": "127.0.0.1:1", "no.such.setting": 1})
    # Nothing listens on port 1: the message times out and is reported failed.
    producer = Producer(
        library, {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 100, "log_level": 0}
    )
    producer.produce("nowhere", b"v")
    assert producer.flush(10) == 0
    assert producer.delivery_failures == 1
    assert "timed out" in producer.last_delivery_error


@unit
def test_numbers_are_read_to_the_last_bit_as_the_schema_reads_them() -> None:
    rng = random.Random(5)
    accepted = 0
    for _ in range(5000):
        text = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25))).lstrip("0")
        text = text or "0"
        if rng.random() < 0.5:
            text += "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 20)))
        if rng.random() < 0.3:
            text += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 330))
        accepted += assert_agree(with_().replace(b"42.5", text.encode()))
    assert accepted > 4000  # all but the ones too large for a float
