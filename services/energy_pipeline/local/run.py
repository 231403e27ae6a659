"""``make run``: the whole pipeline on this machine, with a live per-area view.

Starts (unless already running) the local broker, creates the topics, starts the
producer and the transformer as child processes, and shows a table refreshed every
second whose numbers come from the services' own /metrics. Ctrl-C or ``--duration``
ends it with a final summary; everything it started is stopped, by PID.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from energy_pipeline.lifecycle import StopFlag
from energy_pipeline.local.broker import LocalBroker, free_port, pid_alive, read_pid, stop_pid
from energy_pipeline.local.cli import create_topics


@dataclass
class Snapshot:
    """What the view shows, read from the services' metrics."""

    readings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    high: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    energy: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cost: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    currency: str = ""
    invalid: float = 0.0
    produced: float = 0.0
    lag: float = 0.0
    simulated_time: float = 0.0

    @property
    def processed(self) -> float:
        return sum(self.readings.values())


def parse_metrics(transformer_text: str, producer_text: str) -> Snapshot:
    """Pure: the snapshot from two /metrics bodies (either may be empty)."""
    snapshot = Snapshot()
    per_area = {
        "energy_transformer_readings_processed": snapshot.readings,
        "energy_transformer_high_readings": snapshot.high,
        "energy_transformer_consumption_kwh": snapshot.energy,
    }
    for family in text_string_to_metric_families(transformer_text):
        for sample in family.samples:
            if family.name in per_area and sample.name.endswith("_total"):
                per_area[family.name][sample.labels["area"]] += sample.value
            elif family.name == "energy_transformer_cost" and sample.name.endswith("_total"):
                snapshot.cost[sample.labels["area"]] += sample.value
                snapshot.currency = sample.labels.get("currency", "")
            elif family.name == "energy_transformer_invalid_readings":
                snapshot.invalid += sample.value if sample.name.endswith("_total") else 0
            elif family.name == "energy_transformer_consumer_lag":
                snapshot.lag += sample.value
    for family in text_string_to_metric_families(producer_text):
        for sample in family.samples:
            if family.name == "energy_producer_readings_delivered" and sample.name.endswith(
                "_total"
            ):
                snapshot.produced += sample.value
            elif family.name == "energy_producer_simulated_time_seconds":
                snapshot.simulated_time = sample.value
    return snapshot


def render_table(snapshot: Snapshot, rate: float) -> str:
    """Pure: the per-area table as text."""
    lines = [
        f"{'area':<16}{'readings':>10}{'avg kWh':>10}{'high':>8}{'high %':>8}{'energy kWh':>13}"
        f"{'cost ' + snapshot.currency:>12}",
    ]
    for area in sorted(snapshot.readings):
        count = snapshot.readings[area]
        energy = snapshot.energy[area]
        high = snapshot.high[area]
        average = energy / count if count else 0.0
        share = 100 * high / count if count else 0.0
        lines.append(
            f"{area:<16}{count:>10.0f}{average:>10.1f}{high:>8.0f}{share:>7.1f}%{energy:>13.1f}"
            f"{snapshot.cost[area]:>12.2f}"
        )
    simulated = (
        time.strftime("%a %Y-%m-%d %H:%M", time.gmtime(snapshot.simulated_time))
        if snapshot.simulated_time
        else "-"
    )
    lines.append(
        f"throughput {rate:,.0f} readings/s · produced {snapshot.produced:,.0f} · "
        f"processed {snapshot.processed:,.0f} · lag {snapshot.lag:,.0f} · "
        f"dead letters {snapshot.invalid:,.0f} · simulated {simulated} UTC"
    )
    return "\n".join(lines)


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:  # noqa: S310 - our own local endpoint
            return str(reply.read().decode())
    except OSError:
        return ""


def _start_service(module: str, args: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    with open(log_file, "ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", module, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def run_pipeline(broker: LocalBroker, duration: float) -> int:
    stop = StopFlag()
    stop.install()
    started_broker = False
    pid = read_pid(broker.pid_file)
    if pid is not None and pid_alive(pid):
        print(f"using the running broker at {broker.bootstrap_servers} (pid {pid})")
    else:
        print(f"starting Apache Kafka on {broker.bootstrap_servers} ...", flush=True)
        broker.start()
        started_broker = True
    logs = broker.workdir.parent / "run"
    logs.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    try:
        create_topics(broker.bootstrap_servers)
        producer_port, transformer_port = free_port(), free_port()
        bootstrap = ["--bootstrap-servers", broker.bootstrap_servers]
        children.append(
            _start_service(
                "energy_pipeline.transformer.cli",
                [*bootstrap, "--metrics-port", str(transformer_port), "--instance-id", "local"],
                logs / "transformer.log",
            )
        )
        children.append(
            _start_service(
                "energy_pipeline.producer.cli",
                [*bootstrap, "--metrics-port", str(producer_port), "--sensors-per-area", "5"],
                logs / "producer.log",
            )
        )
        print(f"producer metrics:    http://127.0.0.1:{producer_port}/metrics")
        print(f"transformer metrics: http://127.0.0.1:{transformer_port}/metrics")
        print(f"logs in {logs}/; Ctrl-C to stop", flush=True)
        return _live_view(stop, duration, producer_port, transformer_port, children)
    finally:
        for child in children:
            stop_pid(child.pid)
            child.wait()
        if started_broker:
            broker.stop()
            print("Kafka stopped")


def _live_view(
    stop: StopFlag,
    duration: float,
    producer_port: int,
    transformer_port: int,
    children: list[subprocess.Popen[bytes]],
) -> int:
    interactive = sys.stdout.isatty()
    started = time.monotonic()
    previous, previous_time = 0.0, started
    snapshot = Snapshot()
    rate = 0.0
    while not stop.is_set():
        stop.event.wait(1.0)
        for child in children:
            if child.poll() is not None:
                print(f"a service exited with code {child.returncode}: see its log")
                return 1
        snapshot = parse_metrics(_scrape(transformer_port), _scrape(producer_port))
        now = time.monotonic()
        rate = (snapshot.processed - previous) / max(now - previous_time, 1e-6)
        previous, previous_time = snapshot.processed, now
        table = render_table(snapshot, rate)
        if interactive:
            print("\033[2J\033[H" + table, flush=True)
        elif int(now - started) % 5 == 0:
            print(table.splitlines()[-1], flush=True)
        if duration and now - started >= duration:
            break
    print("\nfinal summary\n" + render_table(snapshot, rate), flush=True)
    return 0
