"""The operator's plain functions: what it writes, decided from data alone."""

from __future__ import annotations

from typing import Any

import pytest

from energy_operator.crd import render_crd
from energy_operator.resources import (
    Condition,
    Pipeline,
    conflicting_topics,
    kafka_topic,
    kafka_topic_resource_name,
    kafka_topic_state,
    merge_conditions,
    service_settings,
    settings_configmap,
    settings_hash,
)
from energy_pipeline.spec import EnergyPipelineSpec

from operator_helpers import CRD_FILE

pytestmark = pytest.mark.unit

PIPELINE = Pipeline("building-a", "energy", "uid-1", 3)


def body(
    name: str, created: str, spec: dict[str, Any], status: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "energy",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
        },
        "spec": spec,
        "status": status or {},
    }


def test_the_committed_crd_is_generated_from_the_spec_model() -> None:
    assert CRD_FILE.read_text() == render_crd(), "run: python -m energy_operator.crd > " + str(
        CRD_FILE
    )


def test_service_settings_follow_the_spec() -> None:
    spec = EnergyPipelineSpec.model_validate(
        {
            "kafka": {"bootstrapServers": "k:9092"},
            "highConsumptionThreshold": 90,
            "areaThresholds": {"lobby": 80, "cafetería": 120},
            "topics": {"raw": {"name": "in"}},
            "tariff": {"pricePerKwh": 0.2, "peakPricePerKwh": 0.4, "currency": "USD"},
        }
    )
    data = service_settings(spec)
    assert data["KAFKA_BOOTSTRAP_SERVERS"] == "k:9092"
    assert data["PRODUCER_TOPIC"] == data["TRANSFORMER_INPUT_TOPIC"] == "in"
    assert data["TRANSFORMER_PROCESSED_TOPIC"] == "processed_iot_data"
    assert data["TRANSFORMER_THRESHOLD"] == "90.0"
    assert data["TRANSFORMER_AREA_THRESHOLDS"] == "cafetería=120.0,lobby=80.0"
    assert data["TRANSFORMER_PEAK_PRICE_PER_KWH"] == "0.4"
    assert data["TRANSFORMER_CURRENCY"] == "USD"
    no_peak = service_settings(EnergyPipelineSpec())
    assert "TRANSFORMER_PEAK_PRICE_PER_KWH" not in no_peak


def test_settings_hash_changes_with_the_settings_only() -> None:
    data = service_settings(EnergyPipelineSpec())
    assert settings_hash(data) == settings_hash(dict(reversed(list(data.items()))))
    assert settings_hash(data) != settings_hash({**data, "TRANSFORMER_THRESHOLD": "101.0"})


def test_configmap_is_owned_by_the_pipeline() -> None:
    configmap = settings_configmap(PIPELINE, EnergyPipelineSpec())
    assert configmap["metadata"]["name"] == "building-a-settings"
    [owner] = configmap["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "energy-pipeline.github.io/v1alpha1",
        "kind": "EnergyPipeline",
        "name": "building-a",
        "uid": "uid-1",
        "controller": True,
    }


def test_kafka_topic_resources() -> None:
    spec = EnergyPipelineSpec()
    topic = kafka_topic(PIPELINE, "energy-kafka", "dead_letter", spec.topics.dead_letter)
    assert topic["metadata"]["name"] == "building-a-dead-letter"
    assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "energy-kafka"
    assert topic["spec"]["topicName"] == "iot_sensor_data_dlq"
    assert kafka_topic_resource_name("Big_Building", "raw") == "big-building-raw"
    assert kafka_topic_state({}) == (False, "waiting for the Topic Operator")
    assert kafka_topic_state(
        {"status": {"conditions": [{"type": "Ready", "status": "False", "message": "quota"}]}}
    ) == (False, "quota")
    assert kafka_topic_state({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}) == (
        True,
        "",
    )


def test_conditions_keep_their_transition_time_until_they_change() -> None:
    first = merge_conditions([], [Condition("Ready", False, "Waiting")], 1)
    first[0]["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    same = merge_conditions(first, [Condition("Ready", False, "StillWaiting")], 2)
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["observedGeneration"] == 2 and same[0]["reason"] == "StillWaiting"
    changed = merge_conditions(same, [Condition("Ready", True, "Reconciled")], 2)
    assert changed[0]["lastTransitionTime"] != "2026-01-01T00:00:00Z"
    assert changed[0]["status"] == "True"


def test_the_later_claim_on_a_topic_gives_way() -> None:
    def topics(prefix: str) -> dict[str, Any]:
        """Topics of their own, but for the raw topic, which both claim."""
        return {
            "topics": {
                "raw": {"name": "shared"},
                "processed": {"name": f"{prefix}.p"},
                "alerts": {"name": f"{prefix}.a"},
                "deadLetter": {"name": f"{prefix}.d"},
            }
        }

    shared = topics("x")
    older = body("a", "2026-01-01T00:00:00Z", topics("a"))
    newer = body("b", "2026-01-01T00:00:05Z", topics("b"))
    spec_of = EnergyPipelineSpec.model_validate
    assert conflicting_topics(spec_of(newer["spec"]), newer, [older, newer]) == [
        ("shared", "energy/a")
    ]
    assert conflicting_topics(spec_of(older["spec"]), older, [older, newer]) == []
    # Created in the same second: the one that already manages the topic keeps it.
    owner = body("z", "2026-01-01T00:00:00Z", topics("z"), {"topics": [{"name": "shared"}]})
    newcomer = body("a", "2026-01-01T00:00:00Z", topics("a"))
    assert conflicting_topics(spec_of(newcomer["spec"]), newcomer, [owner]) == [
        ("shared", "energy/z")
    ]
    assert conflicting_topics(spec_of(owner["spec"]), owner, [newcomer]) == []
    # Another Kafka cluster: no conflict.
    elsewhere = body(
        "c", "2025-01-01T00:00:00Z", {**shared, "kafka": {"bootstrapServers": "other:9092"}}
    )
    assert conflicting_topics(spec_of(newer["spec"]), newer, [elsewhere]) == []
