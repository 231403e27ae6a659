"""Evaluating the Grafana dashboards' queries against a real Prometheus, substituting
the template variables as Grafana would (see tests/test_observability.py)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from energy_pipeline.local.prometheus import Prometheus

DASHBOARDS = (
    Path(__file__).resolve().parents[1]
    / "deploy"
    / "helm"
    / "energy-pipeline"
    / "files"
    / "dashboards"
)
# Grafana's interval variables, fixed: a few 1-second scrapes, and a range longer than
# the test.
INTERVALS = {"__rate_interval": "15s", "__interval": "5s", "__range": "1h"}


def load_dashboard(name: str) -> dict[str, Any]:
    board: dict[str, Any] = json.loads((DASHBOARDS / name).read_text())
    return board


def panels_with_queries(board: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel that has targets, rows' nested panels included."""
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        found.extend(p for p in panel.get("panels", []) if p.get("targets"))
        if panel.get("targets"):
            found.append(panel)
    return found


def variables(board: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [v for v in board["templating"]["list"] if v["type"] == "query"]


def _format(values: list[str]) -> str:
    escaped = [re.escape(value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(expr: str, values: Mapping[str, list[str]]) -> str:
    """``expr`` with Grafana's variables replaced (see the module's docstring)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in INTERVALS:
            return INTERVALS[name]
        if name not in values:
            raise AssertionError(f"unknown variable ${name} in {expr}")
        return _format(values[name])

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


LABEL_VALUES = re.compile(r"^label_values\((?P<match>.+),\s*(?P<label>\w+)\)$")


def resolve_variables(prometheus: Prometheus, board: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each variable's values, in order, as Grafana's ``label_values`` would list them."""
    values: dict[str, list[str]] = {}
    for variable in variables(board):
        parsed = LABEL_VALUES.match(variable["query"])
        assert parsed, variable["query"]
        match = interpolate(parsed["match"], values)
        values[variable["name"]] = prometheus.label_values(parsed["label"], match)
    return values


def assert_panels_return_data(
    prometheus: Prometheus, board: Mapping[str, Any], since: float
) -> dict[str, int]:
    """Evaluate every target of every panel; return the series count per query."""
    values = resolve_variables(prometheus, board)
    assert all(values.values()), values
    counts: dict[str, int] = {}
    empty: list[str] = []
    for panel in panels_with_queries(board):
        for target in panel["targets"]:
            expr = interpolate(target["expr"], values)
            key = f"{panel['title']} [{target['refId']}]"
            if target.get("instant"):
                result = prometheus.query(expr)
                samples = [float(series["value"][1]) for series in result]
            else:
                result = prometheus.query_range(expr, since, time.time(), step=1)
                samples = [float(v) for series in result for _, v in series["values"]]
            counts[key] = len(result)
            if not result or all(math.isnan(sample) for sample in samples):
                empty.append(f"{key}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    return counts
