"""Kafka client settings: the one place that says how our clients talk to Kafka."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from energy_pipeline.lifecycle import StopFlag
from energy_pipeline.settings import ServiceSettings

log = logging.getLogger(__name__)


def connection_config(settings: ServiceSettings) -> dict[str, Any]:
    """Bootstrap servers and security, common to every client."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.security_protocol,
        # Reconnect fast after a broker restart, but do not hammer it.
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 2000,
    }
    if settings.sasl_mechanism:
        config["sasl.mechanism"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username
        if settings.sasl_password is not None:
            config["sasl.password"] = settings.sasl_password.get_secret_value()
    if settings.ssl_ca_location:
        config["ssl.ca.location"] = settings.ssl_ca_location
    return config


def producer_config(settings: ServiceSettings, **extra: Any) -> dict[str, Any]:
    """An idempotent, batching producer: acks=all, no duplicates on retry."""
    return {
        **connection_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        # Batch: wait a few ms so that each request carries many readings.
        "linger.ms": 20,
        "batch.size": 256 * 1024,
        "compression.type": "lz4",
        # At most this much waits in the client (librdkafka's defaults): half a second
        # of readings at full speed, and a bound on the services' memory.
        "queue.buffering.max.messages": 100_000,
        "queue.buffering.max.kbytes": 64 * 1024,
        **extra,
    }


@functools.cache
def librdkafka_path() -> str:
    """The file of the librdkafka that confluent-kafka loaded into this process: the
    transformer's compiled producer (energy_fastpath) runs on the same one."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        raise RuntimeError("the transformer's producer needs Linux (/proc/self/maps)")
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and Path(fields[5]).name.startswith("librdkafka"):
            return fields[5]
    raise RuntimeError(
        f"confluent-kafka {confluent_kafka.version()[0]} is loaded, but no librdkafka"
        " library is mapped into the process"
    )


def transactional_producer_config(
    settings: ServiceSettings, transactional_id: str, **extra: Any
) -> dict[str, Any]:
    return producer_config(
        settings,
        **{"transactional.id": transactional_id, "transaction.timeout.ms": 60_000, **extra},
    )


def consumer_config(settings: ServiceSettings, group_id: str, **extra: Any) -> dict[str, Any]:
    """A consumer that commits only what we tell it to (see the transformer)."""
    return {
        **connection_config(settings),
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": False,
        "fetch.min.bytes": 1,
        # Prefetch at most this much (librdkafka's defaults are 64 MB, 50 MB and 1 MB a
        # partition): enough to keep the loop busy at 200,000 readings/s, and it bounds
        # the service's memory (measured by make bench).
        "queued.max.messages.kbytes": 2 * 1024,
        # When that prefetch queue is full, look again after 10 ms, not librdkafka's
        # 1 s: a small queue with the default backoff starves the loop.
        "fetch.queue.backoff.ms": 10,
        "fetch.max.bytes": 2 * 1024 * 1024,
        "max.partition.fetch.bytes": 256 * 1024,
        **extra,
    }


def reader_config(settings: ServiceSettings, group_id: str, **extra: Any) -> dict[str, Any]:
    """A downstream reader (tests, the live view): read committed, from the start."""
    return consumer_config(settings, group_id, **extra)


def admin_client(settings: ServiceSettings) -> AdminClient:
    return AdminClient(connection_config(settings))


def wait_for_broker(settings: ServiceSettings, stop: StopFlag, what: str = "Kafka") -> bool:
    """Block until the cluster answers a metadata request, with backoff and a log line
    per try. False if ``stop`` was set first."""
    admin = admin_client(settings)
    delay = 0.5
    while not stop.is_set():
        try:
            admin.list_topics(timeout=5.0)
            return True
        except KafkaException as error:
            log.warning(
                "%s at %s is not reachable yet (%s); retrying in %.1fs",
                what,
                settings.bootstrap_servers,
                error.args[0],
                delay,
            )
            stop.event.wait(delay)
            delay = min(delay * 2, 10.0)
    return False
