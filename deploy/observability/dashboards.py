"""The Grafana dashboards of the energy pipeline, as code.

    python deploy/observability/dashboards.py          # (re)write the JSON files
    python deploy/observability/dashboards.py --check  # exit 1 if they are out of date

Writes ``deploy/helm/energy-pipeline/files/dashboards/*.json``, which the chart
provisions through Grafana's sidecar ConfigMaps and tests/test_observability.py
evaluates against a real Prometheus. The JSON is committed (readable, diff-able); a
test checks it matches this file.

Every query filters by the template variables ``$namespace`` and ``$pipeline`` (labels
Kubernetes relabeling puts on every series) and, where it is per area, ``$area``.
Rates use ``$__rate_interval``; totals "over the dashboard's range" use ``$__range``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parents[1] / "helm" / "energy-pipeline" / "files" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PIPELINE = 'namespace=~"$namespace", pipeline=~"$pipeline"'
AREA = PIPELINE + ', area=~"$area"'
RATE = "[$__rate_interval]"
RANGE = "[$__range]"
# The transformer's default threshold: drawn as a line on the per-reading panels.
HIGH_THRESHOLD = 100

Json = dict[str, Any]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """One panel; ``kind`` is a Grafana panel type; ``instant`` panels show one value
    per series (stat, bar gauge, table), the others a time series."""

    title: str
    description: str
    queries: Sequence[Query]
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    threshold: float | None = None
    stacked: bool = False

    @property
    def instant(self) -> bool:
        return self.kind != "timeseries"


@dataclass(frozen=True)
class Row:
    title: str
    panels: Sequence[Panel]


def _target(query: Query, ref: int, instant: bool) -> Json:
    target: Json = {
        "datasource": DATASOURCE,
        "refId": chr(ord("A") + ref),
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
    }
    if instant:
        target["instant"] = True
        target["range"] = False
        target["format"] = "table" if query.legend == "" else "time_series"
    return target


def _field_config(panel: Panel) -> Json:
    steps: list[Json] = [{"color": "green", "value": None}]
    if panel.threshold is not None:
        steps.append({"color": "red", "value": panel.threshold})
    defaults: Json = {
        "unit": panel.unit,
        "thresholds": {"mode": "absolute", "steps": steps},
        "color": {"mode": "palette-classic" if panel.kind == "timeseries" else "thresholds"},
    }
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 25 if panel.stacked else 0,
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
            "showPoints": "never",
            "spanNulls": False,
            "thresholdsStyle": {"mode": "line" if panel.threshold is not None else "off"},
        }
    return {"defaults": defaults, "overrides": []}


def _options(panel: Panel) -> Json:
    if panel.kind == "timeseries":
        return {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if panel.kind == "stat":
        return {"reduceOptions": reduce, "colorMode": "value", "graphMode": "none"}
    if panel.kind == "bargauge":
        return {"reduceOptions": reduce, "orientation": "horizontal", "displayMode": "basic"}
    return {"showHeader": True}


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> Json:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": _field_config(panel),
        "options": _options(panel),
        "targets": [_target(q, i, panel.instant) for i, q in enumerate(panel.queries)],
    }


def _layout(rows: Sequence[Row]) -> list[Json]:
    """Rows of panels on Grafana's 24-column grid, left to right, wrapping."""
    panels: list[Json] = []
    y = 0
    panel_id = 1
    for row in rows:
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        x = 0
        row_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(_panel(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return panels


def _variable(name: str, label: str, metric: str, selector: str = "") -> Json:
    match = f"{metric}{{{selector}}}" if selector else metric
    query = f"label_values({match}, {name})"
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 2,  # on time-range change: new pipelines and areas appear
        "includeAll": True,
        "multi": True,
        "sort": 1,
        "current": {},
        "hide": 0,
        "regex": "",
        "options": [],
    }


def _datasource_variable() -> Json:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def dashboard(
    uid: str, title: str, description: str, variables: list[Json], rows: list[Row]
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["energy-pipeline"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [_datasource_variable(), *variables]},
        "panels": _layout(rows),
    }


def _pipeline_variables(metric: str) -> list[Json]:
    return [
        _variable("namespace", "Namespace", metric),
        _variable("pipeline", "Pipeline", metric, 'namespace=~"$namespace"'),
        _variable("area", "Area", metric, PIPELINE),
    ]


def _by_area_rate(metric: str, factor: str = "") -> str:
    return f"sum by (area) (rate({metric}{{{AREA}}}{RATE})){factor}"


def _by_area_increase(metric: str) -> str:
    return f"sum by (area) (increase({metric}{{{AREA}}}{RANGE}))"


PROCESSED = "energy_transformer_readings_processed_total"
HIGH = "energy_transformer_high_readings_total"
ENERGY = "energy_transformer_consumption_kwh_total"
OFF_HOURS = "energy_transformer_off_hours_consumption_kwh_total"
COST = "energy_transformer_cost_total"
INVALID = "energy_transformer_invalid_readings_total"


def building_overview() -> Json:
    totals = Row(
        "Over the dashboard's range",
        [
            Panel(
                "Energy",
                "Energy of every valid reading of the selected areas.",
                [Query(f"sum(increase({ENERGY}{{{AREA}}}{RANGE}))", "kWh")],
                kind="stat",
                unit="kwatth",
                width=6,
                height=4,
            ),
            Panel(
                "Cost",
                "That energy at the tariff of its hour (peak and off-peak prices).",
                [Query(f"sum by (currency) (increase({COST}{{{AREA}}}{RANGE}))", "{{currency}}")],
                kind="stat",
                width=6,
                height=4,
            ),
            Panel(
                "High readings",
                "Share of the readings above the high-consumption threshold.",
                [
                    Query(
                        f"sum(increase({HIGH}{{{AREA}}}{RANGE})) / "
                        f"sum(increase({PROCESSED}{{{AREA}}}{RANGE}))",
                        "high",
                    )
                ],
                kind="stat",
                unit="percentunit",
                width=6,
                height=4,
            ),
            Panel(
                "Off-hours energy",
                "Share of the energy used at night (before 07:00, from 20:00) and at "
                "weekends, in event time: when the building should run on its base load.",
                [
                    Query(
                        f"sum(increase({OFF_HOURS}{{{AREA}}}{RANGE})) / "
                        f"sum(increase({ENERGY}{{{AREA}}}{RANGE}))",
                        "off-hours",
                    )
                ],
                kind="stat",
                unit="percentunit",
                width=6,
                height=4,
            ),
        ],
    )
    consumption = Row(
        "Consumption",
        [
            Panel(
                "Consumption per area",
                "Energy per hour of each area (kWh per hour, i.e. average kW).",
                [Query(_by_area_rate(ENERGY, " * 3600"), "{{area}}")],
                unit="kwatt",
            ),
            Panel(
                "Average reading per area",
                "Mean energy of one reading; the red line is the default high-consumption "
                "threshold (100 kWh per reading).",
                [
                    Query(
                        f"{_by_area_rate(ENERGY)} / {_by_area_rate(PROCESSED)}",
                        "{{area}}",
                    )
                ],
                unit="kwatth",
                threshold=HIGH_THRESHOLD,
            ),
            Panel(
                "Average reading per area over the range",
                "Mean energy of one reading of each area over the dashboard's range.",
                [
                    Query(
                        f"{_by_area_increase(ENERGY)} / {_by_area_increase(PROCESSED)}", "{{area}}"
                    )
                ],
                kind="bargauge",
                unit="kwatth",
                threshold=HIGH_THRESHOLD,
            ),
            Panel(
                "Energy per area over the range",
                "Energy of each area over the dashboard's range.",
                [Query(f"sort_desc({_by_area_increase(ENERGY)})", "{{area}}")],
                kind="bargauge",
                unit="kwatth",
            ),
        ],
    )
    high = Row(
        "High readings",
        [
            Panel(
                "High readings per area",
                "Readings above the threshold (alarms on high_consumption_data), per minute.",
                [Query(_by_area_rate(HIGH, " * 60"), "{{area}}")],
            ),
            Panel(
                "Share of high readings per area",
                "High readings as a share of each area's readings. EnergyAreaHighConsumption "
                "fires above 50 % for 15 minutes.",
                [Query(f"{_by_area_rate(HIGH)} / {_by_area_rate(PROCESSED)}", "{{area}}")],
                unit="percentunit",
                threshold=0.5,
            ),
        ],
    )
    cost = Row(
        "Cost",
        [
            Panel(
                "Cost per area per hour",
                "What each area's consumption costs per hour at the tariff (peak hours "
                "cost more when the tariff has a peak price).",
                [
                    Query(
                        f"sum by (area, currency) (rate({COST}{{{AREA}}}{RATE})) * 3600",
                        "{{area}} ({{currency}})",
                    )
                ],
            ),
            Panel(
                "Cost per area over the range",
                "What each area cost over the dashboard's range.",
                [
                    Query(
                        f"sort_desc(sum by (area, currency) (increase({COST}{{{AREA}}}{RANGE})))",
                        "{{area}} ({{currency}})",
                    )
                ],
                kind="bargauge",
            ),
        ],
    )
    off_hours = Row(
        "Off-hours: nights and weekends, the usual waste",
        [
            Panel(
                "Off-hours consumption per area",
                "Energy per hour used outside 07:00-20:00 on weekdays and all weekend "
                "(event time): lights, screens and HVAC left on.",
                [Query(_by_area_rate(OFF_HOURS, " * 3600"), "{{area}}")],
                unit="kwatt",
            ),
            Panel(
                "Off-hours share of each area's energy over the range",
                "The part of each area's energy used off hours.",
                [
                    Query(
                        f"sort_desc({_by_area_increase(OFF_HOURS)} / {_by_area_increase(ENERGY)})",
                        "{{area}}",
                    )
                ],
                kind="bargauge",
                unit="percentunit",
            ),
        ],
    )
    alarms = Row(
        "Latest alarms",
        [
            Panel(
                "High-consumption alarms per area",
                "High readings per area in each interval: when the alarms came.",
                [Query(f"sum by (area) (increase({HIGH}{{{AREA}}}[$__interval]))", "{{area}}")],
                stacked=True,
            ),
            Panel(
                "Alerts pending or firing",
                "The pipeline's building and dead-letter alerts now (see the PrometheusRule).",
                [
                    Query(
                        "sum by (alertname, alertstate, area, reason) (ALERTS{alertname=~"
                        '"EnergyArea.*|EnergyDeadLetters", ' + PIPELINE + "})"
                    )
                ],
                kind="table",
            ),
        ],
    )
    return dashboard(
        "energy-building-overview",
        "Energy pipeline / Building overview",
        "Where the building uses, pays for and wastes energy, per area.",
        _pipeline_variables(PROCESSED),
        [totals, consumption, high, cost, off_hours, alarms],
    )


def _quantiles(metric: str, selector: str = PIPELINE) -> list[Query]:
    return [
        Query(
            f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{selector}}}{RATE})))",
            f"p{int(q * 100)}",
        )
        for q in (0.5, 0.99)
    ]


