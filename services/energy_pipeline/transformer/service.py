"""The transformer service: consume readings, flag the high ones, write them out.

Every valid reading goes to the processed topic with ``isHighConsumption``; the high
ones also go to the alarm topic; anything else goes to the dead-letter topic with the
original bytes and headers saying why. Key and timestamp are preserved.

Two guarantees:

- ``exactly_once`` (default): a transactional consume-transform-produce loop. The
  outputs of an interval and the input offsets they came from are committed in one
  Kafka transaction (KIP-447: the consumer group's metadata travels with the
  offsets), so a crash or a rebalance at any moment loses nothing and duplicates
  nothing for consumers that read committed.
- ``at_least_once``: outputs are flushed, then the offsets committed; a crash
  between the two reprocesses (duplicates) but never loses.

Both commit on a time interval (``commit_interval_ms``), not per message, and as soon
as the input runs dry.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from energy_fastpath import Producer
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from energy_pipeline import kafka
from energy_pipeline.lifecycle import StopFlag
from energy_pipeline.metrics_server import MetricsServer, serve_metrics
from energy_pipeline.schema import (
    DEFAULT_THRESHOLD,
    Reason,
    Rejection,
    is_high,
    parse_reading,
    parse_timestamp,
    processed_value,
)
from energy_pipeline.settings import ServiceSettings
from energy_pipeline.tariff import Tariff
from energy_pipeline.topics import ALERTS_TOPIC, DEAD_LETTER_TOPIC, PROCESSED_TOPIC, RAW_TOPIC
from energy_pipeline.transformer.logic import (
    EventTimeRates,
    Thresholds,
    dead_letter_headers,
    fast_path,
)

log = logging.getLogger("energy_pipeline.transformer")

# Area names come from the input: past this many distinct ones, further areas are
# counted as "other" so that garbage input cannot grow the metrics without bound.
MAX_AREA_LABELS = 200
OTHER_AREA = "other"


# A fatal consumer error this many times within a minute stops the service.
MAX_CLIENT_RESTARTS = 3
# Idle this long while an assigned partition has messages: the clients are stuck.
STALL_SECONDS = 20.0
# A poll that waits this long for nothing: the input has run dry, for now.
IDLE_POLL_SECONDS = 0.02
# An idle transformer commits at once, but not more often than this (a trickle of
# readings would otherwise make a transaction of every few).
MIN_IDLE_COMMIT_SECONDS = 0.1


class _ClientsBroken(Exception):
    """The Kafka clients must be replaced; ``wedged``: a call on them never returned,
    so they must not be called again (not even to close them)."""

    def __init__(self, error: KafkaError, wedged: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.wedged = wedged


# The longest a transaction call may take. librdkafka bounds them with their own
# timeouts, but after a broker restart send_offsets_to_transaction was seen to block
# past its timeout for good; past this, the clients are replaced.
TRANSACTION_CALL_SECONDS = 75.0


def _bounded(what: str, call: Callable[[], None]) -> None:
    """Run ``call`` on a helper thread; its exception, or ``_ClientsBroken`` if it has
    not returned within TRANSACTION_CALL_SECONDS (the clients are then wedged)."""
    done = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as failure:  # noqa: BLE001 - re-raised in the caller
            failures.append(failure)
        finally:
            done.set()

    threading.Thread(target=run, name=what, daemon=True).start()
    if not done.wait(TRANSACTION_CALL_SECONDS):
        raise _ClientsBroken(
            KafkaError(
                KafkaError._TIMED_OUT,
                f"{what} did not return within {TRANSACTION_CALL_SECONDS:.0f}s",
            ),
            wedged=True,
        )
    if failures:
        raise failures[0]


def _hostname() -> str:
    return socket.gethostname()


class TransformerSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRANSFORMER_", extra="forbid", populate_by_name=True
    )

    group_id: str = "energy-transformer"
    input_topic: str = RAW_TOPIC
    processed_topic: str = PROCESSED_TOPIC
    alerts_topic: str = ALERTS_TOPIC
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    threshold: float = Field(DEFAULT_THRESHOLD, ge=0, allow_inf_nan=False)
    # "offices=120,lobby=80" in the environment.
    area_thresholds: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    guarantee: Literal["exactly_once", "at_least_once"] = "exactly_once"
    commit_interval_ms: int = Field(1000, ge=10, le=60_000)
    batch_size: int = Field(5000, ge=1, le=100_000)
    # Stable per instance (the pod name in Kubernetes): a restarted instance fences
    # its predecessor's producer and aborts the transaction it left open.
    instance_id: str = Field(default_factory=_hostname, min_length=1)
    session_timeout_ms: int = Field(10_000, ge=3000)
    # The tariff (see energy_pipeline.tariff): peak hours are UTC, in event time.
    price_per_kwh: float = Field(0.15, ge=0, allow_inf_nan=False)
    peak_price_per_kwh: float | None = Field(None, ge=0, allow_inf_nan=False)
    peak_start_hour: int = Field(8, ge=0, le=23)
    peak_end_hour: int = Field(20, ge=1, le=24)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(8001, ge=0, le=65535)

    @field_validator("area_thresholds", mode="before")
    @classmethod
    def _parse_thresholds(cls, value: Any) -> Any:
        if isinstance(value, str):
            pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("area thresholds are written area=value,area=value")
            return {area.strip(): threshold for area, threshold in pairs}
        return value

    @field_validator("area_thresholds")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        for area, threshold in value.items():
            if not threshold >= 0:
                raise ValueError(f"threshold of {area} must be >= 0, got {threshold}")
        return value

    @property
    def transactional_id(self) -> str:
        return f"{self.group_id}-{self.instance_id}"

    def tariff(self) -> Tariff:
        return Tariff(
            self.price_per_kwh,
            self.peak_price_per_kwh,
            self.peak_start_hour,
            self.peak_end_hour,
            self.currency,
        )

    def thresholds(self) -> Thresholds:
        return Thresholds(self.threshold, dict(self.area_thresholds) or None)


@dataclass
class TransformStats:
    """Plain counters on the hot path, exported at scrape time."""

    processed: dict[str, int] = field(default_factory=dict)
    high: dict[str, int] = field(default_factory=dict)
    energy: dict[str, float] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    off_hours_energy: dict[str, float] = field(default_factory=dict)
    invalid: dict[str, int] = field(default_factory=lambda: {r.value: 0 for r in Reason})

    @property
    def messages(self) -> int:
        return sum(self.processed.values()) + sum(self.invalid.values())

    def add_area(self, area: str) -> None:
        self.processed.setdefault(area, 0)
        self.high.setdefault(area, 0)
        self.energy.setdefault(area, 0.0)
        self.cost.setdefault(area, 0.0)
        self.off_hours_energy.setdefault(area, 0.0)

    def merge(self, other: TransformStats) -> None:
        _add(self.processed, other.processed)
        _add(self.high, other.high)
        _add(self.energy, other.energy)
        _add(self.cost, other.cost)
        _add(self.off_hours_energy, other.off_hours_energy)
        _add(self.invalid, other.invalid)


def _add(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        into[key] = into.get(key, 0) + value


class _StatsCollector(Collector):
    def __init__(self, stats: TransformStats, currency: str) -> None:
        self.stats = stats
        self.currency = currency

    def collect(self) -> Iterator[CounterMetricFamily]:
        families: list[tuple[str, str, str, dict[str, Any]]] = [
            (
                "energy_transformer_readings_processed",
                "Valid readings written to the processed topic",
                "area",
                self.stats.processed,
            ),
            (
                "energy_transformer_high_readings",
                "Readings above the threshold (alarms)",
                "area",
                self.stats.high,
            ),
            (
                "energy_transformer_consumption_kwh",
                "Energy of the valid readings, in kWh",
                "area",
                self.stats.energy,
            ),
            (
                "energy_transformer_off_hours_consumption_kwh",
                "Energy used at night and at weekends (event time), in kWh",
                "area",
                self.stats.off_hours_energy,
            ),
            (
                "energy_transformer_invalid_readings",
                "Messages sent to the dead-letter topic",
                "reason",
                self.stats.invalid,
            ),
        ]
        for name, doc, label, values in families:
            family = CounterMetricFamily(name, doc, labels=[label])
            for key, value in sorted(values.items()):
                family.add_metric([key], value)
            yield family
        cost = CounterMetricFamily(
            "energy_transformer_cost",
            "Cost of the valid readings' energy at the tariff",
            labels=["area", "currency"],
        )
        for area, value in sorted(self.stats.cost.items()):
            cost.add_metric([area, self.currency], value)
        yield cost


@dataclass
class TransformerMetrics:
    registry: CollectorRegistry
    event_time_lag: Histogram
    batch_size: Histogram
    transactions: Counter
    consumer_lag: Gauge
    delivery_failures: Counter


def build_metrics(
    stats: TransformStats, currency: str, registry: CollectorRegistry | None = None
) -> TransformerMetrics:
    registry = registry or CollectorRegistry()
    registry.register(_StatsCollector(stats, currency))
    return TransformerMetrics(
        registry=registry,
        event_time_lag=Histogram(
            "energy_transformer_event_time_lag_seconds",
            "Now minus the event time of the newest reading of each batch",
            # Up to a year: the simulated clock may run months behind the wall clock.
            buckets=(
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
                60,
                300,
                3600,
                86400,
                604800,
                2592000,
                31536000,
            ),
            registry=registry,
        ),
        batch_size=Histogram(
            "energy_transformer_batch_size",
            "Messages per consumed batch",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000),
            registry=registry,
        ),
        transactions=Counter(
            "energy_transformer_transactions",
            "Transactions (exactly-once) or checkpoints (at-least-once) by outcome",
            ["outcome"],
            registry=registry,
        ),
        consumer_lag=Gauge(
            "energy_transformer_consumer_lag",
            "Messages behind the end of each input partition",
            ["partition"],
            registry=registry,
        ),
        delivery_failures=Counter(
            "energy_transformer_delivery_failures",
            "Output messages Kafka failed to deliver",
            registry=registry,
        ),
    )


class TransformerService:
    """One transformer instance: call :meth:`run` until the stop flag is set."""

    def __init__(
        self, settings: TransformerSettings, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        # Committed counts (what the metrics show) and the counts of what was processed
        # since the last commit: an aborted transaction's readings are read again,
        # and must not be counted twice.
        self.stats = TransformStats()
        self._uncommitted = TransformStats()
        self.metrics = build_metrics(self.stats, settings.currency, registry)
        self.ready = threading.Event()
        self.exactly_once = settings.guarantee == "exactly_once"
        self._thresholds = settings.thresholds()
        self._fast_path = fast_path(self._thresholds)
        self._rates = EventTimeRates(settings.tariff())
        # Input partition -> next offset to commit, for what was processed since the
        # last commit.
        self._pending: dict[int, int] = {}
        self._revoking = False
        self._lost = False
        self._abandoned: list[tuple[Producer | None, Consumer | None]] = []
        # Failed deliveries the producer reported so far, and those of the outputs
        # since the last commit (at-least-once does not commit past them).
        self._deliveries_failed = 0
        self._failures_since_commit = 0
        # When the first batch arrived and when the last commit was done
        # (time.monotonic()): rates are measured between them.
        self.first_batch_at: float | None = None
        self.last_commit_at: float | None = None
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("the transformer is not started")
        return self._producer

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("the transformer is not started")
        return self._consumer

    def serve_metrics(self, port: int | None = None) -> MetricsServer | None:
        """The /metrics, /healthz and /readyz endpoint; None when the port is 0."""
        port = self.settings.metrics_port if port is None else port
        return serve_metrics(
            self.metrics.registry, self.settings.metrics_host, port, self.ready.is_set
        )

    def run_until_stopped(self, stop: StopFlag) -> int:
        """The command's loop: 1 on a fatal Kafka error (e.g. fenced by a newer instance
        with the same id), so that the supervisor restarts the process."""
        try:
            self.run(stop)
        except KafkaException as error:
            log.error("fatal Kafka error: %s", error)
            return 1
        return 0

    # -- set-up ---------------------------------------------------------------------

    def _make_producer(self) -> Producer:
        """The compiled producer (energy_fastpath), configured as a confluent-kafka one
        would be: the fast path hands it the processed values without a Python call
        per message."""
        settings = self.settings
        # Room for a dead-letter copy of the largest message the input allows.
        extra: dict[str, Any] = {"message.max.bytes": 4 * 1024 * 1024}
        if self.exactly_once:
            config = kafka.transactional_producer_config(
                settings, settings.transactional_id, **extra
            )
        else:
            config = kafka.producer_config(settings, **extra)
        self._deliveries_failed = self._failures_since_commit = 0
        return Producer(kafka.librdkafka_path(), config)

    def _count_delivery_failures(self) -> None:
        """Count (and log) the deliveries that failed since the last look."""
        failed = self.producer.delivery_failures
        new = failed - self._deliveries_failed
        if new:
            self._deliveries_failed = failed
            self._failures_since_commit += new
            self.metrics.delivery_failures.inc(new)
            log.error(
                "%d outputs failed to be delivered (the last: %s)",
                new,
                self.producer.last_delivery_error,
            )

    def _make_consumer(self) -> Consumer:
        settings = self.settings
        return Consumer(
            kafka.consumer_config(
                settings,
                settings.group_id,
                **{
                    "group.instance.id": settings.transactional_id,
                    "session.timeout.ms": settings.session_timeout_ms,
                },
            )
        )

    def _start(self, stop: StopFlag) -> bool:
        """Connect (waiting for the broker, with a log line per try) and subscribe."""
        if not kafka.wait_for_broker(self.settings, stop, "Kafka"):
            return False
        producer = self._make_producer()
        if self.exactly_once:
            delay = 1.0
            while True:
                try:
                    producer.init_transactions(30)
                    break
                except KafkaException as exc:
                    error: KafkaError = exc.args[0]
                    if error.fatal() or stop.is_set():
                        raise
                    log.warning("init_transactions failed (%s); retrying in %.0fs", error, delay)
                    stop.event.wait(delay)
                    delay = min(delay * 2, 10.0)
            producer.begin_transaction()
        consumer = self._make_consumer()
        consumer.subscribe(
            [self.settings.input_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._producer, self._consumer = producer, consumer
        self.ready.set()
        log.info(
            "transforming %s -> %s / %s (dead letters: %s), %s, transactional id %s",
            self.settings.input_topic,
            self.settings.processed_topic,
            self.settings.alerts_topic,
            self.settings.dead_letter_topic,
            self.settings.guarantee,
            self.settings.transactional_id,
        )
        return True

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned partitions %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Commit what was processed from these partitions before another instance
        # takes them over: it starts from our committed offsets.
        log.info("partitions %s revoked: committing", sorted(p.partition for p in partitions))
        # No rewind if that fails: the partitions are going, and whoever gets them
        # (this instance too) starts from the committed offsets.
        self._revoking = True
        try:
            self._checkpoint(begin_next=True)
        finally:
            self._revoking = False
        if self._pending:
            # The commit failed: whoever gets these partitions reads that input again.
            self._uncommitted = TransformStats()
            self._pending.clear()

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The group went on without us (session timed out, e.g. while the broker was
        # away): nothing can be committed for these partitions any more, and rejoining
        # with the same clients has been seen to leave the consumer idle. Start afresh.
        log.warning(
            "partitions %s lost: starting new clients", sorted(p.partition for p in partitions)
        )
        self._lost = True

    # -- the loop ---------------------------------------------------------------------

    def run(self, stop: StopFlag | None = None) -> None:
        """Transform until ``stop`` is set. A consumer that Kafka declares fatally
        broken (it happens to a static group member after a broker restart) is
        replaced by new clients; more than a few times in a row is an error."""
        stop = StopFlag() if stop is None else stop
        recent_restarts: list[float] = []
        while not stop.is_set():
            if not self._start(stop):
                return
            try:
                self._loop(stop)
                return
            except _ClientsBroken as broken:
                now = time.monotonic()
                recent_restarts = [t for t in recent_restarts if now - t < 60] + [now]
                if len(recent_restarts) > MAX_CLIENT_RESTARTS:
                    raise KafkaException(broken.error) from None
                log.error("%s: starting new Kafka clients", broken.error)
                self._discard_clients(wedged=broken.wedged)
            finally:
                if self._consumer is not None:
                    self._shutdown()

    def _loop(self, stop: StopFlag) -> None:
        consumer = self.consumer
        interval = self.settings.commit_interval_ms / 1000
        last_commit = last_progress = last_stall_check = time.monotonic()
        while not stop.is_set():
            batch = consumer.consume(self.settings.batch_size, timeout=IDLE_POLL_SECONDS)
            if self._lost:
                raise _ClientsBroken(
                    KafkaError(KafkaError._ASSIGNMENT_LOST, "the consumer group's session was lost")
                )
            now = time.monotonic()
            if batch:
                self._process(batch)
                last_progress = now
            # Commit on the interval, and as soon as the input has run dry: an idle
            # transformer holds nothing back from downstream.
            since_commit = now - last_commit
            idle = not batch and since_commit >= MIN_IDLE_COMMIT_SECONDS
            if since_commit >= interval or (idle and self._pending):
                self._checkpoint(begin_next=True)
                last_commit = time.monotonic()
            if now - last_progress > STALL_SECONDS and now - last_stall_check > STALL_SECONDS:
                last_stall_check = now
                self._check_stalled()

    def _check_stalled(self) -> None:
        """Idle while an assigned partition has messages to read: the clients are stuck
        (seen after a broker restart, waiting on offsets of a transaction that no longer
        exists). Never let a partition stall: start new clients."""
        for partition in self.consumer.assignment():
            try:
                low, high = self.consumer.get_watermark_offsets(partition, timeout=5)
                [position] = self.consumer.position([partition])
            except KafkaException:
                return  # Kafka is not reachable: that is not a stall of ours
            start = position.offset
            if start < 0:
                # Nothing consumed yet: reading starts from the committed offset (which
                # may already be the end), or from the beginning without one.
                try:
                    [committed] = self.consumer.committed([partition], timeout=5)
                except KafkaException as error:
                    raise _ClientsBroken(error.args[0]) from None  # offsets never arrive
                start = committed.offset if committed.offset >= 0 else low
            if high > start:
                raise _ClientsBroken(
                    KafkaError(
                        KafkaError._TIMED_OUT,
                        f"partition {partition.partition} has messages at {high} but nothing "
                        f"was consumed from {start} for {STALL_SECONDS}s",
                    )
                )

    def _discard_clients(self, wedged: bool = False) -> None:
        """Drop broken clients without committing: their open work is read again.
        Wedged ones are kept, uncalled: closing them could block too, and the new
        producer (same transactional id) fences the old one."""
        self.ready.clear()
        self._lost = False
        self._uncommitted = TransformStats()
        self._pending.clear()
        producer, consumer = self._producer, self._consumer
        self._producer = self._consumer = None
        if wedged:
            self._abandoned.append((producer, consumer))
            return
        closers: list[Callable[[], object]] = []
        if consumer is not None:
            closers.append(consumer.close)
        if producer is not None and self.exactly_once:
            # Bounded: Kafka may be unreachable; the new producer fences this one anyway.
            closers.append(lambda: producer.abort_transaction(10))
        for close in closers:
            try:
                close()
            except KafkaException as error:
                log.info("while discarding a broken client: %s", error)

    def _process(self, batch: list[Message]) -> None:
        if self.first_batch_at is None:
            self.first_batch_at = time.monotonic()
        # The compiled fast path flags, produces and counts the plain valid readings;
        # it hands the rest (consumer errors, invalid input, unusual valid readings)
        # to _process_slowly, in order.
        slow_groups: dict[tuple[str, str], list[float]] = {}
        groups, next_offsets = self._fast_path.transform(
            batch,
            self.producer,
            self.settings.processed_topic,
            self.settings.alerts_topic,
            lambda message: self._process_slowly(message, slow_groups),
        )
        self._pending.update(next_offsets)
        self.producer.poll(0)
        self._count_delivery_failures()
        self._count_groups(groups)
        self._count_groups(slow_groups)
        self.metrics.batch_size.observe(len(batch))
        if groups or slow_groups:
            newest = max(timestamp for _, timestamp in [*groups, *slow_groups])
            moment = parse_timestamp(newest)
            if moment is not None:
                lag = (datetime.now(UTC) - moment).total_seconds()
                self.metrics.event_time_lag.observe(max(lag, 0.0))

    def _process_slowly(self, message: Message, groups: dict[tuple[str, str], list[float]]) -> None:
        """One message the fast path left: a consumer error, a rejection for the
        dead-letter topic, or a valid reading of an unusual form."""
        error = message.error()
        if error is not None:
            # A fatal consumer error arrives as a message whose code is _FATAL (its
            # fatal() flag is not always set).
            if error.fatal() or error.code() == KafkaError._FATAL:
                raise _ClientsBroken(error)
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error)
            return
        raw = message.value() or b""  # None (a tombstone) is rejected like b""
        reading = parse_reading(raw)
        if isinstance(reading, Rejection):
            self._dead_letter(message, reading)
            return
        area = reading.area
        high = is_high(reading.energy_consumption, self._thresholds.of(area))
        value = processed_value(raw, reading, high)
        timestamp = message.timestamp()[1]
        self.producer.produce(self.settings.processed_topic, value, message.key(), timestamp)
        if high:
            self.producer.produce(self.settings.alerts_topic, value, message.key(), timestamp)
        group = groups.setdefault((area, reading.timestamp), [0, 0.0, 0])
        group[0] += 1
        group[1] += reading.energy_consumption
        group[2] += high

    def _count_groups(self, groups: dict[tuple[str, str], list[float]]) -> None:
        stats = self._uncommitted
        for (area, timestamp), (readings, energy, high) in groups.items():
            label = area if area in stats.processed else self._area_label(area)
            price, off_hours = self._rates.of(timestamp)
            stats.processed[label] += int(readings)
            stats.high[label] += int(high)
            stats.energy[label] += energy
            stats.cost[label] += energy * price
            if off_hours:
                stats.off_hours_energy[label] += energy

    def _area_label(self, area: str) -> str:
        """The label an area is counted under (registered in the uncommitted counts)."""
        known = len(self.stats.processed) + len(self._uncommitted.processed)
        if area not in self.stats.processed and known >= MAX_AREA_LABELS:
            area = OTHER_AREA
        self._uncommitted.add_area(area)
        return area

    def _dead_letter(self, message: Message, rejection: Rejection) -> None:
        headers = dead_letter_headers(
            rejection,
            message.topic() or self.settings.input_topic,
            message.partition() or 0,
            message.offset() or 0,
            message.headers(),
        )
        self._uncommitted.invalid[rejection.reason.value] += 1
        self.producer.produce(
            self.settings.dead_letter_topic,
            message.value(),
            message.key(),
            message.timestamp()[1],
            headers,
        )

    # -- commits --------------------------------------------------------------------

    def _checkpoint(self, begin_next: bool) -> None:
        """Commit outputs and input offsets of what was processed since the last one."""
        if not self._pending:
            return
        offsets = [
            TopicPartition(self.settings.input_topic, partition, offset)
            for partition, offset in self._pending.items()
        ]
        if self.exactly_once:
            self._commit_transaction(offsets, begin_next)
        else:
            self._commit_at_least_once(offsets)
        self._update_lag()

    def _commit_transaction(self, offsets: list[TopicPartition], begin_next: bool) -> None:
        producer = self.producer
        metadata = self.consumer.consumer_group_metadata()

        def commit() -> None:
            producer.send_offsets_to_transaction(offsets, metadata, 30)
            self._retry_retriable(producer.commit_transaction)

        try:
            _bounded("committing the transaction", commit)
            self._committed()
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal():
                raise
            # Abortable (the broker went away, a timeout): throw the outputs away and
            # read the same input again from the last committed offsets.
            log.warning("transaction failed (%s): aborting and rewinding", error)
            _bounded(
                "aborting the transaction",
                lambda: self._retry_retriable(producer.abort_transaction),
            )
            self._discard(offsets)
        if begin_next:
            producer.begin_transaction()

    def _commit_at_least_once(self, offsets: list[TopicPartition]) -> None:
        remaining = self.producer.flush(30)
        self._count_delivery_failures()
        if remaining or self._failures_since_commit:
            # Some outputs are not in Kafka: do not commit past them; read them again.
            log.warning(
                "%d outputs undelivered, %d failed: rewinding",
                remaining,
                self._failures_since_commit,
            )
            self._discard(offsets)
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # The outputs are delivered; committing later (or reprocessing) is safe.
            log.warning("offset commit failed (%s); will retry at the next checkpoint", exc)
            return
        self._committed()

    def _committed(self) -> None:
        """The last interval is in Kafka: count it."""
        self.metrics.transactions.labels("committed").inc()
        self.last_commit_at = time.monotonic()
        self.stats.merge(self._uncommitted)
        self._uncommitted = TransformStats()
        self._pending.clear()
        self._failures_since_commit = 0

    def _discard(self, offsets: list[TopicPartition]) -> None:
        """The last interval is not in Kafka: forget it and read its input again."""
        self.metrics.transactions.labels("aborted").inc()
        if not self._revoking:
            self._rewind([TopicPartition(o.topic, o.partition) for o in offsets])
        self._uncommitted = TransformStats()
        self._pending.clear()
        self._failures_since_commit = 0

    @staticmethod
    def _retry_retriable(operation: Any) -> None:
        """Run a transaction call again while Kafka says the error is retriable."""
        delay = 0.5
        while True:
            try:
                operation(30)
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if not error.retriable():
                    raise
                log.warning("%s: retrying in %.1fs", error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _rewind(self, partitions: list[TopicPartition]) -> None:
        """Seek back to the committed offsets of ``partitions``."""
        assigned = {(p.topic, p.partition) for p in self.consumer.assignment()}
        wanted = [p for p in partitions if (p.topic, p.partition) in assigned]
        if not wanted:
            return
        for committed in self.consumer.committed(wanted, timeout=30):
            offset = committed.offset if committed.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(committed.topic, committed.partition, offset))

    def _update_lag(self) -> None:
        for partition in self.consumer.assignment():
            try:
                low, high = self.consumer.get_watermark_offsets(partition, cached=True)
                [position] = self.consumer.position([partition])
            except KafkaException:
                continue
            if high >= 0 and position.offset >= 0:
                self.metrics.consumer_lag.labels(str(partition.partition)).set(
                    max(high - position.offset, 0)
                )

    def _shutdown(self) -> None:
        """Finish the open transaction (or checkpoint), then close the clients."""
        self.ready.clear()
        if self._producer is None or self._consumer is None:
            return
        producer, consumer = self._producer, self._consumer
        try:
            if self._pending:
                self._checkpoint(begin_next=False)
            elif self.exactly_once:
                producer.abort_transaction(30)
        except (KafkaException, _ClientsBroken) as exc:
            log.error("could not finish the last transaction: %s", exc)
        finally:
            consumer.close()
            producer.flush(30)
            log.info(
                "stopped: %d valid, %d invalid readings processed",
                sum(self.stats.processed.values()),
                sum(self.stats.invalid.values()),
            )
