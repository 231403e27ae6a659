"""What the operator writes, as plain functions of the pipeline: the settings
ConfigMap, Strimzi KafkaTopics, owner references, conditions and status."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from energy_operator.api import (
    API_VERSION,
    KIND,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PIPELINE_LABEL,
    STRIMZI_CLUSTER_LABEL,
    STRIMZI_GROUP,
    STRIMZI_VERSION,
    settings_configmap_name,
)
from energy_pipeline.spec import EnergyPipelineSpec, TopicSettings

TOPIC_ROLES = ("raw", "processed", "alerts", "dead_letter")

# Phases, from the user's point of view.
PENDING = "Pending"
PROVISIONING = "Provisioning"
READY = "Ready"
DEGRADED = "Degraded"
FAILED = "Failed"
DELETING = "Deleting"
PHASES = (PENDING, PROVISIONING, READY, DEGRADED, FAILED, DELETING)


@dataclass(frozen=True)
class Pipeline:
    """The identity of one EnergyPipeline resource."""

    name: str
    namespace: str
    uid: str
    generation: int

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Pipeline:
        meta = body["metadata"]
        return cls(meta["name"], meta["namespace"], meta["uid"], int(meta.get("generation", 1)))


def owner_reference(pipeline: Pipeline) -> dict[str, Any]:
    # No blockOwnerDeletion: it needs the right to set finalizers on the owner, and
    # garbage collection works without it.
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": pipeline.name,
        "uid": pipeline.uid,
        "controller": True,
    }


def labels(pipeline: Pipeline) -> dict[str, str]:
    return {PIPELINE_LABEL: pipeline.name, MANAGED_BY_LABEL: MANAGED_BY}


def topics_of(spec: EnergyPipelineSpec) -> dict[str, TopicSettings]:
    return {role: getattr(spec.topics, role) for role in TOPIC_ROLES}


def service_settings(spec: EnergyPipelineSpec) -> dict[str, str]:
    """The producer's and transformer's environment, as the pipeline sets it."""
    topics = topics_of(spec)
    tariff = spec.tariff
    data = {
        "KAFKA_BOOTSTRAP_SERVERS": spec.kafka.bootstrap_servers,
        "PRODUCER_TOPIC": topics["raw"].name,
        "TRANSFORMER_INPUT_TOPIC": topics["raw"].name,
        "TRANSFORMER_PROCESSED_TOPIC": topics["processed"].name,
        "TRANSFORMER_ALERTS_TOPIC": topics["alerts"].name,
        "TRANSFORMER_DEAD_LETTER_TOPIC": topics["dead_letter"].name,
        "TRANSFORMER_THRESHOLD": repr(spec.high_consumption_threshold),
        "TRANSFORMER_AREA_THRESHOLDS": ",".join(
            f"{area}={value!r}" for area, value in sorted((spec.area_thresholds or {}).items())
        ),
        "TRANSFORMER_PRICE_PER_KWH": repr(tariff.price_per_kwh),
        "TRANSFORMER_PEAK_START_HOUR": str(tariff.peak_start_hour),
        "TRANSFORMER_PEAK_END_HOUR": str(tariff.peak_end_hour),
        "TRANSFORMER_CURRENCY": tariff.currency,
    }
    if tariff.peak_price_per_kwh is not None:
        data["TRANSFORMER_PEAK_PRICE_PER_KWH"] = repr(tariff.peak_price_per_kwh)
    return data


def settings_hash(data: Mapping[str, str]) -> str:
    encoded = json.dumps(dict(sorted(data.items())), separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def settings_configmap(pipeline: Pipeline, spec: EnergyPipelineSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": settings_configmap_name(pipeline.name),
            "namespace": pipeline.namespace,
            "labels": labels(pipeline),
            "ownerReferences": [owner_reference(pipeline)],
        },
        "data": service_settings(spec),
    }


def kafka_topic_resource_name(pipeline: str, role: str) -> str:
    """A Kubernetes name for a KafkaTopic (the Kafka name goes in ``spec.topicName``)."""
    name = f"{pipeline}-{role.replace('_', '-')}".lower()
    return re.sub(r"[^a-z0-9.-]", "-", name)[:253].strip("-.")


def kafka_topic(
    pipeline: Pipeline, cluster: str, role: str, topic: TopicSettings
) -> dict[str, Any]:
    return {
        "apiVersion": f"{STRIMZI_GROUP}/{STRIMZI_VERSION}",
        "kind": "KafkaTopic",
        "metadata": {
            "name": kafka_topic_resource_name(pipeline.name, role),
            "namespace": pipeline.namespace,
            "labels": {STRIMZI_CLUSTER_LABEL: cluster, **labels(pipeline)},
            "ownerReferences": [owner_reference(pipeline)],
        },
        "spec": {
            "topicName": topic.name,
            "partitions": topic.partitions,
            "replicas": topic.replicas,
            "config": dict(topic.config),
        },
    }


def kafka_topic_state(resource: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether Strimzi reports the KafkaTopic ``Ready=True``, and its message if not."""
    conditions = (resource.get("status") or {}).get("conditions") or []
    for condition in conditions:
        if condition.get("type") == "Ready":
            if condition.get("status") == "True":
                return True, ""
            return False, str(condition.get("message") or condition.get("reason") or "not ready")
    return False, "waiting for the Topic Operator"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Condition:
    type: str
    ok: bool
    reason: str
    message: str = ""


def merge_conditions(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Condition], generation: int
) -> list[dict[str, Any]]:
    """Kubernetes-style conditions; ``lastTransitionTime`` moves only on a change."""
    before = {c.get("type"): c for c in previous}
    merged = []
    for condition in current:
        status = "True" if condition.ok else "False"
        old = before.get(condition.type)
        changed = old is None or old.get("status") != status
        merged.append(
            {
                "type": condition.type,
                "status": status,
                "reason": condition.reason,
                "message": condition.message,
                "observedGeneration": generation,
                "lastTransitionTime": now() if changed else old.get("lastTransitionTime", now()),  # type: ignore[union-attr]
            }
        )
    return merged


def conflicting_topics(
    mine: EnergyPipelineSpec, me: Mapping[str, Any], others: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """(topic, other pipeline) pairs where another pipeline on the same Kafka has the
    better claim to one of our topics: the later pipeline is the one that gives way.

    "Earlier" is the one that already manages its topics (they are in its status);
    between two that do not (or both do), the older one, then the name, decides.
    """
    my_kafka = mine.kafka.cluster or mine.kafka.bootstrap_servers
    my_topics = {t.name for t in topics_of(mine).values()}
    my_claim = _claim(me)
    clashes = []
    for other in others:
        if other["metadata"].get("uid") == me["metadata"].get("uid"):
            continue
        if other["metadata"].get("deletionTimestamp"):
            continue
        try:
            spec = EnergyPipelineSpec.model_validate(other.get("spec") or {})
        except ValueError:
            continue
        if (spec.kafka.cluster or spec.kafka.bootstrap_servers) != my_kafka:
            continue
        if _claim(other) >= my_claim:
            continue
        who = f"{other['metadata']['namespace']}/{other['metadata']['name']}"
        for topic in topics_of(spec).values():
            if topic.name in my_topics:
                clashes.append((topic.name, who))
    return sorted(clashes)


def _claim(body: Mapping[str, Any]) -> tuple[int, str, str, str]:
    """Smaller is the better claim."""
    meta = body["metadata"]
    manages = bool((body.get("status") or {}).get("topics"))
    return (
        0 if manages else 1,
        str(meta.get("creationTimestamp", "")),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
    )
