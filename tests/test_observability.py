"""Dashboards and alert rules, checked by promtool and against a real Prometheus.

- The dashboards' JSON is what ``deploy/observability/dashboards.py`` generates, and is
  well formed (unique ids, grid, template variables, one datasource variable).
- ``promtool check rules`` and ``promtool test rules`` pass on the alert rules; every
  alert has a summary, a description, a severity and a unit test where it fires.
- Live: the local pipeline (producer and transformer as child processes on the real
  broker) runs while Debian's Prometheus scrapes them every second on 127.0.0.1.
  Every query of every panel of the building and pipeline dashboards is evaluated
  through the HTTP API, after substituting the template variables as Grafana would,
  and must return data; the high-consumption and dead-letter alerts must become
  pending or firing.

Grafana's substitution, as done here (:func:`interpolate`): ``$namespace``,
``$pipeline`` and ``$area`` take every value their ``label_values`` query lists (the
"All" choice), formatted for a regex matcher as Grafana formats multi-value variables
for Prometheus: ``(v1|v2)`` with each value regex-escaped. ``$__rate_interval`` and
``$__interval`` become fixed windows (a few scrape intervals), ``$__range`` one hour.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from energy_pipeline.local.broker import free_port, stop_pid
from energy_pipeline.local.prometheus import Prometheus, ScrapeJob, promtool

from conftest import KafkaUnderTest
from dashboard_helpers import (
    DASHBOARDS,
    assert_panels_return_data,
    interpolate,
    load_dashboard,
    panels_with_queries,
    resolve_variables,
)
from kafka_helpers import produce_values

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "deploy" / "helm" / "energy-pipeline" / "files"
RULES = FILES / "alerts.rules.yaml"
RULE_TESTS = FILES / "alerts.tests.yaml"
GENERATOR = ROOT / "deploy" / "observability" / "dashboards.py"

# The static labels the live scrape config adds, as Kubernetes relabeling would.
LOCAL_LABELS = {"namespace": "local", "pipeline": "local"}
# The live test's rules: the production `for:` durations (minutes, for people on call)
# shortened to this, so that alerts go pending and fire within the test. Nothing else
# of the rules changes.
LIVE_FOR = "2s"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("dashboards_generator", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- files, no server


@pytest.mark.unit
def test_dashboards_json_is_what_the_generator_writes() -> None:
    rendered: dict[str, str] = _generator().render()
    on_disk = {path.name: path.read_text() for path in DASHBOARDS.glob("*.json")}
    assert rendered == on_disk, "run: python deploy/observability/dashboards.py"


@pytest.mark.unit
def test_dashboards_are_well_formed() -> None:
    uids = set()
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = load_dashboard(path.name)
        assert board["uid"] not in uids and len(board["uid"]) <= 40
        uids.add(board["uid"])
        assert board.get("id") is None  # provisioned: Grafana assigns ids
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[0] == "datasource"
        expected = ["namespace"] if path.name == "operator.json" else ["namespace", "pipeline"]
        expected += [] if path.name == "operator.json" else ["area"]
        assert names[1:] == expected, (path.name, names)
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids))
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, (path.name, panel["title"])
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    assert (x, y) not in cells, f"{path.name}: {panel['title']} overlaps"
                    cells.add((x, y))
        for panel in panels_with_queries(board):
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["title"] and panel["description"]
            for target in panel["targets"]:
                assert target["expr"].strip()
                # Every query is scoped to the selected pipeline(s).
                assert 'namespace=~"$namespace"' in target["expr"], target["expr"]


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


@pytest.mark.prometheus
def test_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [str(promtool()), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


@pytest.mark.prometheus
def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    result = subprocess.run(
        [str(promtool()), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=FILES,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.unit
def test_every_alert_is_actionable_and_has_a_firing_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for group in tests
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for group in tests
        for case in group.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    for rule in _rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 80
        assert name in firing, f"{name} has no unit test where it fires"
        assert name in quiet, f"{name} has no unit test where it stays quiet"


# ---------------------------------------------------------------- live


@dataclass
class LiveStack:
    prometheus: Prometheus
    started: float
    raw_topic: str


def _service(module: str, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _live_rules(workdir: Path) -> Path:
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = LIVE_FOR
    path = workdir / "alerts.live.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def _wait(what: str, check: Any, timeout: float, logs: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"{what} within {timeout}s\n{tails}")


# Malformed messages of several kinds, injected into the raw topic.
MALFORMED: list[tuple[bytes | None, bytes | None]] = [
    (b"bad-1", b"not json at all"),
    (b"bad-2", b""),
    (b"bad-3", b"[1, 2, 3]"),
    (b"bad-4", b'{"sensorId": "lobby-01"}'),
    (
        b"bad-5",
        b'{"sensorId": "lobby-01", "area": "lobby", "energyConsumption": -5,'
        b' "timestamp": "2026-01-05T06:00:00Z"}',
    ),
]


@pytest.fixture(scope="module")
def live(kafka: KafkaUnderTest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """Producer and transformer on fresh topics, Prometheus scraping them and evaluating
    the rules (``for:`` shortened); malformed messages once Prometheus has seen the
    transformer's counters at their start values."""
    workdir = Path(tmp_path_factory.mktemp("observability"))
    raw, processed, alerts, dlq = (
        kafka.topic("raw", 3),
        kafka.topic("processed", 3),
        kafka.topic("alerts", 3),
        kafka.topic("dlq", 1),
    )
    producer_port, transformer_port = free_port(), free_port()
    bootstrap = ["--bootstrap-servers", kafka.bootstrap_servers]
    children = [
        _service(
            "energy_pipeline.transformer.cli",
            [
                *bootstrap,
                *("--input-topic", raw, "--processed-topic", processed),
                *("--alerts-topic", alerts, "--dead-letter-topic", dlq),
                *("--metrics-port", str(transformer_port), "--instance-id", "observability"),
                # The lobby (30-60 kWh per reading) is "high" above 20: the test's way to
                # make one area's consumption high for long, with real readings.
                *("--area-thresholds", "lobby=20"),
            ],
            workdir / "transformer.log",
        ),
        _service(
            "energy_pipeline.producer.cli",
            [
                *bootstrap,
                *("--topic", raw, "--metrics-port", str(producer_port)),
                # 10 simulated minutes a second from Monday 06:00: off hours first, then
                # the offices' morning ramp; 150 readings/s.
                *("--sensors-per-area", "5", "--time-scale", "600"),
            ],
            workdir / "producer.log",
        ),
    ]
    prometheus = Prometheus(
        workdir / "prometheus",
        [
            ScrapeJob("producer", [producer_port], LOCAL_LABELS),
            ScrapeJob("transformer", [transformer_port], LOCAL_LABELS),
        ],
        rule_files=[_live_rules(workdir)],
    )
    try:
        started = time.time()
        prometheus.start()
        _wait(
            "Prometheus did not get the transformer's readings",
            lambda: prometheus.query("sum(energy_transformer_readings_processed_total) > 0"),
            60,
            workdir,
        )
        _wait("a target is down", prometheus.targets_up, 10, workdir)
        produce_values(kafka.settings(), raw, MALFORMED)
        yield LiveStack(prometheus, started, raw)
    finally:
        prometheus.stop()
        for child in children:
            stop_pid(child.pid)
            child.wait()


