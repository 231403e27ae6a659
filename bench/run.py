"""``make bench``: every benchmark in one run, against one fresh local broker.

Speed targets are ratios between scenarios of the same run (these machines are
noisy), never asserted by tests. The passthrough and the transformer run in ROUNDS
rounds (passthrough, at-least-once, exactly-once, then the other way round, so that
each ratio compares two runs next to each other), after WARM_UP_ROUNDS rounds that
are not counted (the broker's JIT compiler warming up, and its first transaction
creating the transaction log, would otherwise slow whichever runs first). Each
reports the median of its rounds, and a ratio between two of them is the median of
its rounds' ratios (a slow spell of the machine then slows both sides of a ratio).
One round's ratio still has a standard deviation of about 12 %: the machine's speed
changes from one second to the next (the same work costs up to 1.5 times the CPU
time). So there are 15 rounds, whose median has a standard error of about 0.04, and
the report gives the middle half of the rounds' ratios too. The broker keeps its log
in memory (/dev/shm) where there is room: the kernel writing gigabytes of log back
to disk at moments of its choosing otherwise slows one run or another. Results:
build/bench/results.json, one object mapping each scenario to {"value": number,
"unit": "..."} (with "runs" where there were rounds, and "middle_half" for ratios);
a table is printed.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from energy_pipeline.local.broker import CACHE_ROOT, LocalBroker, free_port
from energy_pipeline.topics import TopicSpec, ensure_topics_or_raise

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench"
COUNT = 1_000_000
ROUNDS = 15
WARM_UP_ROUNDS = 2
# The scenarios run in rounds: name in results -> scenario of bench/scenarios.py.
ROUND_SCENARIOS = {
    "passthrough_per_s": "passthrough",
    "transformer_alo_per_s": "transformer_alo",
    "transformer_eos_per_s": "transformer_eos",
}
# The broker's log in memory when /dev/shm has this much room (a run writes ~1 GB).
SHM = Path("/dev/shm")  # noqa: S108 - a folder of our own is made in it
SHM_NEEDED_BYTES = 4 * 1024**3
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


def cpu_seconds(pid: int | None) -> float:
    """User and system CPU time of a running process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_workdir() -> Path:
    """In memory where there is room, else under build/."""
    if SHM.is_dir() and shutil.disk_usage(SHM).free >= SHM_NEEDED_BYTES:
        return SHM / f"energy-pipeline-bench-{uuid.uuid4().hex[:6]}"
    return OUT / "kafka"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = broker_workdir()
    shutil.rmtree(workdir, ignore_errors=True)
    broker = LocalBroker(workdir, free_port(), free_port(), heap="1g")
    print(
        f"starting a fresh broker for the benchmarks on {broker.bootstrap_servers}"
        f" (log in {workdir}) ...",
        flush=True,
    )
    broker.start()
    results: dict[str, dict[str, Any]] = {}
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        run_id = uuid.uuid4().hex[:6]
        names = ["input", "producer", "dlq", "quix", "quix-alerts"]
        topics = {name: f"bench-{name}-{run_id}" for name in names}

        def outputs_of(scenario: str, run: str) -> tuple[str, str]:
            """The processed and alarm topics of one run: every run has its own."""
            return f"bench-{scenario}-{run}-{run_id}", f"bench-{scenario}-{run}-alerts-{run_id}"

        outputs = [
            outputs_of(scenario, run)
            for scenario in ROUND_SCENARIOS.values()
            for run in [*(f"warm-up{n}" for n in range(WARM_UP_ROUNDS)), *map(str, range(ROUNDS))]
        ]
        specs = [TopicSpec(t) for t in topics.values()]
        specs += [TopicSpec(t) for pair in outputs for t in pair]
        ensure_topics_or_raise(admin, specs)
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

        def scenario(name: str, run: str, *extra: str) -> dict[str, Any]:
            output, alerts = outputs_of(name, run)
            print(f"running {name} ({run}) over {COUNT:,} readings ...", flush=True)
            extra = ("--output", output, "--alerts", alerts, *extra)
            broker_cpu = cpu_seconds(broker.pid)
            outcome = run_child([sys.executable, str(scenarios), name, *common, *extra])
            # The broker's CPU over the whole child run (start-up included): it shares
            # the two cores, so a scenario that costs the broker more is slower too.
            outcome["broker_cpu_s"] = cpu_seconds(broker.pid) - broker_cpu
            details = [f"{outcome['rss_mb']:.0f} MB"] if "rss_mb" in outcome else []
            if "cpu_us_per_message" in outcome:
                details.append(f"{outcome['cpu_us_per_message']:.2f} µs CPU a message")
            details.append(f"broker {outcome['broker_cpu_s']:.1f} s CPU")
            print(f"  {outcome['value']:,.0f} {outcome['unit']}, {', '.join(details)}", flush=True)
            return outcome

        scenario("producer", "the input")  # not counted: the broker is still cold
        for warm_up in range(WARM_UP_ROUNDS):
            for name in ROUND_SCENARIOS.values():
                scenario(name, f"warm-up{warm_up}")
        # The producer measured on the warm broker, into a topic of its own.
        producer = scenario("producer", "measured", "--input", topics["producer"])
        results["producer_readings_per_s"] = producer
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ROUND_SCENARIOS}
        order = list(ROUND_SCENARIOS)
        for round_number in range(ROUNDS):
            # At-least-once in the middle, next to both runs it is compared with;
            # every other round the other way round, so that neither runs first always.
            for name in order if round_number % 2 == 0 else order[::-1]:
                runs[name].append(scenario(ROUND_SCENARIOS[name], str(round_number)))
        for name, outcomes in runs.items():
            results[name] = median_of(outcomes)
        rss = max(r["rss_mb"] for name in runs if "transformer" in name for r in runs[name])
        results["transformer_rss_mb"] = {"value": round(rss, 1), "unit": "MB"}
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
        shutil.rmtree(workdir, ignore_errors=True)
    clean: dict[str, dict[str, Any]] = {
        name: {
            "value": round(float(r["value"]), 2),
            "unit": r["unit"],
            **({"runs": [round(float(v), 2) for v in r["runs"]]} if "runs" in r else {}),
            **{
                key: round(float(r[key]), 2)
                for key in ("cpu_us_per_message", "broker_cpu_s")
                if key in r and "runs" in r
            },
        }
        for name, r in results.items()
    }
    ratios = ratios_of(results)
    for ratio in ratios:
        clean[ratio.name] = {
            "value": round(ratio.value, 3),
            "unit": "ratio",
            "target": ratio.target,
            **(
                {"middle_half": [round(q, 3) for q in ratio.middle_half]}
                if ratio.middle_half
                else {}
            ),
        }
    (OUT / "results.json").write_text(json.dumps(clean, indent=2) + "\n")
    print(report(clean, ratios))
    print(f"\nwritten to {OUT / 'results.json'}")
    return 0


