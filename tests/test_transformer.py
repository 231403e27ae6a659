"""The transformer on the real broker: flagging, dead letters, crashes, broker restarts
and two instances in one group. Every check reads the output topics back, read committed."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from energy_pipeline.local.broker import LocalBroker, free_port
from energy_pipeline.producer.service import ProducerService, ProducerSettings
from energy_pipeline.settings import ServiceSettings
from energy_pipeline.transformer.logic import (
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
)
from energy_pipeline.transformer.service import STALL_SECONDS

from conftest import KafkaUnderTest
from kafka_helpers import Record, produce_values, read_topic
from metrics_helpers import scrape, wait_for_metric


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()


pytestmark = pytest.mark.kafka


@dataclass(frozen=True)
class Topics:
    raw: str
    processed: str
    alerts: str
    dead_letter: str


def make_topics(kafka: KafkaUnderTest, partitions: int = 6) -> Topics:
    return Topics(
        kafka.topic("raw", partitions),
        kafka.topic("processed", partitions),
        kafka.topic("alerts", partitions),
        kafka.topic("dlq", 1),
    )


class TransformerProcess:
    """``energy-transformer`` as a child process, its output in a log file."""

    def __init__(
        self, bootstrap: str, topics: Topics, log_dir: Path, group: str, instance: str, *extra: str
    ) -> None:
        self.metrics_port = free_port()
        self.log_path = log_dir / f"transformer-{instance}-{uuid.uuid4().hex[:4]}.log"
        self.args = [
            sys.executable,
            "-m",
            "energy_pipeline.transformer.cli",
            "--bootstrap-servers",
            bootstrap,
            "--group-id",
            group,
            "--instance-id",
            instance,
            "--input-topic",
            topics.raw,
            "--processed-topic",
            topics.processed,
            "--alerts-topic",
            topics.alerts,
            "--dead-letter-topic",
            topics.dead_letter,
            "--metrics-port",
            str(self.metrics_port),
            "--session-timeout-ms",
            "6000",
            *extra,
        ]
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                self.args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"transformer did not stop on SIGTERM:\n{self.log()[-3000:]}"
            ) from None


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[list[TransformerProcess]]:
    """Started transformers are stopped after the test, whatever happened."""
    started: list[TransformerProcess] = []
    yield started
    for transformer in started:
        if transformer.process.poll() is None:
            transformer.process.kill()
            transformer.process.wait()


def start(
    spawn: list[TransformerProcess],
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    group: str,
    instance: str = "a",
    *extra: str,
) -> TransformerProcess:
    transformer = TransformerProcess(kafka_bootstrap, topics, tmp_path, group, instance, *extra)
    spawn.append(transformer)
    return transformer


def produce_readings(
    bootstrap: str, topic: str, count: int, rate: float = 0, seed: int = 1
) -> ProducerService:
    service = ProducerService(
        ProducerSettings.load(
            {
                "bootstrap_servers": bootstrap,
                "topic": topic,
                "count": count,
                "rate": rate,
                "time_scale": 1e9,
                "sensors_per_area": 50,
                "metrics_port": 0,
                "seed": seed,
            }
        )
    )
    result = service.run()
    assert result.delivered == count and result.failed == 0
    return service


def ids_of(records: list[Record]) -> Counter[str]:
    return Counter(json.loads(r.value or b"{}")["readingId"] for r in records)


def expected_high(records: list[Record], threshold: float = 100.0) -> set[str]:
    return {
        body["readingId"]
        for body in (json.loads(r.value or b"{}") for r in records)
        if body["energyConsumption"] > threshold
    }


def assert_exactly_once(settings: ServiceSettings, topics: Topics, timeout: float = 120) -> None:
    raw = read_topic(settings, topics.raw, idle=2)
    raw_ids = ids_of(raw)
    assert len(raw_ids) == len(raw)  # the producer's ids are unique
    processed = read_topic(settings, topics.processed, expected=len(raw), timeout=timeout)
    # Read a little longer: a duplicate would arrive after the expected count.
    processed += read_topic_tail(settings, topics.processed, len(processed))
    got = ids_of(processed)
    missing = set(raw_ids) - set(got)
    duplicated = {i: n for i, n in got.items() if n > 1}
    assert not missing and not duplicated, (len(missing), list(duplicated.items())[:5])
    high = expected_high(raw)
    alerts = ids_of(read_topic(settings, topics.alerts, expected=len(high), timeout=timeout))
    assert set(alerts) == high and all(n == 1 for n in alerts.values())


def read_topic_tail(settings: ServiceSettings, topic: str, already: int) -> list[Record]:
    """Whatever a topic holds beyond ``already`` records (expected: nothing)."""
    everything = read_topic(settings, topic, expected=None, timeout=30, idle=2)
    return everything[already:]


def test_flags_routes_and_preserves_key_and_timestamp(
    kafka: KafkaUnderTest, tmp_path: Path, spawn: list[TransformerProcess]
) -> None:
    topics = make_topics(kafka, partitions=2)
    readings = [
        ("lobby-01", "lobby", 100.0),  # exactly the threshold: not high
        ("lobby-02", "lobby", 100.5),
        ("cafetería-01", "cafetería", 150.0),
        ("offices-01", "offices", 110.0),  # offices have their own threshold of 120
        ("offices-02", "offices", 121.0),
    ]
    messages = [
        (
            sensor.encode(),
            _dumps(
                {
                    "sensorId": sensor,
                    "area": area,
                    "energyConsumption": value,
                    # A Monday: 11:00 is a peak, working hour; 23:00 is off-peak, off hours.
                    "timestamp": f"2026-01-05T{11 if i < 3 else 23}:00:0{i}Z",
                    "readingId": f"id-{i}",
                }
            ),
        )
        for i, (sensor, area, value) in enumerate(readings)
    ]
    produce_values(kafka.settings(), topics.raw, messages)
    transformer = start(
        spawn,
        kafka.bootstrap_servers,
        topics,
        tmp_path,
        f"g-{uuid.uuid4()}",
        "a",
        "--area-thresholds",
        "offices=120",
        "--peak-price-per-kwh",
        "0.30",
    )
    processed = read_topic(kafka.settings(), topics.processed, expected=5, timeout=60)
    alerts = read_topic(kafka.settings(), topics.alerts, expected=3, timeout=30)
    wait_for_metric(transformer.metrics_port, "energy_transformer_readings_processed_total", 5)
    metrics = scrape(transformer.metrics_port)
    assert transformer.stop() == 0
    by_id = {json.loads(r.value or b"")["readingId"]: r for r in processed}
    flags = {i: json.loads(r.value or b"")["isHighConsumption"] for i, r in by_id.items()}
    assert flags == {"id-0": False, "id-1": True, "id-2": True, "id-3": False, "id-4": True}
    assert sorted(ids_of(alerts)) == ["id-1", "id-2", "id-4"]
    raw = {
        json.loads(r.value or b"")["readingId"]: r
        for r in read_topic(kafka.settings(), topics.raw, expected=5)
    }
    for i, (sensor, _, _) in enumerate(readings):
        record = by_id[f"id-{i}"]
        assert record.key == sensor.encode()
        assert record.timestamp_ms == raw[f"id-{i}"].timestamp_ms
    assert "stopped:" in transformer.log()
    energy = sum(value for _, _, value in readings)
    assert metrics["energy_transformer_consumption_kwh_total"] == pytest.approx(energy)
    assert metrics["energy_transformer_cost_total"] == pytest.approx(
        0.30 * (100.0 + 100.5 + 150.0) + 0.15 * (110.0 + 121.0)
    )
    assert metrics['energy_transformer_off_hours_consumption_kwh_total{area="offices"}'] == (
        pytest.approx(231.0)
    )
    assert metrics['energy_transformer_cost_total{area="lobby",currency="EUR"}'] == (
        pytest.approx(0.30 * 200.5)
    )


MALFORMED: list[tuple[bytes | None, str]] = [
    (None, "empty_value"),
    (b"", "empty_value"),
    (b"{not json", "not_json"),
    (b"\xff\xfe\x00garbage", "invalid_utf8"),
    (b"[1,2,3]", "not_object"),
    (b'{"area":"lobby","energyConsumption":1,"timestamp":"2026-01-05T11:00:00Z"}', "missing_field"),
    (
        b'{"sensorId":"s","area":"lobby","energyConsumption":true,"timestamp":"2026-01-05T11:00:00Z"}',
        "wrong_type",
    ),
    (
        b'{"sensorId":"s","area":"lobby","energyConsumption":NaN,"timestamp":"2026-01-05T11:00:00Z"}',
        "not_finite",
    ),
    (
        b'{"sensorId":"s","area":"lobby","energyConsumption":-3,"timestamp":"2026-01-05T11:00:00Z"}',
        "negative_consumption",
    ),
    (
        b'{"sensorId":"s","area":"lobby","energyConsumption":3,"timestamp":"half past ten"}',
        "bad_timestamp",
    ),
    (
        b'{"sensorId":"","area":"lobby","energyConsumption":3,"timestamp":"2026-01-05T11:00:00Z"}',
        "empty_string",
    ),
    (
        b'{"sensorId":"' + b"s" * 300 + b'","area":"lobby","energyConsumption":3,'
        b'"timestamp":"2026-01-05T11:00:00Z"}',
        "string_too_long",
    ),
    (b'{"pad":"' + b"x" * 70_000 + b'"}', "oversized"),
]


def test_an_idle_transformer_commits_at_once_not_at_the_end_of_the_interval(
    kafka: KafkaUnderTest, spawn: list[TransformerProcess], tmp_path: Path
) -> None:
    """With a minute's commit interval, readings still reach downstream (read
    committed) in seconds: once the input has run dry, the transformer commits."""
    topics = make_topics(kafka, partitions=2)
    transformer = start(
        spawn,
        kafka.bootstrap_servers,
        topics,
        tmp_path,
        f"g-{uuid.uuid4()}",
        "a",
        "--commit-interval-ms",
        "60000",
    )
    wait_for_log(transformer, "assigned partitions")
    for burst in range(2):
        reading = {
            "sensorId": "lobby-01",
            "area": "lobby",
            "energyConsumption": 150.0,
            "timestamp": "2026-01-05T11:00:00Z",
            "readingId": f"burst-{burst}",
        }
        produce_values(kafka.settings(), topics.raw, [(b"lobby-01", _dumps(reading))])
        # Within 20 s: long before the interval's minute is over.
        processed = read_topic(kafka.settings(), topics.processed, expected=burst + 1, timeout=20)
        assert sorted(ids_of(processed)) == [f"burst-{n}" for n in range(burst + 1)]
    alerts = read_topic(kafka.settings(), topics.alerts, expected=2, timeout=20)
    assert sorted(ids_of(alerts)) == ["burst-0", "burst-1"]
    assert transformer.stop() == 0


def test_malformed_messages_go_to_the_dead_letter_topic(
    kafka: KafkaUnderTest, tmp_path: Path, spawn: list[TransformerProcess]
) -> None:
    topics = make_topics(kafka, partitions=3)
    messages: list[tuple[bytes | None, bytes | None]] = []
    valid_ids = []
    for round_ in range(20):
        for i, (bad, _) in enumerate(MALFORMED):
            messages.append((f"bad-{round_}-{i}".encode(), bad))
            reading_id = f"ok-{round_}-{i}"
            valid_ids.append(reading_id)
            messages.append(
                (
                    b"lobby-01",
                    _dumps(
                        {
                            "sensorId": "lobby-01",
                            "area": "lobby",
                            "energyConsumption": 5.0 * i,
                            "timestamp": "2026-01-05T11:00:00Z",
                            "readingId": reading_id,
                        }
                    ),
                )
            )
    produce_values(kafka.settings(), topics.raw, messages)
    transformer = start(spawn, kafka.bootstrap_servers, topics, tmp_path, f"g-{uuid.uuid4()}")
    processed = read_topic(kafka.settings(), topics.processed, expected=len(valid_ids))
    dead = read_topic(kafka.settings(), topics.dead_letter, expected=20 * len(MALFORMED))
    wait_for_metric(
        transformer.metrics_port, "energy_transformer_invalid_readings_total", minimum=len(dead)
    )
    metrics = scrape(transformer.metrics_port)
    assert transformer.stop() == 0
    assert sorted(ids_of(processed)) == sorted(valid_ids)
    original = {key: value for key, value in messages if key and key.startswith(b"bad-")}
    reasons: Counter[str] = Counter()
    for record in dead:
        assert record.key is not None
        assert record.value == original[record.key] or (
            not record.value and not original[record.key]
        )
        index = int(record.key.decode().rsplit("-", 1)[1])
        reason = record.headers[DLQ_REASON].decode()
        assert reason == MALFORMED[index][1], record.key
        assert record.headers[DLQ_SOURCE_TOPIC].decode() == topics.raw
        assert int(record.headers[DLQ_SOURCE_PARTITION]) in range(3)
        assert int(record.headers[DLQ_SOURCE_OFFSET]) >= 0
        reasons[reason] += 1
    for reason, count in reasons.items():
        assert metrics[f'energy_transformer_invalid_readings_total{{reason="{reason}"}}'] == count
    assert metrics["energy_transformer_invalid_readings_total"] == len(dead)
    assert metrics["energy_transformer_readings_processed_total"] == len(valid_ids)


@pytest.mark.reliability
def test_sigkill_at_random_moments_keeps_exactly_once(
    kafka: KafkaUnderTest, tmp_path: Path, spawn: list[TransformerProcess]
) -> None:
    topics = make_topics(kafka)
    group = f"g-{uuid.uuid4()}"
    # 15 s of readings: the transformer keeps up with them, so each instance is
    # killed while they still flow.
    total = 120_000
    feeder = threading.Thread(
        target=produce_readings, args=(kafka.bootstrap_servers, topics.raw, total, 8_000)
    )
    feeder.start()
    rng = random.Random(4)
    transformer = start(spawn, kafka.bootstrap_servers, topics, tmp_path, group)
    for _ in range(3):
        wait_for_metric(
            transformer.metrics_port,
            "energy_transformer_readings_processed_total",
            minimum=1,
            timeout=60,
        )
        time.sleep(rng.uniform(0.2, 1.5))
        assert feeder.is_alive(), "the readings stopped flowing before the kill"
        transformer.kill()
        transformer = start(spawn, kafka.bootstrap_servers, topics, tmp_path, group)
    feeder.join()
    assert_exactly_once(kafka.settings(), topics)
    assert transformer.stop() == 0


@pytest.mark.reliability
def test_an_instance_with_nothing_left_to_read_is_not_taken_for_stuck(
    kafka: KafkaUnderTest, tmp_path: Path, spawn: list[TransformerProcess]
) -> None:
    """The stall check (nothing consumed for STALL_SECONDS while a partition has
    messages) must count from the committed offsets: a restarted instance whose group
    has read everything has consumed nothing, and is not stuck."""
    topics = make_topics(kafka, partitions=2)
    group = f"g-{uuid.uuid4()}"
    produce_readings(kafka.bootstrap_servers, topics.raw, 500)
    first = start(spawn, kafka.bootstrap_servers, topics, tmp_path, group)
    wait_for_metric(first.metrics_port, "energy_transformer_readings_processed_total", 500)
    assert first.stop() == 0
    second = start(spawn, kafka.bootstrap_servers, topics, tmp_path, group)
    wait_for_log(second, "assigned partitions")
    time.sleep(STALL_SECONDS + 5)
    assert "starting new Kafka clients" not in second.log()
    assert second.stop() == 0
    assert len(read_topic(kafka.settings(), topics.processed, expected=500)) == 500


@pytest.mark.reliability
def test_at_least_once_loses_nothing_when_killed(
    kafka: KafkaUnderTest, tmp_path: Path, spawn: list[TransformerProcess]
) -> None:
    topics = make_topics(kafka)
    group = f"g-{uuid.uuid4()}"
    produce_readings(kafka.bootstrap_servers, topics.raw, 40_000)
    transformer = start(
        spawn, kafka.bootstrap_servers, topics, tmp_path, group, "a", "--guarantee", "at_least_once"
    )
    wait_for_metric(
        transformer.metrics_port,
        "energy_transformer_readings_processed_total",
        minimum=1,
        timeout=60,
    )
    transformer.kill()
    transformer = start(
        spawn, kafka.bootstrap_servers, topics, tmp_path, group, "a", "--guarantee", "at_least_once"
    )
    raw_ids = ids_of(read_topic(kafka.settings(), topics.raw, idle=2))
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + 120
    while set(raw_ids) - set(seen) and time.monotonic() < deadline:
        seen = ids_of(read_topic(kafka.settings(), topics.processed, idle=2))
    assert transformer.stop() == 0
    assert set(raw_ids) <= set(seen)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test's own, so that stopping it disturbs no other test."""
    broker = LocalBroker(tmp_path / "kafka", free_port(), free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.reliability
@pytest.mark.parametrize("outage", [1.0, 10.0], ids=["short", "longer-than-the-session"])
def test_recovers_from_a_broker_restart(
    own_broker: LocalBroker, tmp_path: Path, spawn: list[TransformerProcess], outage: float
) -> None:
    """A short outage keeps the group session; a longer one (session timeout 6 s) loses it."""
    kafka = KafkaUnderTest(own_broker.bootstrap_servers, own_broker)
    topics = make_topics(kafka)
    produce_readings(kafka.bootstrap_servers, topics.raw, 20_000, seed=1)
    transformer = start(spawn, kafka.bootstrap_servers, topics, tmp_path, "restart-group")
    wait_for_metric(
        transformer.metrics_port,
        "energy_transformer_readings_processed_total",
        minimum=1,
        timeout=60,
    )
    own_broker.stop()
    time.sleep(outage)
    own_broker.start()
    produce_readings(kafka.bootstrap_servers, topics.raw, 20_000, seed=2)
    assert_exactly_once(kafka.settings(), topics, timeout=180)
    assert transformer.process.poll() is None, transformer.log()[-3000:]
    assert transformer.stop() == 0


def wait_for_log(transformer: TransformerProcess, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in transformer.log():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged:\n{transformer.log()[-3000:]}")
        time.sleep(0.2)


@pytest.mark.reliability
def test_two_instances_share_partitions_exactly_once(
    kafka: KafkaUnderTest, tmp_path: Path, spawn: list[TransformerProcess]
) -> None:
    topics = make_topics(kafka)
    group = f"g-{uuid.uuid4()}"
    produce_readings(kafka.bootstrap_servers, topics.raw, 20_000, seed=1)
    first = start(spawn, kafka.bootstrap_servers, topics, tmp_path, group, "a")
    wait_for_metric(
        first.metrics_port, "energy_transformer_readings_processed_total", minimum=1, timeout=60
    )
    second = start(spawn, kafka.bootstrap_servers, topics, tmp_path, group, "b")
    wait_for_log(second, "assigned partitions")
    # Both hold partitions now: readings flow to both, then the first leaves mid-stream
    # and the second takes its partitions over (a second rebalance).
    feeder = threading.Thread(
        target=produce_readings, args=(kafka.bootstrap_servers, topics.raw, 80_000, 20_000, 2)
    )
    feeder.start()
    wait_for_metric(
        second.metrics_port, "energy_transformer_readings_processed_total", minimum=1000, timeout=60
    )
    first_share = scrape(first.metrics_port)["energy_transformer_readings_processed_total"]
    assert first.stop() == 0
    feeder.join()
    assert_exactly_once(kafka.settings(), topics)
    second_share = scrape(second.metrics_port)["energy_transformer_readings_processed_total"]
    assert second.stop() == 0
    assert first_share > 0 and second_share > 0
    first_assigned = re.findall(r"assigned partitions \[([0-9, ]*)\]", first.log())
    second_assigned = re.findall(r"assigned partitions \[([0-9, ]*)\]", second.log())
    split = (
        {int(p) for p in first_assigned[-1].split(", ")},
        {int(p) for p in second_assigned[0].split(", ")},
    )
    assert split[0] and split[1] and not split[0] & split[1]
    assert split[0] | split[1] == set(range(6))