def _active(
    prometheus: Prometheus,
    alertname: str,
    states: frozenset[str] = frozenset({"pending", "firing"}),
) -> list[dict[str, Any]]:
    return [
        alert
        for alert in prometheus.alerts()
        if alert["labels"]["alertname"] == alertname and alert["state"] in states
    ]


FIRING = frozenset({"firing"})


@pytest.mark.kafka
@pytest.mark.prometheus
def test_high_consumption_and_dead_letter_alerts_fire(live: LiveStack) -> None:
    # Pending first, then firing once the (shortened) `for:` has passed.
    prometheus = live.prometheus
    workdir = prometheus.workdir.parent
    high = _wait(
        "EnergyAreaHighConsumption did not fire",
        lambda: _active(prometheus, "EnergyAreaHighConsumption", FIRING),
        30,
        workdir,
    )
    assert {alert["labels"]["area"] for alert in high} == {"lobby"}
    assert high[0]["labels"]["namespace"] == "local" and high[0]["labels"]["severity"]
    assert "lobby" in high[0]["annotations"]["summary"]
    dead = _wait(
        "EnergyDeadLetters did not fire",
        lambda: _active(prometheus, "EnergyDeadLetters", FIRING),
        30,
        workdir,
    )
    reasons = {alert["labels"]["reason"] for alert in dead}
    assert {"not_json", "empty_value", "not_object", "missing_field"} <= reasons, reasons
    # Nothing is wrong with the pipeline itself.
    assert not _active(prometheus, "EnergyTransformerLagGrowing")
    assert not _active(prometheus, "EnergyAreaNotReporting")


