"""The operator's I/O edges: Kubernetes objects, Kafka topics (Admin API or Strimzi)
and ksqlDB. Each function does one thing and reports what it did or found."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from energy_ksql.client import KsqlClient, KsqlError, apply_plan, plan_against
from energy_ksql.plan import Plan
from energy_ksql.render import render_statements
from energy_operator.api import (
    GROUP,
    PIPELINE_LABEL,
    PLURAL,
    SETTINGS_HASH_ANNOTATION,
    STRIMZI_GROUP,
    STRIMZI_VERSION,
    VERSION,
)
from energy_operator.resources import (
    Pipeline,
    kafka_topic,
    kafka_topic_resource_name,
    kafka_topic_state,
    settings_configmap,
    settings_hash,
    topics_of,
)
from energy_operator.settings import OperatorSettings
from energy_pipeline.kafka import admin_client
from energy_pipeline.settings import ServiceSettings
from energy_pipeline.spec import EnergyPipelineSpec, SecretRef
from energy_pipeline.topics import TopicResult, delete_topics, ensure_topics, existing_partitions

log = logging.getLogger("energy_operator")


class DependencyUnavailable(Exception):
    """Kafka, ksqlDB or a Secret cannot be reached or read now: try again later."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class TopicsOutcome:
    ready: bool
    message: str
    topics: list[dict[str, Any]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)


# -- Secrets ---------------------------------------------------------------------------


def read_credentials(namespace: str, ref: SecretRef | None) -> tuple[str, str] | None:
    """``username`` and ``password`` of a Secret in the pipeline's namespace."""
    if ref is None:
        return None
    try:
        secret = k8s.CoreV1Api().read_namespaced_secret(ref.name, namespace)
    except ApiException as error:
        raise DependencyUnavailable(
            "SecretUnreadable", f"Secret {namespace}/{ref.name}: {error.reason}"
        ) from None
    data = secret.data or {}
    try:
        return (
            base64.b64decode(data["username"]).decode(),
            base64.b64decode(data["password"]).decode(),
        )
    except KeyError as missing:
        raise DependencyUnavailable(
            "SecretIncomplete", f"Secret {namespace}/{ref.name} has no key {missing}"
        ) from None


def kafka_settings(namespace: str, spec: EnergyPipelineSpec) -> ServiceSettings:
    credentials = read_credentials(namespace, spec.kafka.auth_secret_ref)
    if credentials is None:
        return ServiceSettings(bootstrap_servers=spec.kafka.bootstrap_servers)
    return ServiceSettings(
        bootstrap_servers=spec.kafka.bootstrap_servers,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=credentials[0],
        sasl_password=credentials[1],
    )


# -- Topics through the Kafka Admin API ----------------------------------------------


def ensure_topics_admin(
    pipeline: Pipeline, spec: EnergyPipelineSpec, settings: OperatorSettings
) -> TopicsOutcome:
    admin = admin_client(kafka_settings(pipeline.namespace, spec))
    wanted = [topic.to_topic_spec() for topic in topics_of(spec).values()]
    try:
        results = ensure_topics(admin, wanted, timeout=settings.kafka_timeout_seconds)
    except KafkaException as error:
        raise DependencyUnavailable(
            "KafkaUnreachable", f"Kafka at {spec.kafka.bootstrap_servers}: {error.args[0]}"
        ) from None
    return _topics_outcome(results)


def _topics_outcome(results: list[TopicResult]) -> TopicsOutcome:
    problems = [f"{r.name}: {r.message}" for r in results if not r.ok]
    return TopicsOutcome(
        ready=not problems,
        message="; ".join(problems) or f"{len(results)} topics exist",
        topics=[
            {"name": r.name, "partitions": r.partitions, "state": r.outcome.value} for r in results
        ],
        created=[r.name for r in results if r.outcome.value == "created"],
    )


def missing_topics_admin(
    namespace: str, spec: EnergyPipelineSpec, settings: OperatorSettings
) -> list[str]:
    admin = admin_client(kafka_settings(namespace, spec))
    try:
        present = existing_partitions(admin, timeout=settings.kafka_timeout_seconds)
    except KafkaException as error:
        raise DependencyUnavailable("KafkaUnreachable", str(error.args[0])) from None
    return [t.name for t in topics_of(spec).values() if t.name not in present]


