"""Reconciling one EnergyPipeline: topics, then ksqlDB, then the services' settings.

Called by the kopf handlers (``handlers.py``) with the resource's body. Every step
writes the status as it goes, so that a pipeline waiting for Kafka or ksqlDB says
so. Errors become kopf's: ``TemporaryError`` (a dependency is not there yet; retried
with backoff) or ``PermanentError`` (the spec is invalid; fixed only by a new spec).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import kopf
from pydantic import ValidationError

from energy_ksql.render import render_statements
from energy_operator import dependencies as deps
from energy_operator.api import settings_configmap_name
from energy_operator.metrics import PHASE_BOOK
from energy_operator.resources import (
    DEGRADED,
    FAILED,
    PROVISIONING,
    READY,
    Condition,
    Pipeline,
    conflicting_topics,
    merge_conditions,
    now,
)
from energy_operator.settings import OperatorSettings
from energy_pipeline.spec import EnergyPipelineSpec

log = logging.getLogger("energy_operator")

TOPICS_READY = "TopicsReady"
KSQL_READY = "KsqlReady"
READY_CONDITION = "Ready"

# Posts a Kubernetes Event on the resource: (reason, message).
EventSink = Callable[[str, str], None]


def backoff(retry: int, settings: OperatorSettings) -> float:
    return float(min(2.0 * 2**retry, settings.max_retry_delay_seconds))


class StatusWriter:
    """Writes ``status`` with the conditions known so far."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.pipeline = Pipeline.of(body)
        self.previous: Mapping[str, Any] = body.get("status") or {}
        self.fields: dict[str, Any] = {}

    def managed_ksql_objects(self) -> list[str]:
        return list((self.previous.get("ksql") or {}).get("objects") or [])

    def write(
        self, phase: str, topics_condition: Condition, ksql_condition: Condition, **fields: Any
    ) -> None:
        self.fields.update(fields)
        failing = [c for c in (topics_condition, ksql_condition) if not c.ok]
        ready = Condition(
            READY_CONDITION,
            not failing,
            failing[0].reason if failing else "Reconciled",
            failing[0].message if failing else "topics and ksqlDB objects are in place",
        )
        status = {
            "phase": phase,
            "observedGeneration": self.pipeline.generation,
            "conditions": merge_conditions(
                self.previous.get("conditions") or [],
                [topics_condition, ksql_condition, ready],
                self.pipeline.generation,
            ),
            **self.fields,
        }
        deps.patch_status(self.pipeline, status)
        PHASE_BOOK.set(self.pipeline.uid, phase)


def parse_spec(body: Mapping[str, Any], writer: StatusWriter) -> EnergyPipelineSpec:
    """The validated spec, or a Failed status and a PermanentError saying why."""
    try:
        return EnergyPipelineSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        message = "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        invalid = Condition(TOPICS_READY, False, "InvalidSpec", message)
        writer.write(FAILED, invalid, Condition(KSQL_READY, False, "InvalidSpec", message))
        raise kopf.PermanentError(f"invalid spec: {message}") from None


def reconcile(
    body: Mapping[str, Any], settings: OperatorSettings, retry: int, event: EventSink
) -> None:
    writer = StatusWriter(body)
    pipeline = writer.pipeline
    spec = parse_spec(body, writer)
    unknown = Condition(KSQL_READY, False, "Waiting", "waiting for the topics")

    # Two pipelines must not own one topic: the later one gives way and touches nothing.
    conflicts = conflicting_topics(spec, body, deps.list_pipelines())
    if conflicts:
        message = "; ".join(f"topic {topic} belongs to {owner}" for topic, owner in conflicts)
        writer.write(FAILED, Condition(TOPICS_READY, False, "TopicConflict", message), unknown)
        event("TopicConflict", message)
        raise kopf.TemporaryError(message, delay=settings.max_retry_delay_seconds)

    try:
        if spec.kafka.topic_management == "strimzi":
            outcome = deps.ensure_topics_strimzi(pipeline, spec)
        else:
            outcome = deps.ensure_topics_admin(pipeline, spec, settings)
    except deps.DependencyUnavailable as error:
        writer.write(
            PROVISIONING, Condition(TOPICS_READY, False, error.reason, str(error)), unknown
        )
        raise kopf.TemporaryError(str(error), delay=backoff(retry, settings)) from None
    if outcome.created:
        event("TopicsCreated", ", ".join(outcome.created))
    topics = Condition(
        TOPICS_READY,
        outcome.ready,
        "TopicsReady" if outcome.ready else "TopicsNotReady",
        outcome.message,
    )
    if not outcome.ready:
        writer.write(PROVISIONING, topics, unknown, topics=outcome.topics)
        raise kopf.TemporaryError(outcome.message, delay=backoff(retry, settings))
    writer.fields["topics"] = outcome.topics

    try:
        applied = deps.ksql_apply(pipeline.namespace, spec, settings, writer.managed_ksql_objects())
    except deps.DependencyUnavailable as error:
        writer.write(PROVISIONING, topics, Condition(KSQL_READY, False, error.reason, str(error)))
        raise kopf.TemporaryError(str(error), delay=backoff(retry, settings)) from None
    if applied:
        event("KsqlApplied", "; ".join(applied))
    ksql_objects = [statement.name for statement in render_statements(spec)]

    digest, changed = deps.publish_settings(pipeline, spec)
    if changed:
        event("SettingsPublished", f"ConfigMap {settings_configmap_name(pipeline.name)}")
    rolled = deps.roll_deployments(pipeline, digest)
    if rolled:
        event("DeploymentsRolled", ", ".join(rolled))
    writer.write(
        READY,
        topics,
        Condition(KSQL_READY, True, "KsqlApplied", f"{len(ksql_objects)} objects in place"),
        ksql={"url": spec.ksql.url, "objects": ksql_objects},
        settings={"configMap": settings_configmap_name(pipeline.name), "hash": digest},
    )


