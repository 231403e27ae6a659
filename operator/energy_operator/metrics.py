"""The operator's Prometheus metrics, on their own registry."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from energy_operator.resources import PHASES


class PhaseBook(Collector):
    """The phase of every pipeline the operator knows, exported as counts per phase."""

    def __init__(self) -> None:
        self._phases: dict[str, str] = {}
        self._lock = threading.Lock()

    def set(self, uid: str, phase: str) -> None:
        with self._lock:
            self._phases[uid] = phase

    def forget(self, uid: str) -> None:
        with self._lock:
            self._phases.pop(uid, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            phases = list(self._phases.values())
        family = GaugeMetricFamily(
            "energy_operator_pipelines", "EnergyPipelines by phase", labels=["phase"]
        )
        for phase in PHASES:
            family.add_metric([phase], phases.count(phase))
        yield family


REGISTRY = CollectorRegistry()
PHASE_BOOK = PhaseBook()
REGISTRY.register(PHASE_BOOK)
RECONCILIATIONS = Counter(
    "energy_operator_reconciliations",
    "Reconciliations of EnergyPipelines by outcome",
    ["outcome"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "energy_operator_reconcile_duration_seconds",
    "Time one reconciliation took",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
DRIFT_REPAIRS = Counter(
    "energy_operator_drift_repairs",
    "Drift found and repaired (a topic or a ksqlDB object missing or changed)",
    registry=REGISTRY,
)
for _outcome in ("success", "temporary_error", "permanent_error"):
    RECONCILIATIONS.labels(_outcome)