def pipeline_health() -> Json:
    totals = Row(
        "Now",
        [
            Panel(
                "Readings processed",
                "Valid readings the transformer committed, per second.",
                [Query(f"sum(rate({PROCESSED}{{{AREA}}}{RATE}))", "readings/s")],
                kind="stat",
                width=6,
                height=4,
            ),
            Panel(
                "Consumer lag",
                "Messages of the raw topic not yet processed.",
                [
                    Query(
                        "sum(max by (partition) (energy_transformer_consumer_lag{"
                        + PIPELINE
                        + "}))",
                        "messages",
                    )
                ],
                kind="stat",
                width=6,
                height=4,
                threshold=1000,
            ),
            Panel(
                "Dead letters over the range",
                "Messages sent to iot_sensor_data_dlq.",
                [Query(f"sum(increase({INVALID}{{{PIPELINE}}}{RANGE}))", "messages")],
                kind="stat",
                width=6,
                height=4,
                threshold=1,
            ),
            Panel(
                "Targets up",
                "Scrape targets of the pipeline that answer (1 each).",
                [Query(f"sum(up{{{PIPELINE}}})", "up")],
                kind="stat",
                width=6,
                height=4,
            ),
        ],
    )
    throughput = Row(
        "Throughput",
        [
            Panel(
                "Produce rate per area",
                "Readings the producer handed to Kafka and Kafka acknowledged, per second.",
                [
                    Query(_by_area_rate("energy_producer_readings_delivered_total"), "{{area}}"),
                    Query(
                        f"sum(rate(energy_producer_readings_produced_total{{{AREA}}}{RATE}))",
                        "produced (all areas)",
                    ),
                ],
            ),
            Panel(
                "Consume rate",
                "Messages the transformer committed, per second: valid readings per area "
                "and dead letters.",
                [
                    Query(_by_area_rate(PROCESSED), "{{area}}"),
                    Query(f"sum(rate({INVALID}{{{PIPELINE}}}{RATE}))", "dead letters"),
                ],
            ),
            Panel(
                "Producer delivery latency",
                "Produce-to-acknowledgement time (one reading in 64 is timed).",
                _quantiles("energy_producer_delivery_latency_seconds"),
                unit="s",
            ),
            Panel(
                "Producer queue",
                "Messages waiting in the producer's Kafka client.",
                [Query(f"sum(energy_producer_queue_depth{{{PIPELINE}}})", "queued")],
            ),
        ],
    )
    transformer = Row(
        "Transformer",
        [
            Panel(
                "Consumer lag per partition",
                "Messages behind the end of each raw-topic partition. "
                "EnergyTransformerLagGrowing fires above 1000 and growing.",
                [
                    Query(
                        "max by (partition) (energy_transformer_consumer_lag{" + PIPELINE + "})",
                        "partition {{partition}}",
                    )
                ],
                stacked=True,
            ),
            Panel(
                "Transactions",
                "Transactions (exactly-once) or checkpoints (at-least-once) per second, by "
                "outcome: aborted ones are retried.",
                [
                    Query(
                        "sum by (outcome) (rate(energy_transformer_transactions_total{"
                        + PIPELINE
                        + "}"
                        + RATE
                        + "))",
                        "{{outcome}}",
                    )
                ],
            ),
            Panel(
                "Event-time lag",
                "Now minus the event time of the newest reading of each batch. The "
                "simulated clock may run ahead of or far behind the wall clock.",
                _quantiles("energy_transformer_event_time_lag_seconds"),
                unit="s",
            ),
            Panel(
                "Batch size",
                "Messages per consumed batch.",
                _quantiles("energy_transformer_batch_size"),
            ),
        ],
    )
    errors = Row(
        "Errors",
        [
            Panel(
                "Dead-letter messages by reason",
                "Messages sent to the dead-letter topic per minute; the headers dlq.reason "
                "and dlq.detail of each say why.",
                [
                    Query(
                        f"sum by (reason) (rate({INVALID}{{{PIPELINE}}}{RATE})) * 60",
                        "{{reason}}",
                    )
                ],
                stacked=True,
            ),
            Panel(
                "Delivery failures",
                "Messages Kafka failed to deliver, per minute.",
                [
                    Query(
                        "sum(rate(energy_producer_delivery_failures_total{"
                        + AREA
                        + "}"
                        + RATE
                        + ")) * 60",
                        "producer",
                    ),
                    Query(
                        "sum(rate(energy_transformer_delivery_failures_total{"
                        + PIPELINE
                        + "}"
                        + RATE
                        + ")) * 60",
                        "transformer",
                    ),
                ],
            ),
            Panel(
                "Dead letters by reason over the range",
                "Which kinds of invalid messages arrived.",
                [
                    Query(
                        f"sort_desc(sum by (reason) (increase({INVALID}{{{PIPELINE}}}{RANGE})))",
                        "{{reason}}",
                    )
                ],
                kind="bargauge",
            ),
            Panel(
                "Simulated clock",
                "The producer's simulated time (event time of its newest round).",
                [
                    Query(
                        f"max(energy_producer_simulated_time_seconds{{{PIPELINE}}}) * 1000",
                        "simulated",
                    )
                ],
                kind="stat",
                unit="dateTimeAsIso",
            ),
        ],
    )
    return dashboard(
        "energy-pipeline-health",
        "Energy pipeline / Pipeline health",
        "Producer and transformer: rates, lag, transactions, dead letters, failures.",
        _pipeline_variables(PROCESSED),
        [totals, throughput, transformer, errors],
    )