def find_drift(body: Mapping[str, Any], settings: OperatorSettings) -> list[str]:
    """What no longer matches the spec of a Ready pipeline (empty: nothing)."""
    writer = StatusWriter(body)
    pipeline = writer.pipeline
    spec = EnergyPipelineSpec.model_validate(body.get("spec") or {})
    drift = []
    if spec.kafka.topic_management == "strimzi":
        missing = deps.missing_topics_strimzi(pipeline, spec)
    else:
        missing = deps.missing_topics_admin(pipeline.namespace, spec, settings)
    drift += [f"topic {name} is missing" for name in missing]
    plan = deps.ksql_plan(pipeline.namespace, spec, settings, writer.managed_ksql_objects())
    drift += [f"ksqlDB {step.kind.lower()} {step.name}: {step.reason}" for step in plan.changes]
    if not deps.configmap_matches(pipeline, spec):
        drift.append(f"ConfigMap {settings_configmap_name(pipeline.name)} differs")
    return drift


def check_drift(body: Mapping[str, Any], settings: OperatorSettings, event: EventSink) -> bool:
    """Repair drift of a Ready pipeline; True if something was repaired."""
    status = body.get("status") or {}
    generation = body["metadata"].get("generation")
    if (
        status.get("phase") not in (READY, DEGRADED)
        or status.get("observedGeneration") != generation
    ):
        return False  # a handler is still working on it
    writer = StatusWriter(body)
    try:
        drift = find_drift(body, settings)
        if not drift:
            if status.get("phase") == DEGRADED:
                reconcile(body, settings, 0, event)  # back to Ready
            return False
        message = "; ".join(drift)
        log.warning("%s/%s drifted: %s", writer.pipeline.namespace, writer.pipeline.name, message)
        reconcile(body, settings, 0, event)
    except deps.DependencyUnavailable as error:
        kafka_down = error.reason.startswith("Kafka")
        writer.write(
            DEGRADED,
            Condition(
                TOPICS_READY,
                not kafka_down,
                error.reason if kafka_down else "TopicsReady",
                str(error) if kafka_down else "unchanged",
            ),
            Condition(
                KSQL_READY,
                kafka_down,
                "Unchecked" if kafka_down else error.reason,
                "not checked while Kafka is unreachable" if kafka_down else str(error),
            ),
        )
        return False
    except kopf.TemporaryError as error:
        log.warning("drift repair of %s is waiting: %s", writer.pipeline.name, error)
        return False
    repairs = int((status.get("drift") or {}).get("repairs", 0)) + 1
    deps.patch_status(
        writer.pipeline, {"drift": {"lastRepair": now(), "repairs": repairs, "found": message}}
    )
    event("DriftRepaired", message)
    return True


def delete(
    body: Mapping[str, Any],
    settings: OperatorSettings,
    runtime: timedelta,
    retry: int,
    event: EventSink,
) -> None:
    """Clean up per ``deletionPolicy``; give up (and say so) past the deletion timeout."""
    writer = StatusWriter(body)
    pipeline = writer.pipeline
    try:
        spec = EnergyPipelineSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return  # nothing was ever made for an invalid spec
    strimzi = spec.kafka.topic_management == "strimzi"
    if spec.deletion_policy == "Retain":
        if strimzi:
            deps.release_topics_strimzi(pipeline, spec, delete=False)
        event("Retained", "deletionPolicy Retain: topics and ksqlDB objects are kept")
        return
    try:
        dropped = deps.ksql_apply(
            pipeline.namespace, spec, settings, writer.managed_ksql_objects(), delete=True
        )
        if strimzi:
            deps.release_topics_strimzi(pipeline, spec, delete=True)
            deleted = [t["name"] for t in (writer.previous.get("topics") or [])]
        else:
            deleted = deps.delete_topics_admin(pipeline.namespace, spec, settings)
    except deps.DependencyUnavailable as error:
        if runtime.total_seconds() >= settings.deletion_timeout_seconds:
            message = (
                f"gave up cleaning up after {runtime.total_seconds():.0f}s: {error}; "
                "topics and ksqlDB objects may be left behind"
            )
            event("CleanupAbandoned", message)
            log.error("%s/%s: %s", pipeline.namespace, pipeline.name, message)
            return
        raise kopf.TemporaryError(
            f"cleanup waits: {error}",
            delay=min(backoff(retry, settings), max(settings.deletion_timeout_seconds, 1.0)),
        ) from None
    event(
        "Deleted",
        f"dropped {', '.join(dropped) or 'nothing'}; deleted topics {', '.join(deleted) or 'none'}",
    )
