"""The pipeline's Kafka topics: defined once, created idempotently.

The local runner, the operator's admin mode and the tests all create topics with
:func:`ensure_topics`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined,unused-ignore]

log = logging.getLogger(__name__)

RAW_TOPIC = "iot_sensor_data"
PROCESSED_TOPIC = "processed_iot_data"
ALERTS_TOPIC = "high_consumption_data"
DEAD_LETTER_TOPIC = "iot_sensor_data_dlq"


# Event time is the simulated clock's: it can lie months behind the wall clock or run
# ahead of it (an hour a minute by default). Time-based retention would then delete
# fresh readings, and Kafka 4 refuses timestamps more than an hour ahead by default;
# so retention is by size, and any timestamp is accepted.
SIMULATED_TIME_CONFIG: Mapping[str, str] = {
    "retention.ms": "-1",
    "retention.bytes": str(1024**3),  # per partition
    "message.timestamp.after.max.ms": str(2**63 - 1),
}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 6
    replicas: int = 1
    config: Mapping[str, str] = field(default_factory=lambda: dict(SIMULATED_TIME_CONFIG))


# Six partitions let up to six transformer instances share the work; the dead-letter
# topic is small and read by people, in order.
DEFAULT_TOPICS: dict[str, TopicSpec] = {
    "raw": TopicSpec(RAW_TOPIC),
    "processed": TopicSpec(PROCESSED_TOPIC),
    "alerts": TopicSpec(ALERTS_TOPIC),
    "deadLetter": TopicSpec(DEAD_LETTER_TOPIC, partitions=1),
}


class TopicOutcome(StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    TOO_FEW_PARTITIONS = "too_few_partitions"
    FAILED = "failed"


@dataclass(frozen=True)
class TopicResult:
    name: str
    outcome: TopicOutcome
    message: str = ""
    partitions: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in (TopicOutcome.CREATED, TopicOutcome.EXISTS)


class TopicError(RuntimeError):
    """One or more topics could not be created as asked."""

    def __init__(self, results: list[TopicResult]) -> None:
        self.results = results
        bad = "; ".join(f"{r.name}: {r.message}" for r in results if not r.ok)
        super().__init__(bad)


def existing_partitions(admin: AdminClient, timeout: float = 10.0) -> dict[str, int]:
    """Partition count of every topic the cluster reports."""
    metadata = admin.list_topics(timeout=timeout)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def _partitions_of(admin: AdminClient, name: str, timeout: float) -> int | None:
    """The partition count of a topic that exists, waiting out metadata propagation."""
    deadline = time.monotonic() + timeout
    while True:
        topic = admin.list_topics(topic=name, timeout=timeout).topics.get(name)
        if topic is not None and topic.error is None and topic.partitions:
            return len(topic.partitions)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def _compare(spec: TopicSpec, partitions: int | None, outcome_if_fine: TopicOutcome) -> TopicResult:
    if partitions is not None and partitions < spec.partitions:
        return TopicResult(
            spec.name,
            TopicOutcome.TOO_FEW_PARTITIONS,
            f"exists with {partitions} partitions, {spec.partitions} asked",
            partitions,
        )
    return TopicResult(spec.name, outcome_if_fine, "", partitions)


def ensure_topics(
    admin: AdminClient, specs: Iterable[TopicSpec], timeout: float = 30.0
) -> list[TopicResult]:
    """Create the topics that are missing; an existing topic is success.

    A topic that exists with fewer partitions than asked is reported as
    ``TOO_FEW_PARTITIONS`` (Kafka cannot shrink or silently grow it for us).
    Returns one result per spec, in order; never raises for a per-topic problem.
    """
    specs = list(specs)
    current = existing_partitions(admin, timeout)
    results: dict[str, TopicResult] = {}
    missing = []
    for spec in specs:
        if spec.name in current:
            results[spec.name] = _compare(spec, current[spec.name], TopicOutcome.EXISTS)
        else:
            missing.append(spec)
    if missing:
        new_topics = [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=s.replicas,
                config=dict(s.config),
            )
            for s in missing
        ]
        futures = admin.create_topics(
            new_topics, operation_timeout=timeout, request_timeout=timeout
        )
        for spec in missing:
            try:
                futures[spec.name].result(timeout)
                results[spec.name] = TopicResult(
                    spec.name, TopicOutcome.CREATED, "", spec.partitions
                )
                log.info("created topic %s (%d partitions)", spec.name, spec.partitions)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    # Created meanwhile, or not yet in the metadata we read: look again.
                    parts = _partitions_of(admin, spec.name, timeout)
                    results[spec.name] = _compare(spec, parts, TopicOutcome.EXISTS)
                else:
                    results[spec.name] = TopicResult(spec.name, TopicOutcome.FAILED, error.str())
    return [results[s.name] for s in specs]


def ensure_topics_or_raise(
    admin: AdminClient, specs: Iterable[TopicSpec], timeout: float = 30.0
) -> list[TopicResult]:
    results = ensure_topics(admin, specs, timeout)
    if not all(r.ok for r in results):
        raise TopicError(results)
    return results


def delete_topics(admin: AdminClient, names: Iterable[str], timeout: float = 30.0) -> list[str]:
    """Delete topics; an unknown topic is already deleted. Returns the names deleted."""
    names = list(names)
    if not names:
        return []
    futures = admin.delete_topics(names, operation_timeout=timeout, request_timeout=timeout)
    deleted = []
    for name in names:
        try:
            futures[name].result(timeout)
            deleted.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
    return deleted
