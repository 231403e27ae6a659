"""``energy-producer``: simulated building sensors into Kafka."""

from __future__ import annotations

import argparse
import sys

from energy_pipeline.lifecycle import run_cli
from energy_pipeline.producer.service import ProducerService, ProducerSettings


def parse_args(argv: list[str] | None) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="energy-producer",
        description="Simulate the energy sensors of a building and write their readings to "
        "Kafka. Every flag can also be set in the environment as PRODUCER_<NAME> "
        "(KAFKA_BOOTSTRAP_SERVERS for the broker).",
    )
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (127.0.0.1:9092)")
    parser.add_argument("--topic", help="topic to write to (iot_sensor_data)")
    parser.add_argument("--areas", help="comma-separated areas (offices,lobby,cafeteria)")
    parser.add_argument("--sensors-per-area", type=int, help="sensors in each area (3)")
    parser.add_argument(
        "--interval", type=float, help="simulated seconds between two readings of one sensor (60)"
    )
    parser.add_argument(
        "--time-scale", type=float, help="simulated seconds per real second (60: an hour a minute)"
    )
    parser.add_argument("--start", help="simulated start time, ISO-8601 (2026-01-05T06:00:00Z)")
    parser.add_argument("--seed", type=int, help="random seed: same seed, same readings (1)")
    parser.add_argument(
        "--rate", type=float, help="cap in readings per second; 0 = as fast as possible (1000)"
    )
    parser.add_argument("--count", type=int, help="stop after this many readings")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--fault-rate", type=float, help="chance per reading of a fault (0.002)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = none (8000)")
    parser.add_argument("--metrics-host", help="address the metrics server binds (127.0.0.1)")
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    overrides = parse_args(argv)
    return run_cli("energy-producer", lambda: ProducerSettings.load(overrides), ProducerService)


if __name__ == "__main__":
    sys.exit(main())
