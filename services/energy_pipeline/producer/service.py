"""The producer service: the simulation, paced, into Kafka, with metrics."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from energy_pipeline import kafka
from energy_pipeline.lifecycle import StopFlag
from energy_pipeline.metrics_server import MetricsServer, serve_metrics
from energy_pipeline.producer.model import (
    DEFAULT_AREAS,
    DEFAULT_START,
    Simulation,
    SimulationConfig,
)
from energy_pipeline.schema import encode_reading, format_timestamp
from energy_pipeline.settings import ServiceSettings
from energy_pipeline.topics import RAW_TOPIC

log = logging.getLogger("energy_pipeline.producer")

# One delivery in this many is timed: a histogram observation per message would
# cost more than producing it.
LATENCY_SAMPLE_EVERY = 64


class ProducerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PRODUCER_", extra="forbid", populate_by_name=True)

    topic: str = RAW_TOPIC
    # NoDecode: the environment spells a list as "offices,lobby", not as JSON.
    areas: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_AREAS), min_length=1
    )
    sensors_per_area: int = Field(3, ge=1, le=100_000)
    interval: float = Field(60.0, gt=0, description="simulated seconds between two readings")
    # 60 simulated seconds per real second: one simulated hour per real minute, so
    # the one-hour windows close every minute.
    time_scale: float = Field(60.0, gt=0)
    start: datetime = DEFAULT_START
    seed: int = 1
    rate: float = Field(1000.0, ge=0, description="cap in readings/s; 0 = as fast as possible")
    count: int = Field(0, ge=0, description="stop after this many readings (0 = never)")
    duration: float = Field(0.0, ge=0, description="stop after this many seconds (0 = never)")
    fault_rate: float = Field(0.002, ge=0, le=1)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(8000, ge=0, le=65535)

    @field_validator("areas", mode="before")
    @classmethod
    def _split_areas(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def simulation(self) -> SimulationConfig:
        return SimulationConfig(
            areas=tuple(self.areas),
            sensors_per_area=self.sensors_per_area,
            interval_s=self.interval,
            start=self.start,
            seed=self.seed,
            fault_rate=self.fault_rate,
        )


@dataclass
class DeliveryStats:
    """Plain counters updated on the hot path; exported at scrape time."""

    produced: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)

    def total(self, which: dict[str, int]) -> int:
        return sum(which.values())


class _StatsCollector(Collector):
    def __init__(self, stats: DeliveryStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, doc, values in (
            (
                "energy_producer_readings_produced",
                "Readings handed to the Kafka client",
                self.stats.produced,
            ),
            (
                "energy_producer_readings_delivered",
                "Readings acknowledged by Kafka",
                self.stats.delivered,
            ),
            (
                "energy_producer_delivery_failures",
                "Readings Kafka failed to deliver",
                self.stats.failed,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["area"])
            for area, value in sorted(values.items()):
                family.add_metric([area], value)
            yield family


@dataclass
class ProducerMetrics:
    registry: CollectorRegistry
    latency: Histogram
    queue_depth: Gauge
    simulated_time: Gauge


def build_metrics(
    stats: DeliveryStats, registry: CollectorRegistry | None = None
) -> ProducerMetrics:
    registry = registry or CollectorRegistry()
    registry.register(_StatsCollector(stats))
    return ProducerMetrics(
        registry=registry,
        latency=Histogram(
            "energy_producer_delivery_latency_seconds",
            f"Produce-to-acknowledgement time (1 in {LATENCY_SAMPLE_EVERY} readings)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        ),
        queue_depth=Gauge(
            "energy_producer_queue_depth",
            "Messages waiting in the Kafka client's local queue",
            registry=registry,
        ),
        simulated_time=Gauge(
            "energy_producer_simulated_time_seconds",
            "The simulated clock, as a Unix time",
            registry=registry,
        ),
    )


def _delivery_callbacks(
    stats: DeliveryStats, metrics: ProducerMetrics, area: str
) -> tuple[Any, Any]:
    """Two callbacks for one area: a plain one, and one that also times the delivery."""
    stats.produced.setdefault(area, 0)
    stats.delivered.setdefault(area, 0)
    stats.failed.setdefault(area, 0)
    delivered, failed = stats.delivered, stats.failed
    observe = metrics.latency.observe

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is None:
            delivered[area] += 1
        else:
            failed[area] += 1
            log.error("delivery of %s failed: %s", message.key(), error)

    def on_delivery_timed(error: KafkaError | None, message: Message) -> None:
        on_delivery(error, message)
        latency = message.latency()
        if error is None and latency is not None:
            observe(latency)

    return on_delivery, on_delivery_timed


@dataclass
class RunResult:
    produced: int
    delivered: int
    failed: int
    rounds: int
    seconds: float
    undelivered: int


class ProducerService:
    """The producer with its counters and metrics; ``serve_metrics`` exposes them."""

    def __init__(
        self, settings: ProducerSettings, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        self.stats = DeliveryStats()
        self.metrics = build_metrics(self.stats, registry)
        self.ready = threading.Event()

    def serve_metrics(self, port: int | None = None) -> MetricsServer | None:
        """The /metrics, /healthz and /readyz endpoint; None when the port is 0."""
        port = self.settings.metrics_port if port is None else port
        return serve_metrics(
            self.metrics.registry, self.settings.metrics_host, port, self.ready.is_set
        )

    def run_until_stopped(self, stop: StopFlag) -> int:
        """The command's loop: 0 when every reading produced was delivered."""
        result = self.run(stop)
        return 0 if result.failed == 0 and result.undelivered == 0 else 1

    def run(self, stop: StopFlag | None = None) -> RunResult:
        """Produce until ``count``/``duration`` is reached or ``stop`` is set; flush; report."""
        stop = StopFlag() if stop is None else stop
        if not kafka.wait_for_broker(self.settings, stop):
            return RunResult(0, 0, 0, 0, 0.0, 0)
        producer = Producer(kafka.producer_config(self.settings))
        self.metrics.queue_depth.set_function(lambda: len(producer))
        self.ready.set()
        try:
            return _produce(self.settings, producer, self.stats, self.metrics, stop)
        finally:
            self.ready.clear()


