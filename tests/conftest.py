"""Session fixtures: one real Kafka broker for the whole test run.

The broker is the project's own (energy_pipeline.local.broker) on free ports of
127.0.0.1, unless KAFKA_BOOTSTRAP_SERVERS points at one already running; it is
stopped, by its PID, when the session ends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from energy_ksql.double import KsqlRestDouble
from energy_pipeline.local.broker import LocalBroker, free_port
from energy_pipeline.settings import ServiceSettings
from energy_pipeline.topics import TopicSpec, ensure_topics_or_raise

from controlplane_fixtures import control_plane, helm_binary  # noqa: F401 - session fixtures


class KafkaUnderTest:
    """The broker the tests use; ``broker`` is None when it was given from outside."""

    def __init__(self, bootstrap_servers: str, broker: LocalBroker | None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.broker = broker

    def settings(self) -> ServiceSettings:
        return ServiceSettings(bootstrap_servers=self.bootstrap_servers)

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap_servers})

    def topic(self, prefix: str, partitions: int = 3) -> str:
        """A fresh topic for one test, so tests never see each other's messages."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        ensure_topics_or_raise(self.admin(), [TopicSpec(name, partitions=partitions)])
        return name


@pytest.fixture
def double() -> Iterator[KsqlRestDouble]:
    """The ksqlDB REST double (a test double, not ksqlDB: it computes nothing)."""
    with KsqlRestDouble() as server:
        yield server


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaUnderTest]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield KafkaUnderTest(given, None)
        return
    workdir = Path(tmp_path_factory.mktemp("kafka"))
    broker = LocalBroker(workdir, free_port(), free_port())
    broker.start()
    try:
        yield KafkaUnderTest(broker.bootstrap_servers, broker)
    finally:
        broker.stop()