def delete_topics_admin(
    namespace: str, spec: EnergyPipelineSpec, settings: OperatorSettings
) -> list[str]:
    admin = admin_client(kafka_settings(namespace, spec))
    try:
        return delete_topics(
            admin,
            [t.name for t in topics_of(spec).values()],
            timeout=settings.kafka_timeout_seconds,
        )
    except KafkaException as error:
        raise DependencyUnavailable("KafkaUnreachable", str(error.args[0])) from None


# -- Topics through Strimzi KafkaTopic resources -------------------------------------


def ensure_topics_strimzi(pipeline: Pipeline, spec: EnergyPipelineSpec) -> TopicsOutcome:
    """Create or update one KafkaTopic per topic; ready when Strimzi says so."""
    api = k8s.CustomObjectsApi()
    cluster = spec.kafka.cluster or ""
    problems, topics, created = [], [], []
    for role, topic in topics_of(spec).items():
        wanted = kafka_topic(pipeline, cluster, role, topic)
        name = wanted["metadata"]["name"]
        try:
            current = api.get_namespaced_custom_object(
                STRIMZI_GROUP, STRIMZI_VERSION, pipeline.namespace, "kafkatopics", name
            )
        except ApiException as error:
            if error.status != 404:
                raise
            current = api.create_namespaced_custom_object(
                STRIMZI_GROUP, STRIMZI_VERSION, pipeline.namespace, "kafkatopics", wanted
            )
            created.append(topic.name)
        else:
            if current.get("spec") != wanted["spec"] or _labels_differ(current, wanted):
                current = api.patch_namespaced_custom_object(
                    STRIMZI_GROUP,
                    STRIMZI_VERSION,
                    pipeline.namespace,
                    "kafkatopics",
                    name,
                    {"metadata": {"labels": wanted["metadata"]["labels"]}, "spec": wanted["spec"]},
                )
        ready, message = kafka_topic_state(current)
        topics.append(
            {
                "name": topic.name,
                "partitions": topic.partitions,
                "kafkaTopic": name,
                "state": "ready" if ready else "pending",
            }
        )
        if not ready:
            problems.append(f"KafkaTopic {name}: {message}")
    return TopicsOutcome(
        not problems, "; ".join(problems) or "all KafkaTopics are Ready", topics, created
    )