def _produce(
    settings: ProducerSettings,
    producer: Producer,
    stats: DeliveryStats,
    metrics: ProducerMetrics,
    stop: StopFlag,
) -> RunResult:
    simulation = Simulation(settings.simulation())
    run_id = os.urandom(4).hex()
    callbacks = {area: _delivery_callbacks(stats, metrics, area) for area in settings.areas}
    keys = {sensor.sensor_id: sensor.sensor_id.encode() for sensor in simulation.sensors}
    produce, poll, topic = producer.produce, producer.poll, settings.topic
    sim_seconds_per_real = settings.time_scale
    rate = settings.rate
    count, duration = settings.count, settings.duration
    produced_counts = stats.produced
    sequence = 0
    started = time.monotonic()
    log.info(
        "producing %d sensors in %s to %s (run %s, seed %d, start %s)",
        len(simulation.sensors),
        ",".join(settings.areas),
        topic,
        run_id,
        settings.seed,
        settings.start.isoformat(),
    )
    last_log = started
    while not stop.is_set():
        moment, readings = simulation.next_round()
        timestamp = format_timestamp(moment)
        timestamp_ms = int(moment.timestamp() * 1000)
        for sensor, value in readings:
            sequence += 1
            area = sensor.area
            value_bytes = encode_reading(
                sensor.sensor_id, area, value, timestamp, f"{run_id}-{sequence}"
            )
            callback = callbacks[area][1 if sequence % LATENCY_SAMPLE_EVERY == 0 else 0]
            while True:
                try:
                    produce(
                        topic,
                        value_bytes,
                        keys[sensor.sensor_id],
                        timestamp=timestamp_ms,
                        on_delivery=callback,
                    )
                    break
                except BufferError:
                    # The local queue is full: let the client send, then try again.
                    poll(0.05)
            produced_counts[area] += 1
            if count and sequence >= count:
                break
        poll(0)
        metrics.simulated_time.set(moment.timestamp())
        now = time.monotonic()
        if now - last_log >= 10:
            last_log = now
            log.info("%d readings produced, simulated time %s", sequence, timestamp)
        if (count and sequence >= count) or (duration and now - started >= duration):
            break
        if rate:
            # Pace by the simulated clock, and never faster than the rate cap.
            due = max(
                simulation.round_index * settings.interval / sim_seconds_per_real, sequence / rate
            )
            while not stop.is_set() and (wait := started + due - time.monotonic()) > 0:
                poll(min(wait, 0.1))
    seconds = time.monotonic() - started
    undelivered = producer.flush(30.0)
    result = RunResult(
        stats.total(stats.produced),
        stats.total(stats.delivered),
        stats.total(stats.failed),
        simulation.round_index,
        seconds,
        undelivered,
    )
    log.info(
        "stopped: %d produced, %d delivered, %d failed, %d undelivered in %.1fs",
        result.produced,
        result.delivered,
        result.failed,
        result.undelivered,
        seconds,
    )
    return result
