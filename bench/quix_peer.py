"""The transformer's job written with Quix Streams: the peer the benchmark compares with.

Runs in its own virtualenv (Quix Streams pins versions of confluent-kafka and pydantic
that the project's own environment cannot share). Parses each reading, flags it as high
above 100, writes every reading to the processed topic and the high ones to the alarm
topic, at least once (Quix's default). Prints one JSON line with the rate.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from quixstreams import Application


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--alerts", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        loglevel="WARNING",
    )
    source = app.topic(args.input, value_deserializer="json")
    processed = app.topic(args.output, value_serializer="json")
    alerts = app.topic(args.alerts, value_serializer="json")

    progress = {"seen": 0, "first": 0.0, "last": 0.0}

    def flag(reading: dict[str, Any]) -> dict[str, Any]:
        return {**reading, "isHighConsumption": reading["energyConsumption"] > 100}

    def count(_reading: dict[str, Any]) -> None:
        progress["seen"] += 1
        if progress["seen"] == 1:
            progress["first"] = time.perf_counter()
        if progress["seen"] >= args.count:
            progress["last"] = time.perf_counter()
            app.stop()

    frame = app.dataframe(source).apply(flag)
    frame.to_topic(processed)
    frame.filter(lambda reading: reading["isHighConsumption"]).to_topic(alerts)
    frame.update(count)
    app.run()
    seconds = progress["last"] - progress["first"]
    print(
        json.dumps({"value": progress["seen"] / seconds, "unit": "readings/s", "seconds": seconds})
    )


if __name__ == "__main__":
    main()