def median_of(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """The median rate of a scenario's rounds, with every round's rate."""
    values = [float(outcome["value"]) for outcome in outcomes]
    return {
        "value": statistics.median(values),
        "unit": outcomes[0]["unit"],
        "runs": values,
        "cpu_us_per_message": statistics.median(o["cpu_us_per_message"] for o in outcomes),
        "broker_cpu_s": statistics.median(o["broker_cpu_s"] for o in outcomes),
    }


def round_ratios(top: dict[str, Any], bottom: dict[str, Any]) -> list[float]:
    """top / bottom in each round when both ran in rounds, else the one ratio."""
    if "runs" in top and "runs" in bottom:
        return [float(t) / float(b) for t, b in zip(top["runs"], bottom["runs"], strict=True)]
    return [float(top["value"]) / float(bottom["value"])]


@dataclass(frozen=True)
class Ratio:
    """One of RATIOS, worked out: the median of the rounds' ratios and their middle
    half (None for a ratio of one run each)."""

    name: str  # "top / bottom", its key in results.json
    label: str
    target: float
    value: float
    middle_half: tuple[float, float] | None


def ratios_of(results: dict[str, dict[str, Any]]) -> list[Ratio]:
    """The RATIOS whose two scenarios are in ``results``."""
    found = []
    for top, bottom, target, label in RATIOS:
        if top in results and bottom in results:
            ratios = round_ratios(results[top], results[bottom])
            found.append(
                Ratio(
                    f"{top} / {bottom}",
                    label,
                    target,
                    statistics.median(ratios),
                    middle_half(ratios),
                )
            )
    return found


def middle_half(ratios: list[float]) -> tuple[float, float] | None:
    """The first and third quartiles (half of the rounds' ratios lie between them);
    None for a ratio of one run each."""
    if len(ratios) < 2:
        return None
    first, _, third = statistics.quantiles(ratios, n=4)
    return first, third


def report(results: dict[str, dict[str, Any]], ratios: list[Ratio]) -> str:
    """The results and the ratios between them, as a Markdown table."""
    lines = [
        f"Benchmarks of {datetime.now(UTC):%Y-%m-%d} ({COUNT:,} readings each; rates with"
        f" rounds are the median of {ROUNDS})",
        "",
        "| scenario | value | unit | rounds |",
        "|---|---:|---|---|",
    ]
    for name, result in results.items():
        if result["unit"] == "ratio":
            continue
        rounds = ", ".join(f"{v:,.0f}" for v in result.get("runs", []))
        lines.append(f"| {name} | {result['value']:,.1f} | {result['unit']} | {rounds} |")
    lines += [
        "",
        "| ratio | value | middle half of rounds | target | met |",
        "|---|---:|---|---:|---|",
    ]
    for ratio in ratios:
        spread = ratio.middle_half
        middle = f"{spread[0]:.2f}–{spread[1]:.2f}" if spread else ""
        met = "yes" if ratio.value >= ratio.target else "NO"
        lines.append(
            f"| {ratio.label} | {ratio.value:.2f} | {middle} | >= {ratio.target} | {met} |"
        )
    for name, limit in LIMITS:
        if name in results:
            value = results[name]["value"]
            lines.append(
                f"| {name} | {value:.1f} | | <= {limit:g} | {'yes' if value <= limit else 'NO'} |"
            )
    for name, minimum in MINIMUMS:
        if name in results:
            value = results[name]["value"]
            lines.append(
                f"| {name} | {value:,.0f} | | >= {minimum:,.0f} | "
                f"{'yes' if value >= minimum else 'NO'} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"(bench took {time.monotonic() - started:.0f}s)")
    sys.exit(code)
