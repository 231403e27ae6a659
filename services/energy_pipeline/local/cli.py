"""The local runner: ``python -m energy_pipeline.local <command>``.

- ``kafka-up`` / ``kafka-down``: the local broker (port from ``KAFKA_PORT``, default 9092),
  its files under ``build/kafka``;
- ``topics``: create the pipeline's topics on it;
- ``run``: broker (unless one is already up), topics, producer, transformer and the live
  per-area view; ``--duration N`` ends it after N seconds. Everything it started is
  stopped on exit, by PID.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from confluent_kafka.admin import AdminClient

from energy_pipeline.local.broker import HOST, BrokerError, LocalBroker, pid_alive, read_pid
from energy_pipeline.topics import DEFAULT_TOPICS, TopicError, ensure_topics_or_raise

log = logging.getLogger("energy_pipeline.local")

WORKDIR = Path(os.environ.get("ENERGY_PIPELINE_BUILD", "build")) / "kafka"


def kafka_port() -> int:
    raw = os.environ.get("KAFKA_PORT", "9092")
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"KAFKA_PORT must be a port number, got {raw!r}") from None
    if not 1 <= port <= 65535:
        raise SystemExit(f"KAFKA_PORT must be between 1 and 65535, got {port}")
    return port


def local_broker() -> LocalBroker:
    port = kafka_port()
    controller = int(os.environ.get("KAFKA_CONTROLLER_PORT", str(port + 1)))
    return LocalBroker(WORKDIR, port, controller)


def running_pid(broker: LocalBroker) -> int | None:
    pid = read_pid(broker.pid_file)
    return pid if pid is not None and pid_alive(pid) else None


def kafka_up() -> LocalBroker:
    broker = local_broker()
    pid = running_pid(broker)
    if pid is not None:
        print(f"Kafka is already running (pid {pid}) at {broker.bootstrap_servers}")
        return broker
    print(
        f"starting Apache Kafka on {broker.bootstrap_servers} (log: {broker.log_file}) ...",
        flush=True,
    )
    broker.start()
    print(f"Kafka is up: bootstrap servers {broker.bootstrap_servers} (pid {broker.pid})")
    return broker


def kafka_down() -> None:
    broker = local_broker()
    pid = running_pid(broker)
    if pid is None:
        print("Kafka is not running")
        broker.pid_file.unlink(missing_ok=True)
        return
    broker.stop()
    print(f"Kafka (pid {pid}) stopped")


def create_topics(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for result in ensure_topics_or_raise(admin, DEFAULT_TOPICS.values()):
        print(f"topic {result.name}: {result.outcome} ({result.partitions} partitions)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m energy_pipeline.local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("kafka-up", help="start the local broker")
    sub.add_parser("kafka-down", help="stop the local broker")
    sub.add_parser("topics", help="create the pipeline's topics on the local broker")
    run = sub.add_parser("run", help="run the whole pipeline locally")
    run.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "kafka-up":
            kafka_up()
        elif args.command == "kafka-down":
            kafka_down()
        elif args.command == "topics":
            create_topics(f"{HOST}:{kafka_port()}")
        elif args.command == "run":
            from energy_pipeline.local.run import run_pipeline

            return run_pipeline(local_broker(), args.duration)
    except (BrokerError, TopicError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
