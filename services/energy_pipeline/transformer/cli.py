"""``energy-transformer``: flag high-consumption readings, exactly once."""

from __future__ import annotations

import argparse
import sys

from energy_pipeline.lifecycle import run_cli
from energy_pipeline.transformer.service import TransformerService, TransformerSettings


def parse_args(argv: list[str] | None) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="energy-transformer",
        description="Consume sensor readings, flag those above the threshold as high, write "
        "every reading to the processed topic, the high ones to the alarm topic and invalid "
        "messages to the dead-letter topic. Every flag can also be set in the environment "
        "as TRANSFORMER_<NAME> (KAFKA_BOOTSTRAP_SERVERS for the broker). Runs until SIGTERM.",
    )
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (127.0.0.1:9092)")
    parser.add_argument("--group-id", help="consumer group (energy-transformer)")
    parser.add_argument("--input-topic", help="readings to consume (iot_sensor_data)")
    parser.add_argument("--processed-topic", help="every valid reading (processed_iot_data)")
    parser.add_argument("--alerts-topic", help="high readings (high_consumption_data)")
    parser.add_argument("--dead-letter-topic", help="invalid messages (iot_sensor_data_dlq)")
    parser.add_argument(
        "--threshold", type=float, help="consumption strictly above this is high (100)"
    )
    parser.add_argument("--area-thresholds", help="per-area thresholds: offices=120,lobby=80")
    parser.add_argument(
        "--guarantee",
        choices=["exactly_once", "at_least_once"],
        help="delivery guarantee (exactly_once)",
    )
    parser.add_argument(
        "--commit-interval-ms", type=int, help="time between two commits under load, in ms (1000)"
    )
    parser.add_argument("--batch-size", type=int, help="messages per consume call (5000)")
    parser.add_argument("--instance-id", help="stable name of this instance (the host name)")
    parser.add_argument("--session-timeout-ms", type=int, help="group session timeout (10000)")
    parser.add_argument("--price-per-kwh", type=float, help="tariff, per kWh (0.15)")
    parser.add_argument(
        "--peak-price-per-kwh",
        type=float,
        help="tariff in peak hours, per kWh (none: one price all day)",
    )
    parser.add_argument("--peak-start-hour", type=int, help="peak hours start, UTC (8)")
    parser.add_argument("--peak-end-hour", type=int, help="peak hours end, UTC (20)")
    parser.add_argument("--currency", help="currency of the tariff (EUR)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = none (8001)")
    parser.add_argument("--metrics-host", help="address the metrics server binds (127.0.0.1)")
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    overrides = parse_args(argv)
    return run_cli(
        "energy-transformer", lambda: TransformerSettings.load(overrides), TransformerService
    )


if __name__ == "__main__":
    sys.exit(main())
