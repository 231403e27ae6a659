"""The producer against the real broker: schema, keys, timestamps, determinism, the
daily pattern, SIGTERM and metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import urllib.request
from collections import defaultdict

import pytest

from energy_pipeline.local.broker import free_port
from energy_pipeline.producer.service import ProducerService, ProducerSettings
from energy_pipeline.schema import Reading, parse_reading, parse_timestamp

from conftest import KafkaUnderTest
from kafka_helpers import Record, read_topic
from metrics_helpers import scrape, wait_for_metric

pytestmark = pytest.mark.kafka


def produce(kafka: KafkaUnderTest, topic: str, **settings: object) -> ProducerService:
    service = ProducerService(
        ProducerSettings.load(
            {
                "bootstrap_servers": kafka.bootstrap_servers,
                "topic": topic,
                "rate": 0,
                "metrics_port": 0,
                **settings,
            }
        )
    )
    result = service.run()
    assert result.failed == 0 and result.undelivered == 0
    return service


def readings_of(records: list[Record]) -> list[Reading]:
    readings = [parse_reading(r.value) for r in records]
    assert all(isinstance(r, Reading) for r in readings)
    return readings  # type: ignore[return-value]


def test_count_readings_with_schema_key_and_event_time(kafka: KafkaUnderTest) -> None:
    topic = kafka.topic("produced")
    produce(kafka, topic, count=2000, sensors_per_area=4)
    records = read_topic(kafka.settings(), topic, expected=2000, timeout=30)
    assert len(records) == 2000
    readings = readings_of(records)
    for record, reading in zip(records, readings, strict=True):
        assert record.key == reading.sensor_id.encode()
        moment = parse_timestamp(reading.timestamp)
        assert moment is not None
        assert record.timestamp_ms == int(moment.timestamp() * 1000)
        assert reading.sensor_id.startswith(reading.area)
    ids = [r.reading_id for r in readings]
    assert None not in ids and len(set(ids)) == len(ids)
    assert {r.area for r in readings} == {"offices", "lobby", "cafeteria"}


def test_same_seed_same_readings(kafka: KafkaUnderTest) -> None:
    def run_once(seed: int) -> list[tuple[str, str, float, str]]:
        topic = kafka.topic("seeded")
        produce(kafka, topic, count=900, seed=seed, fault_rate=0.05)
        readings = readings_of(read_topic(kafka.settings(), topic, expected=900, timeout=30))
        return sorted((r.sensor_id, r.area, r.energy_consumption, r.timestamp) for r in readings)

    first, second, other = run_once(7), run_once(7), run_once(8)
    assert first == second
    assert first != other


def test_daily_pattern(kafka: KafkaUnderTest) -> None:
    topic = kafka.topic("day")
    # One simulated weekday, 5 sensors per area, a reading a minute: 21,600 readings.
    produce(
        kafka,
        topic,
        count=24 * 60 * 15,
        sensors_per_area=5,
        start="2026-01-06T00:00:00Z",
        fault_rate=0,
    )
    readings = readings_of(read_topic(kafka.settings(), topic, expected=24 * 60 * 15))
    by_hour: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in readings:
        hour = int(r.timestamp[11:13])
        by_hour[(r.area, hour)].append(r.energy_consumption)
    mean = {key: statistics.mean(values) for key, values in by_hour.items()}
    assert mean[("offices", 11)] > 3 * mean[("offices", 3)]
    cafeteria_peak = max(range(24), key=lambda h: mean[("cafeteria", h)])
    assert 12 <= cafeteria_peak <= 13
    high_share = {
        hour: sum(v > 100 for v in by_hour[("offices", hour)]) / len(by_hour[("offices", hour)])
        for hour in (3, 11)
    }
    assert high_share[3] == 0
    assert 0.05 < high_share[11] < 0.5


def test_sigterm_flushes_everything_reported_delivered(kafka: KafkaUnderTest) -> None:
    topic = kafka.topic("sigterm")
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "energy_pipeline.producer.cli",
            "--bootstrap-servers",
            kafka.bootstrap_servers,
            "--topic",
            topic,
            "--rate",
            "3000",
            "--time-scale",
            "100000",
            "--metrics-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for_metric(port, "energy_producer_readings_delivered_total", minimum=1000)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    match = re.search(r"stopped: (\d+) produced, (\d+) delivered, 0 failed, 0 undelivered", output)
    assert match, output
    produced, delivered = int(match[1]), int(match[2])
    assert produced == delivered >= 1000
    records = read_topic(kafka.settings(), topic, expected=delivered, timeout=30)
    ids = {json.loads(r.value or b"{}")["readingId"] for r in records}
    assert len(records) == len(ids) == delivered


def test_metrics_match_what_was_produced(kafka: KafkaUnderTest) -> None:
    topic = kafka.topic("metrics")
    service = ProducerService(
        ProducerSettings(
            bootstrap_servers=kafka.bootstrap_servers,
            topic=topic,
            rate=0,
            count=1500,
            sensors_per_area=5,
        )
    )
    server = service.serve_metrics(port=free_port())
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/readyz") as response:  # noqa: S310
            raise AssertionError(f"ready before connecting: {response.status}")
    except urllib.error.HTTPError as error:
        assert error.code == 503
    try:
        result = service.run()
        metrics = scrape(server.port)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz") as response:  # noqa: S310
            assert response.status == 200
    finally:
        server.stop()
    records = read_topic(kafka.settings(), topic, expected=1500, timeout=30)
    per_area: dict[str, int] = defaultdict(int)
    for reading in readings_of(records):
        per_area[reading.area] += 1
    assert result.produced == result.delivered == 1500
    assert metrics["energy_producer_readings_produced_total"] == 1500
    assert metrics["energy_producer_readings_delivered_total"] == 1500
    assert metrics["energy_producer_delivery_failures_total"] == 0
    for area, count in per_area.items():
        assert metrics[f'energy_producer_readings_delivered_total{{area="{area}"}}'] == count
    assert metrics["energy_producer_simulated_time_seconds"] > 1.7e9
    assert metrics["energy_producer_delivery_latency_seconds_count"] > 0