@pytest.mark.kafka
@pytest.mark.prometheus
def test_template_variables_list_the_local_pipeline(live: LiveStack) -> None:
    for name in ("building-overview.json", "pipeline-health.json"):
        values = resolve_variables(live.prometheus, load_dashboard(name))
        assert values == {
            "namespace": ["local"],
            "pipeline": ["local"],
            "area": ["cafeteria", "lobby", "offices"],
        }


@pytest.mark.kafka
@pytest.mark.prometheus
def test_every_building_and_pipeline_panel_returns_data(live: LiveStack) -> None:
    # After the alerts test (module order), so the "alerts" panel has ALERTS series;
    # wait for them here too, should this test run alone.
    _wait(
        "no alert became active",
        lambda: live.prometheus.query('ALERTS{alertname="EnergyDeadLetters"}'),
        30,
        live.prometheus.workdir.parent,
    )
    building = assert_panels_return_data(
        live.prometheus, load_dashboard("building-overview.json"), live.started
    )
    health = assert_panels_return_data(
        live.prometheus, load_dashboard("pipeline-health.json"), live.started
    )
    # Per-area panels show every area, and the values are the pipeline's.
    assert building["Consumption per area [A]"] == 3
    assert building["Cost per area per hour [A]"] == 3
    assert health["Produce rate per area [A]"] == 3
    share = panel_values(
        live.prometheus, "building-overview.json", "Share of high readings per area"
    )
    assert share["lobby"] == pytest.approx(1.0)  # every lobby reading is above 20
    # The other areas are in their morning: a fault spike at most, far from the alert.
    assert share["cafeteria"] < 0.5 and share["offices"] < 0.5
    up = panel_values(live.prometheus, "pipeline-health.json", "Targets up")
    assert up == {"": 2.0}


def panel_values(prometheus: Prometheus, dashboard: str, title: str) -> dict[str, float]:
    """A panel's first query, now, by area (or "" without one)."""
    board = load_dashboard(dashboard)
    (panel,) = [p for p in panels_with_queries(board) if p["title"] == title]
    expr = interpolate(panel["targets"][0]["expr"], resolve_variables(prometheus, board))
    return {r["metric"].get("area", ""): float(r["value"][1]) for r in prometheus.query(expr)}


@pytest.mark.kafka
@pytest.mark.prometheus
def test_prometheus_binds_loopback_only(live: LiveStack) -> None:
    with urllib.request.urlopen(f"{live.prometheus.url}/api/v1/status/flags", timeout=5) as r:  # noqa: S310
        flags = json.loads(r.read())["data"]
    assert flags["web.listen-address"].startswith("127.0.0.1:")
    targets = live.prometheus.api("targets")["activeTargets"]
    assert all(t["scrapeUrl"].startswith("http://127.0.0.1:") for t in targets)