def _labels_differ(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    have = current.get("metadata", {}).get("labels") or {}
    return any(have.get(k) != v for k, v in wanted["metadata"]["labels"].items())


def missing_topics_strimzi(pipeline: Pipeline, spec: EnergyPipelineSpec) -> list[str]:
    api = k8s.CustomObjectsApi()
    missing = []
    for role, topic in topics_of(spec).items():
        try:
            api.get_namespaced_custom_object(
                STRIMZI_GROUP,
                STRIMZI_VERSION,
                pipeline.namespace,
                "kafkatopics",
                kafka_topic_resource_name(pipeline.name, role),
            )
        except ApiException as error:
            if error.status != 404:
                raise
            missing.append(topic.name)
    return missing


def release_topics_strimzi(pipeline: Pipeline, spec: EnergyPipelineSpec, delete: bool) -> None:
    """On deletion: delete the KafkaTopics (Strimzi then deletes the topics), or keep
    them by removing our owner reference so that garbage collection leaves them."""
    api = k8s.CustomObjectsApi()
    for role in topics_of(spec):
        name = kafka_topic_resource_name(pipeline.name, role)
        try:
            if delete:
                api.delete_namespaced_custom_object(
                    STRIMZI_GROUP, STRIMZI_VERSION, pipeline.namespace, "kafkatopics", name
                )
            else:
                api.patch_namespaced_custom_object(
                    STRIMZI_GROUP,
                    STRIMZI_VERSION,
                    pipeline.namespace,
                    "kafkatopics",
                    name,
                    {"metadata": {"ownerReferences": None}},
                )
        except ApiException as error:
            if error.status != 404:
                raise


# -- ksqlDB ---------------------------------------------------------------------------


def ksql_client(namespace: str, spec: EnergyPipelineSpec, settings: OperatorSettings) -> KsqlClient:
    return KsqlClient(
        spec.ksql.url,
        auth=read_credentials(namespace, spec.ksql.auth_secret_ref),
        timeout=settings.ksql_timeout_seconds,
        ready_timeout=settings.ksql_timeout_seconds,
    )


def _plan(ksql: KsqlClient, spec: EnergyPipelineSpec, managed: list[str], delete: bool) -> Plan:
    return plan_against(
        ksql,
        render_statements(spec),
        delete=delete,
        delete_topics=delete,
        previously_managed=managed,
    )


def ksql_plan(
    namespace: str,
    spec: EnergyPipelineSpec,
    settings: OperatorSettings,
    managed: list[str],
    delete: bool = False,
) -> Plan:
    """What applying the spec would change (for drift checks); nothing is sent."""
    with ksql_client(namespace, spec, settings) as ksql:
        try:
            return _plan(ksql, spec, managed, delete)
        except KsqlError as error:
            raise _ksql_unavailable(spec, error) from None


def ksql_apply(
    namespace: str,
    spec: EnergyPipelineSpec,
    settings: OperatorSettings,
    managed: list[str],
    delete: bool = False,
) -> list[str]:
    """Plan and run the plan with one client (one Secret read); the statements sent,
    as one line each."""
    with ksql_client(namespace, spec, settings) as ksql:
        try:
            results = apply_plan(ksql, _plan(ksql, spec, managed, delete))
        except KsqlError as error:
            raise _ksql_unavailable(spec, error) from None
    return [f"{r.step.action.value} {r.step.kind.lower()} {r.step.name}" for r in results]


def _ksql_unavailable(spec: EnergyPipelineSpec, error: KsqlError) -> DependencyUnavailable:
    code = getattr(error, "error_code", None)
    reason = "KsqlUnavailable" if code in (None, 50302, 50303) else "KsqlError"
    return DependencyUnavailable(reason, f"ksqlDB at {spec.ksql.url}: {error}")


# -- The settings ConfigMap and the Deployments that read it -------------------------


def publish_settings(pipeline: Pipeline, spec: EnergyPipelineSpec) -> tuple[str, bool]:
    """Create or update the settings ConfigMap; its hash, and whether it changed."""
    wanted = settings_configmap(pipeline, spec)
    core = k8s.CoreV1Api()
    name = wanted["metadata"]["name"]
    try:
        current = core.read_namespaced_config_map(name, pipeline.namespace)
    except ApiException as error:
        if error.status != 404:
            raise
        core.create_namespaced_config_map(pipeline.namespace, wanted)
        return settings_hash(wanted["data"]), True
    if (current.data or {}) == wanted["data"]:
        return settings_hash(wanted["data"]), False
    # Replace the data wholesale: keys the pipeline no longer sets must go.
    core.patch_namespaced_config_map(
        name, pipeline.namespace, [{"op": "replace", "path": "/data", "value": wanted["data"]}]
    )
    return settings_hash(wanted["data"]), True


def configmap_matches(pipeline: Pipeline, spec: EnergyPipelineSpec) -> bool:
    wanted = settings_configmap(pipeline, spec)
    try:
        current = k8s.CoreV1Api().read_namespaced_config_map(
            wanted["metadata"]["name"], pipeline.namespace
        )
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return bool((current.data or {}) == wanted["data"])


def roll_deployments(pipeline: Pipeline, digest: str) -> list[str]:
    """Set the settings hash on the pod template of the pipeline's Deployments; the
    names of those that had another (Kubernetes then rolls their pods)."""
    apps = k8s.AppsV1Api()
    rolled = []
    deployments = apps.list_namespaced_deployment(
        pipeline.namespace, label_selector=f"{PIPELINE_LABEL}={pipeline.name}"
    )
    for deployment in deployments.items:
        annotations = deployment.spec.template.metadata.annotations or {}
        if annotations.get(SETTINGS_HASH_ANNOTATION) != digest:
            apps.patch_namespaced_deployment(
                deployment.metadata.name,
                pipeline.namespace,
                {
                    "spec": {
                        "template": {
                            "metadata": {"annotations": {SETTINGS_HASH_ANNOTATION: digest}}
                        }
                    }
                },
            )
            rolled.append(deployment.metadata.name)
    return rolled


# -- The EnergyPipeline resources themselves -----------------------------------------


def list_pipelines() -> list[dict[str, Any]]:
    items = k8s.CustomObjectsApi().list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    return list(items)


def patch_status(pipeline: Pipeline, status: Mapping[str, Any]) -> None:
    try:
        k8s.CustomObjectsApi().patch_namespaced_custom_object_status(
            GROUP, VERSION, pipeline.namespace, PLURAL, pipeline.name, {"status": dict(status)}
        )
    except ApiException as error:
        if error.status != 404:  # deleted meanwhile: nothing to report on
            raise
