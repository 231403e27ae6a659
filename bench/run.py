"""``make bench``: every benchmark in one run, against one fresh local broker.

Speed targets are ratios between scenarios of the same run (these machines are
noisy), never asserted by tests. Results: build/bench/results.json, one object
mapping each scenario to {"value": number, "unit": "..."}; a table with the ratios is
printed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from energy_pipeline.local.broker import CACHE_ROOT, LocalBroker, free_port
from energy_pipeline.topics import TopicSpec, ensure_topics_or_raise

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench"
COUNT = 500_000
QUIX_VERSION = "3.28.1"
QUIX_VENV = CACHE_ROOT / f"quix-venv-{QUIX_VERSION}"

# name -> (numerator, denominator, target, what it means)
RATIOS = [
    ("transformer_alo_per_s", "passthrough_per_s", 0.8, "at-least-once vs passthrough"),
    ("transformer_alo_per_s", "quix_per_s", 3.0, "at-least-once vs Quix Streams"),
    ("transformer_eos_per_s", "transformer_alo_per_s", 0.9, "exactly-once vs at-least-once"),
]
LIMITS = [("transformer_rss_mb", 150.0), ("operator_50_ready_s", 30.0), ("operator_rss_mb", 150.0)]
MINIMUMS = [("producer_readings_per_s", 150_000.0)]


def quix_python() -> Path:
    """Quix Streams in a virtualenv of its own, made once."""
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        print(f"installing Quix Streams {QUIX_VERSION} into {QUIX_VENV} (once) ...", flush=True)
        shutil.rmtree(QUIX_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"quixstreams=={QUIX_VERSION}"],
            check=True,
        )
    return python


def run_child(argv: list[str]) -> dict[str, Any]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[1:3]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    last = [line for line in result.stdout.splitlines() if line.startswith("{")][-1]
    return dict(json.loads(last))


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = OUT / "kafka"
    shutil.rmtree(workdir, ignore_errors=True)
    broker = LocalBroker(workdir, free_port(), free_port(), heap="1g")
    print(
        f"starting a fresh broker for the benchmarks on {broker.bootstrap_servers} ...", flush=True
    )
    broker.start()
    results: dict[str, dict[str, Any]] = {}
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        run_id = uuid.uuid4().hex[:6]
        names = [
            "input",
            "pass",
            "alo",
            "alo-alerts",
            "eos",
            "eos-alerts",
            "quix",
            "quix-alerts",
            "dlq",
        ]
        topics = {name: f"bench-{name}-{run_id}" for name in names}
        ensure_topics_or_raise(admin, [TopicSpec(t) for t in topics.values()])
        scenarios = Path(__file__).with_name("scenarios.py")
        common = [
            "--bootstrap",
            broker.bootstrap_servers,
            "--input",
            topics["input"],
            "--count",
            str(COUNT),
            "--dlq",
            topics["dlq"],
        ]

        def scenario(name: str, *extra: str) -> dict[str, Any]:
            print(f"running {name} over {COUNT:,} readings ...", flush=True)
            outcome = run_child([sys.executable, str(scenarios), name, *common, *extra])
            print(f"  {outcome['value']:,.0f} {outcome['unit']}", flush=True)
            return outcome

        produced = scenario("producer")
        results["producer_readings_per_s"] = produced
        results["passthrough_per_s"] = scenario("passthrough", "--output", topics["pass"])
        alo = scenario(
            "transformer_alo", "--output", topics["alo"], "--alerts", topics["alo-alerts"]
        )
        results["transformer_alo_per_s"] = alo
        eos = scenario(
            "transformer_eos", "--output", topics["eos"], "--alerts", topics["eos-alerts"]
        )
        results["transformer_eos_per_s"] = eos
        results["transformer_rss_mb"] = {
            "value": round(max(alo["rss_mb"], eos["rss_mb"]), 1),
            "unit": "MB",
        }
        print("running the operator over 50 EnergyPipelines ...", flush=True)
        operator = run_child(
            [
                sys.executable,
                str(Path(__file__).with_name("operator_bench.py")),
                "--bootstrap",
                broker.bootstrap_servers,
            ]
        )
        results["operator_50_ready_s"] = operator
        results["operator_rss_mb"] = {"value": round(operator["rss_mb"], 1), "unit": "MB"}
        print(f"  {operator['value']:.1f} s, {operator['rss_mb']:.0f} MB", flush=True)
        print(f"running quix over {COUNT:,} readings ...", flush=True)
        results["quix_per_s"] = run_child(
            [
                str(quix_python()),
                str(Path(__file__).with_name("quix_peer.py")),
                "--bootstrap",
                broker.bootstrap_servers,
                "--input",
                topics["input"],
                "--output",
                topics["quix"],
                "--alerts",
                topics["quix-alerts"],
                "--count",
                str(COUNT),
            ]
        )
    finally:
        broker.stop()
    clean = {
        name: {"value": round(float(r["value"]), 2), "unit": r["unit"]}
        for name, r in results.items()
    }
    (OUT / "results.json").write_text(json.dumps(clean, indent=2) + "\n")
    print(report(clean))
    print(f"\nwritten to {OUT / 'results.json'}")
    return 0


def report(results: dict[str, dict[str, Any]]) -> str:
    """The results and the ratios between them, as a Markdown table."""
    lines = [
        f"Benchmarks of {datetime.now(UTC):%Y-%m-%d} ({COUNT:,} readings each)",
        "",
        "| scenario | value | unit |",
        "|---|---:|---|",
    ]
    for name, result in results.items():
        lines.append(f"| {name} | {result['value']:,.1f} | {result['unit']} |")
    lines += ["", "| ratio | value | target | met |", "|---|---:|---:|---|"]
    for top, bottom, target, label in RATIOS:
        if top in results and bottom in results:
            ratio = results[top]["value"] / results[bottom]["value"]
            lines.append(
                f"| {label} | {ratio:.2f} | >= {target} | {'yes' if ratio >= target else 'NO'} |"
            )
    for name, limit in LIMITS:
        if name in results:
            value = results[name]["value"]
            lines.append(
                f"| {name} | {value:.1f} | <= {limit:g} | {'yes' if value <= limit else 'NO'} |"
            )
    for name, minimum in MINIMUMS:
        if name in results:
            value = results[name]["value"]
            lines.append(
                f"| {name} | {value:,.0f} | >= {minimum:,.0f} | "
                f"{'yes' if value >= minimum else 'NO'} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"(bench took {time.monotonic() - started:.0f}s)")
    sys.exit(code)