OPERATOR = 'namespace=~"$namespace"'
RECONCILIATIONS = "energy_operator_reconciliations_total"


def operator() -> Json:
    rows = [
        Row(
            "Reconciliations",
            [
                Panel(
                    "Reconciliations by outcome",
                    "Reconciliations per minute: temporary errors are retried, permanent "
                    "errors wait for a change of the spec.",
                    [
                        Query(
                            f"sum by (outcome) (rate({RECONCILIATIONS}{{{OPERATOR}}}{RATE})) * 60",
                            "{{outcome}}",
                        )
                    ],
                    stacked=True,
                ),
                Panel(
                    "Failed reconciliations",
                    "Share of reconciliations that failed. EnergyOperatorReconcileFailing fires "
                    "above 50 % for 15 minutes.",
                    [
                        Query(
                            f"sum(rate({RECONCILIATIONS}{{{OPERATOR}, "
                            f'outcome=~"temporary_error|permanent_error"}}{RATE})) / '
                            f"sum(rate({RECONCILIATIONS}{{{OPERATOR}}}{RATE}))",
                            "failed",
                        )
                    ],
                    unit="percentunit",
                    threshold=0.5,
                ),
                Panel(
                    "Reconcile duration",
                    "Time of one reconciliation.",
                    _quantiles("energy_operator_reconcile_duration_seconds", OPERATOR),
                    unit="s",
                ),
                Panel(
                    "Drift repairs",
                    "Objects the operator found changed or missing and put back, per hour.",
                    [
                        Query(
                            "sum(rate(energy_operator_drift_repairs_total{"
                            + OPERATOR
                            + "}"
                            + RATE
                            + ")) * 3600",
                            "repairs",
                        )
                    ],
                ),
            ],
        ),
        Row(
            "Pipelines",
            [
                Panel(
                    "Pipelines by phase",
                    "EnergyPipeline resources in each phase.",
                    [
                        Query(
                            f"sum by (phase) (energy_operator_pipelines{{{OPERATOR}}})",
                            "{{phase}}",
                        )
                    ],
                    stacked=True,
                ),
                Panel(
                    "Pipelines by phase now",
                    "EnergyPipelineNotReady fires when one is Degraded or Failed for 15 minutes.",
                    [
                        Query(
                            f"sum by (phase) (energy_operator_pipelines{{{OPERATOR}}})",
                            "{{phase}}",
                        )
                    ],
                    kind="bargauge",
                ),
            ],
        ),
    ]
    return dashboard(
        "energy-operator",
        "Energy pipeline / Operator",
        "The energy operator: reconciliations, failures, pipelines by phase.",
        [_variable("namespace", "Namespace", RECONCILIATIONS)],
        rows,
    )


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    dashboards = {
        "building-overview.json": building_overview(),
        "pipeline-health.json": pipeline_health(),
        "operator.json": operator(),
    }
    return {name: json.dumps(board, indent=2) + "\n" for name, board in dashboards.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.out / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
