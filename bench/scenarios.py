"""One benchmark scenario per child process: ``python bench/scenarios.py NAME ...``.

Each prints one JSON object on its last line: ``{"value": ..., "unit": ...}`` plus
details. Rates are messages per second between the first and the last message
handled, so that the group join before the first message counts for no one.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer

from energy_pipeline import kafka
from energy_pipeline.lifecycle import StopFlag, tune_gc_for_streaming
from energy_pipeline.producer.service import ProducerService, ProducerSettings
from energy_pipeline.settings import ServiceSettings
from energy_pipeline.transformer.service import TransformerService, TransformerSettings


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def producer(args: argparse.Namespace) -> dict[str, Any]:
    settings = ProducerSettings.load(
        {
            "bootstrap_servers": args.bootstrap,
            "topic": args.input,
            "rate": 0,
            "count": args.count,
            "sensors_per_area": 100,
            "metrics_port": 0,
        }
    )
    service = ProducerService(settings)
    tune_gc_for_streaming()  # as energy-producer does
    started = time.perf_counter()
    result = service.run()  # the whole run: connect, produce, flush
    seconds = time.perf_counter() - started
    assert result.delivered == args.count, result
    return {"value": args.count / seconds, "unit": "readings/s", "seconds": seconds}


def passthrough(args: argparse.Namespace) -> dict[str, Any]:
    """The practical limit: consume and produce the same bytes, nothing else."""
    settings = ServiceSettings(bootstrap_servers=args.bootstrap)
    consumer = Consumer(
        kafka.consumer_config(
            settings,
            f"bench-pass-{uuid.uuid4().hex[:6]}",
            **{"enable.auto.commit": True, "enable.auto.offset.store": True},
        )
    )
    out = Producer(kafka.producer_config(settings))
    consumer.subscribe([args.input])
    seen = 0
    first = last = cpu_first = 0.0
    produce, poll = out.produce, out.poll
    while seen < args.count:
        batch = consumer.consume(5000, timeout=0.5)
        if batch and not first:
            first = time.monotonic()
            cpu_first = time.process_time()
        for message in batch:
            if message.error():
                continue
            while True:
                try:
                    produce(
                        args.output,
                        message.value(),
                        message.key(),
                        timestamp=message.timestamp()[1],
                    )
                    break
                except BufferError:
                    poll(0.05)
            seen += 1
        poll(0)
    out.flush(60)
    last = time.monotonic()
    cpu = time.process_time() - cpu_first
    consumer.close()
    return {
        "value": seen / (last - first),
        "unit": "messages/s",
        "seconds": last - first,
        "cpu_us_per_message": cpu / seen * 1e6,
    }


def transformer(args: argparse.Namespace, guarantee: str) -> dict[str, Any]:
    settings = TransformerSettings.load(
        {
            "bootstrap_servers": args.bootstrap,
            "group_id": f"bench-{uuid.uuid4().hex[:6]}",
            "input_topic": args.input,
            "processed_topic": args.output,
            "alerts_topic": args.alerts,
            "dead_letter_topic": args.dlq,
            "guarantee": guarantee,
            "instance_id": "bench",
            "metrics_port": 0,
        }
    )
    service = TransformerService(settings)
    tune_gc_for_streaming()  # as energy-transformer does
    stop = StopFlag()
    thread = threading.Thread(target=service.run, args=(stop,))
    thread.start()
    # From the first batch to the commit that made everything processed committed
    # (the stats count only committed readings). Polled rarely: the poll takes the GIL
    # from the service's thread, and the service says itself when it committed.
    memory = 0.0  # the largest resident set seen while processing
    cpu_first = None
    while service.stats.messages < args.count:
        if service.first_batch_at is not None:
            memory = max(memory, rss_mb())
            if cpu_first is None:
                cpu_first = time.process_time()
        time.sleep(0.05)
    cpu = time.process_time() - (cpu_first or 0.0)
    last = service.last_commit_at or time.monotonic()
    first = service.first_batch_at or last
    stop.set()
    thread.join()
    return {
        "value": args.count / (last - first),
        "unit": "readings/s",
        "seconds": last - first,
        "cpu_us_per_message": cpu / args.count * 1e6,
        "rss_mb": memory,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "scenario", choices=["producer", "passthrough", "transformer_alo", "transformer_eos"]
    )
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", default="")
    parser.add_argument("--alerts", default="")
    parser.add_argument("--dlq", default="")
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    if args.scenario == "producer":
        result = producer(args)
    elif args.scenario == "passthrough":
        result = passthrough(args)
    else:
        result = transformer(
            args, "at_least_once" if args.scenario.endswith("alo") else "exactly_once"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
