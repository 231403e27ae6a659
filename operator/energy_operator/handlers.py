"""The kopf handlers: a thin layer over :mod:`energy_operator.reconcile`."""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import kopf
from kubernetes import config as k8s_config

from energy_operator import metrics, reconcile
from energy_operator.api import FINALIZER, GROUP, PLURAL, VERSION
from energy_operator.resources import DELETING, PENDING, Pipeline
from energy_operator.settings import OperatorSettings
from energy_pipeline.metrics_server import serve_metrics

# Read once: kopf needs the timer's interval when this module is imported.
SETTINGS = OperatorSettings.load()


# Events that call for a person's attention.
WARNING_REASONS = {"TopicConflict", "CleanupAbandoned"}


def _events(body: kopf.Body) -> Callable[[str, str], None]:
    def post(reason: str, message: str) -> None:
        kind = "Warning" if reason in WARNING_REASONS else "Normal"
        kopf.event(body, type=kind, reason=reason, message=message)

    return post


@contextmanager
def _measured() -> Iterator[None]:
    """Count and time one reconciliation by its outcome."""
    started = time.monotonic()
    outcome = "success"
    try:
        yield
    except kopf.PermanentError:
        outcome = "permanent_error"
        raise
    except Exception:
        outcome = "temporary_error"
        raise
    finally:
        metrics.RECONCILIATIONS.labels(outcome).inc()
        metrics.RECONCILE_DURATION.observe(time.monotonic() - started)


@kopf.on.startup()
def energypipeline_startup(
    settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    settings.persistence.finalizer = FINALIZER
    # Keep kopf's bookkeeping under our own API group, not kopf.zalando.org.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Reconnect watches every few minutes: a watch silently lost behind a proxy or
    # load balancer would otherwise never deliver events again.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Log lines are not Events: the handlers post Events for what they do.
    settings.posting.level = logging.WARNING
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()
    serve_metrics(metrics.REGISTRY, SETTINGS.metrics_host, SETTINGS.metrics_port, lambda: True)
    logger.info(
        "energy-operator started (drift check every %.0fs)", SETTINGS.drift_interval_seconds
    )


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
def energypipeline_reconcile(body: kopf.Body, retry: int, **_: Any) -> None:
    pipeline = Pipeline.of(body)
    if not body.get("status"):
        metrics.PHASE_BOOK.set(pipeline.uid, PENDING)
    with _measured():
        reconcile.reconcile(body, SETTINGS, retry, _events(body))


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    interval=SETTINGS.drift_interval_seconds,
    initial_delay=SETTINGS.drift_interval_seconds,
)
def energypipeline_drift(body: kopf.Body, **_: Any) -> None:
    if reconcile.check_drift(body, SETTINGS, _events(body)):
        metrics.DRIFT_REPAIRS.inc()


@kopf.on.delete(GROUP, VERSION, PLURAL)
def energypipeline_delete(
    body: kopf.Body, retry: int, runtime: datetime.timedelta, **_: Any
) -> None:
    pipeline = Pipeline.of(body)
    metrics.PHASE_BOOK.set(pipeline.uid, DELETING)
    with _measured():
        reconcile.delete(body, SETTINGS, runtime, retry, _events(body))
    metrics.PHASE_BOOK.forget(pipeline.uid)
