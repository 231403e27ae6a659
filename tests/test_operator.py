"""The operator against a real kube-apiserver, a real Kafka broker and the ksqlDB REST
double (a test double, not ksqlDB: it stores statements and computes nothing).

The operator runs as a child process with the token of a ServiceAccount bound to the
ClusterRole that the Helm chart renders. No kubelet or controllers run on the test
control plane: nothing here waits for pods or garbage collection.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from energy_ksql.client import KsqlClient
from energy_ksql.double import KsqlRestDouble
from energy_operator.api import (
    GROUP,
    PIPELINE_LABEL,
    PLURAL,
    SETTINGS_HASH_ANNOTATION,
    STRIMZI_CLUSTER_LABEL,
    VERSION,
)
from energy_pipeline.local.controlplane import api_client
from energy_pipeline.local.prometheus import Prometheus, ScrapeJob
from energy_pipeline.topics import delete_topics, existing_partitions

from conftest import KafkaUnderTest
from controlplane_fixtures import ControlPlaneUnderTest
from dashboard_helpers import assert_panels_return_data, load_dashboard
from operator_helpers import (
    OperatorProcess,
    Pipelines,
    install_crd,
    install_pipeline_crd,
    pipeline_body,
    wait_for,
)

pytestmark = pytest.mark.k8s

CHART = Path(__file__).resolve().parent.parent / "deploy/helm/energy-pipeline"
OPERATOR_SETTINGS = {
    "OPERATOR_DRIFT_INTERVAL_SECONDS": "2",
    "OPERATOR_DELETION_TIMEOUT_SECONDS": "4",
    "OPERATOR_KSQL_TIMEOUT_SECONDS": "2",
    "OPERATOR_KAFKA_TIMEOUT_SECONDS": "5",
    "OPERATOR_MAX_RETRY_DELAY_SECONDS": "2",
}

# Minimal test CRDs of Strimzi's kinds (its own are not installable here); the tests
# play the Topic Operator's part by setting KafkaTopic status.conditions.
STRIMZI_CRDS = Path(__file__).resolve().parent / "crds" / "strimzi.yaml"


def kafka_topic_crd() -> dict[str, Any]:
    for document in yaml.safe_load_all(STRIMZI_CRDS.read_text()):
        if document and document["metadata"]["name"] == "kafkatopics.kafka.strimzi.io":
            return dict(document)
    raise AssertionError(f"no KafkaTopic CRD in {STRIMZI_CRDS}")


@pytest.fixture(scope="module")
def operator_kubeconfig(
    control_plane: ControlPlaneUnderTest,
    helm_binary: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A ServiceAccount bound to the chart's operator ClusterRole, as a kubeconfig."""
    namespace = control_plane.namespace("operator")
    release = f"op{uuid.uuid4().hex[:6]}"
    rendered = subprocess.run(
        [
            str(helm_binary),
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--show-only",
            "templates/operator-clusterrole.yaml",
            "--show-only",
            "templates/operator-serviceaccount.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = {d["kind"] for d in documents}
    assert {"ClusterRole", "ClusterRoleBinding", "ServiceAccount"} <= kinds
    with control_plane.api_client() as admin:
        install_pipeline_crd(admin)
        install_crd(admin, kafka_topic_crd())
        for document in documents:
            if document["kind"] == "ServiceAccount":
                k8s.CoreV1Api(admin).create_namespaced_service_account(namespace, document)
            elif document["kind"] == "ClusterRole":
                k8s.RbacAuthorizationV1Api(admin).create_cluster_role(document)
            else:
                k8s.RbacAuthorizationV1Api(admin).create_cluster_role_binding(document)
    account = next(d for d in documents if d["kind"] == "ServiceAccount")["metadata"]["name"]
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    control_plane.serviceaccount_kubeconfig(namespace, account, path)
    # RBAC reaches the authorizer through a watch: wait until the binding counts.
    with api_client(path) as operator_client:
        wait_for(
            "the operator's ClusterRole to apply",
            lambda: (
                k8s.CustomObjectsApi(operator_client).list_cluster_custom_object(
                    GROUP, VERSION, PLURAL
                )
                is not None
            ),
        )
    return path


@pytest.fixture(scope="module")
def operator(
    operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    # Only the namespaces of the `pipelines` fixture: a test may run an operator of its
    # own elsewhere, and two operators must never handle one resource.
    process = OperatorProcess(
        operator_kubeconfig,
        tmp_path_factory.mktemp("operator-logs"),
        namespaces=("pipelines-*",),
        **OPERATOR_SETTINGS,
    )
    yield process
    assert process.stop() == 0, process.log()[-3000:]


@pytest.fixture
def pipelines(control_plane: ControlPlaneUnderTest) -> Iterator[Pipelines]:
    namespace = control_plane.namespace("pipelines")
    with control_plane.api_client() as admin:
        yield Pipelines(admin, namespace)


def spec_for(
    kafka: KafkaUnderTest, double: KsqlRestDouble, prefix: str, **extra: Any
) -> dict[str, Any]:
    names = {"raw": "raw", "processed": "processed", "alerts": "alerts", "deadLetter": "dlq"}
    return {
        "kafka": {"bootstrapServers": kafka.bootstrap_servers},
        "ksql": {"url": double.url},
        "topics": {
            role: {"name": f"{prefix}.{name}", "partitions": 2 if role != "deadLetter" else 1}
            for role, name in names.items()
        },
        **extra,
    }


def changes(double: KsqlRestDouble) -> list[str]:
    """The statements that change something (LIST and DESCRIBE only read)."""
    return [s for s in double.statements() if s.split()[0].upper() in ("CREATE", "DROP")]


def unique() -> str:
    return f"b{uuid.uuid4().hex[:8]}"


# -- the CRD ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"topics": {"raw": {"name": "raw", "partitions": 0}}}, "spec.topics.raw.partitions"),
        ({"topics": {"raw": {"name": "raw", "replicas": 0}}}, "spec.topics.raw.replicas"),
        ({"highConsumptionThreshold": -1}, "spec.highConsumptionThreshold"),
        ({"topics": {"alerts": {"name": "bad topic!"}}}, "spec.topics.alerts.name"),
        ({"topics": {"alerts": {"name": "x" * 250}}}, "spec.topics.alerts.name"),
        ({"ksql": {"streamName": "x; DROP TABLE y"}}, "spec.ksql.streamName"),
        ({"ksql": {"windowedTableName": "9lives"}}, "spec.ksql.windowedTableName"),
        ({"kafka": {"topicManagement": "zookeeper"}}, "spec.kafka.topicManagement"),
        ({"deletionPolicy": "Orphan"}, "spec.deletionPolicy"),
        ({"thresholdd": 100}, "spec.thresholdd"),
        ({"kafka": {"bootstrapServer": "x:9092"}}, "spec.kafka.bootstrapServer"),
    ],
)
def test_api_server_rejects_bad_specs(
    operator_kubeconfig: Path, pipelines: Pipelines, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as raised:
        pipelines.create(unique(), spec)
    assert raised.value.status in (400, 422)
    assert field in raised.value.body


# -- admin mode ---------------------------------------------------------------------------


def test_admin_mode_pipeline_becomes_ready(
    operator: OperatorProcess, pipelines: Pipelines, kafka: KafkaUnderTest, double: KsqlRestDouble
) -> None:
    name, prefix = unique(), unique()
    pipelines.create(name, spec_for(kafka, double, prefix, highConsumptionThreshold=90))
    status = pipelines.wait_phase(name, "Ready")
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "TopicsReady": "True",
        "KsqlReady": "True",
        "Ready": "True",
    }
    assert status["observedGeneration"] == 1
    partitions = existing_partitions(kafka.admin())
    assert partitions[f"{prefix}.raw"] == 2 and partitions[f"{prefix}.dlq"] == 1
    assert {"ENERGY_READINGS", "AREA_TOTALS", "AREA_HOURLY"} <= set(double.sources)
    data = pipelines.core.read_namespaced_config_map(f"{name}-settings", pipelines.namespace).data
    assert data["TRANSFORMER_INPUT_TOPIC"] == f"{prefix}.raw"
    assert data["TRANSFORMER_THRESHOLD"] == "90.0"
    assert data["KAFKA_BOOTSTRAP_SERVERS"] == kafka.bootstrap_servers
    wait_for(
        "the Events",
        lambda: (
            {"TopicsCreated", "KsqlApplied", "SettingsPublished"}
            <= set(pipelines.event_reasons(name))
        ),
    )


def test_update_is_applied_and_status_follows_the_generation(
    operator: OperatorProcess, pipelines: Pipelines, kafka: KafkaUnderTest, double: KsqlRestDouble
) -> None:
    name, prefix = unique(), unique()
    pipelines.create(name, spec_for(kafka, double, prefix))
    pipelines.wait_phase(name, "Ready")
    # A Deployment of this pipeline (no controller runs it here): the operator rolls it.
    apps = k8s.AppsV1Api(pipelines.api.api_client)
    labels = {"app": "transformer", PIPELINE_LABEL: name}
    apps.create_namespaced_deployment(
        pipelines.namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"{name}-transformer", "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "t", "image": "example/transformer:1"}]},
                },
            },
        },
    )
    before = len(changes(double))
    pipelines.patch_spec(
        name,
        {"highConsumptionThreshold": 120, "ksql": {"url": double.url, "windowSize": "30 MINUTES"}},
    )
    status = pipelines.wait_phase(name, "Ready", generation=2)
    assert all(c["observedGeneration"] == 2 for c in status["conditions"])
    sent = changes(double)[before:]
    drops = [s for s in sent if s.upper().startswith("DROP")]
    creates = [s for s in sent if s.upper().startswith("CREATE")]
    assert drops and "AREA_HOURLY" in drops[0].upper()
    assert any("30 MINUTES" in s.upper() for s in creates)
    assert "30 MINUTES" in double.sources["AREA_HOURLY"].statement.upper()
    data = pipelines.core.read_namespaced_config_map(f"{name}-settings", pipelines.namespace).data
    assert data["TRANSFORMER_THRESHOLD"] == "120.0"
    digest = status["settings"]["hash"]
    deployment = wait_for(
        "the Deployment's settings hash",
        lambda: (
            (
                apps.read_namespaced_deployment(
                    f"{name}-transformer", pipelines.namespace
                ).spec.template.metadata.annotations
                or {}
            ).get(SETTINGS_HASH_ANNOTATION)
            == digest
        ),
    )
    assert deployment


def test_delete_policy_removes_topics_ksql_objects_and_finalizer(
    operator: OperatorProcess, pipelines: Pipelines, kafka: KafkaUnderTest, double: KsqlRestDouble
) -> None:
    name, prefix = unique(), unique()
    pipelines.create(name, spec_for(kafka, double, prefix, deletionPolicy="Delete"))
    pipelines.wait_phase(name, "Ready")
    pipelines.delete(name)
    wait_for("the pipeline to be gone", lambda: pipelines.gone(name))
    remaining = {t for t in existing_partitions(kafka.admin()) if t.startswith(prefix)}
    assert remaining == set()
    assert not {"ENERGY_READINGS", "AREA_TOTALS", "AREA_HOURLY"} & set(double.sources)


def test_retain_policy_keeps_topics_and_ksql_objects(
    operator: OperatorProcess, pipelines: Pipelines, kafka: KafkaUnderTest, double: KsqlRestDouble
) -> None:
    name, prefix = unique(), unique()
    pipelines.create(name, spec_for(kafka, double, prefix))
    pipelines.wait_phase(name, "Ready")
    pipelines.delete(name)
    wait_for("the pipeline to be gone", lambda: pipelines.gone(name))
    remaining = {t for t in existing_partitions(kafka.admin()) if t.startswith(prefix)}
    assert len(remaining) == 4
    assert {"ENERGY_READINGS", "AREA_TOTALS", "AREA_HOURLY"} <= set(double.sources)


def test_ksqldb_starting_then_ready(
    operator: OperatorProcess, pipelines: Pipelines, kafka: KafkaUnderTest, double: KsqlRestDouble
) -> None:
    double.set_starting(requests=10**6, retry_after=1)
    name = unique()
    pipelines.create(name, spec_for(kafka, double, unique()))
    condition = wait_for(
        "KsqlReady=False",
        lambda: (
            c if (c := pipelines.condition(name, "KsqlReady")).get("status") == "False" else None
        ),
    )
    assert condition["reason"] == "KsqlUnavailable"
    assert "50302" in condition["message"] or "not yet ready" in condition["message"].lower()
    assert pipelines.status(name)["phase"] == "Provisioning"
    double.set_starting(requests=0)
    pipelines.wait_phase(name, "Ready")


def test_invalid_spec_the_schema_cannot_catch_fails_permanently(
    operator: OperatorProcess, pipelines: Pipelines, kafka: KafkaUnderTest, double: KsqlRestDouble
) -> None:
    name = unique()
    spec = spec_for(kafka, double, unique())
    spec["topics"]["alerts"]["name"] = spec["topics"]["processed"]["name"]  # the same topic
    pipelines.create(name, spec)
    status = pipelines.wait_phase(name, "Failed")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec" and "distinct" in ready["message"]
    assert double.requests == []


def test_later_pipeline_claiming_a_topic_reports_a_conflict(
    operator: OperatorProcess, pipelines: Pipelines, kafka: KafkaUnderTest, double: KsqlRestDouble
) -> None:
    first, second, prefix = unique(), unique(), unique()
    pipelines.create(first, spec_for(kafka, double, prefix))
    pipelines.wait_phase(first, "Ready")
    statements = len(changes(double))
    clash = spec_for(kafka, double, unique())
    clash["topics"]["raw"]["name"] = f"{prefix}.raw"
    clash["ksql"]["streamName"] = "OTHER_READINGS"
    pipelines.create(second, clash)
    status = pipelines.wait_phase(second, "Failed")
    topics = next(c for c in status["conditions"] if c["type"] == "TopicsReady")
    assert topics["reason"] == "TopicConflict"
    assert f"{prefix}.raw" in topics["message"] and first in topics["message"]
    assert len(changes(double)) == statements  # it touched nothing
    assert f"{second}-settings" not in {
        c.metadata.name
        for c in pipelines.core.list_namespaced_config_map(pipelines.namespace).items
    }


def test_drift_is_detected_and_repaired(
    operator: OperatorProcess, pipelines: Pipelines, kafka: KafkaUnderTest, double: KsqlRestDouble
) -> None:
    name, prefix = unique(), unique()
    pipelines.create(name, spec_for(kafka, double, prefix))
    pipelines.wait_phase(name, "Ready")
    delete_topics(kafka.admin(), [f"{prefix}.alerts"])
    with KsqlClient(double.url) as someone:  # dropped by hand, behind the operator's back
        someone.execute("DROP TABLE AREA_TOTALS;")
    status = wait_for(
        "a drift repair",
        lambda: s if (s := pipelines.status(name)).get("drift", {}).get("repairs") else None,
    )
    assert "alerts" in status["drift"]["found"] and "AREA_TOTALS" in status["drift"]["found"]
    assert wait_for(
        "the topic back", lambda: f"{prefix}.alerts" in existing_partitions(kafka.admin())
    )
    assert "AREA_TOTALS" in double.sources
    wait_for("the Event", lambda: "DriftRepaired" in pipelines.event_reasons(name))


def test_deleting_with_unreachable_dependencies_gives_up_after_the_timeout(
    operator: OperatorProcess, pipelines: Pipelines, kafka: KafkaUnderTest, double: KsqlRestDouble
) -> None:
    name = unique()
    spec = spec_for(kafka, double, unique(), deletionPolicy="Delete")
    double.stop()  # nothing answers at that address any more
    pipelines.create(name, spec)
    wait_for(
        "KsqlReady=False",
        lambda: pipelines.condition(name, "KsqlReady").get("reason") == "KsqlUnavailable",
    )
    pipelines.delete(name)
    # OPERATOR_DELETION_TIMEOUT_SECONDS is 4 here (300 by default).
    wait_for("the pipeline to be gone", lambda: pipelines.gone(name), timeout=60)
    wait_for("the Event", lambda: "CleanupAbandoned" in pipelines.event_reasons(name))


# -- strimzi mode -------------------------------------------------------------------------


def test_strimzi_mode_waits_for_the_topic_operator(
    operator: OperatorProcess, pipelines: Pipelines, kafka: KafkaUnderTest, double: KsqlRestDouble
) -> None:
    name, prefix = unique(), unique()
    spec = spec_for(kafka, double, prefix)
    spec["kafka"] = {
        "bootstrapServers": kafka.bootstrap_servers,
        "cluster": "energy-kafka",
        "topicManagement": "strimzi",
    }
    created = pipelines.create(name, spec)
    objects = k8s.CustomObjectsApi(pipelines.api.api_client)

    def topics() -> list[dict[str, Any]]:
        listed = objects.list_namespaced_custom_object(
            "kafka.strimzi.io", "v1beta2", pipelines.namespace, "kafkatopics"
        )["items"]
        return [t for t in listed if t["metadata"]["labels"].get(PIPELINE_LABEL) == name]

    kafka_topics = wait_for("four KafkaTopics", lambda: t if len(t := topics()) == 4 else None)
    for topic in kafka_topics:
        assert topic["metadata"]["labels"][STRIMZI_CLUSTER_LABEL] == "energy-kafka"
        [owner] = topic["metadata"]["ownerReferences"]
        assert owner["uid"] == created["metadata"]["uid"] and owner["kind"] == "EnergyPipeline"
    assert {t["spec"]["topicName"] for t in kafka_topics} == {
        f"{prefix}.raw",
        f"{prefix}.processed",
        f"{prefix}.alerts",
        f"{prefix}.dlq",
    }
    assert pipelines.status(name).get("phase") != "Ready"
    assert changes(double) == []  # nothing before the topics are ready

    def set_ready(topic: dict[str, Any], ready: bool, message: str = "") -> None:
        objects.patch_namespaced_custom_object_status(
            "kafka.strimzi.io",
            "v1beta2",
            pipelines.namespace,
            "kafkatopics",
            topic["metadata"]["name"],
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True" if ready else "False",
                            "reason": "" if ready else "KafkaError",
                            "message": message,
                        }
                    ]
                }
            },
        )

    set_ready(kafka_topics[0], False, "Invalid replication factor")
    wait_for(
        "the Topic Operator's message in the status",
        lambda: (
            "Invalid replication "
            "factor" in pipelines.condition(name, "TopicsReady").get("message", "")
        ),
    )
    for topic in kafka_topics:
        set_ready(topic, True)
    pipelines.wait_phase(name, "Ready")
    assert {"ENERGY_READINGS", "AREA_TOTALS", "AREA_HOURLY"} <= set(double.sources)


# -- restart and RBAC ---------------------------------------------------------------------


def test_operator_restart_does_no_duplicate_work(
    operator_kubeconfig: Path,
    tmp_path: Path,
    control_plane: ControlPlaneUnderTest,
    kafka: KafkaUnderTest,
    double: KsqlRestDouble,
) -> None:
    # Operators of this test's own, in a namespace the shared one does not watch.
    namespace = control_plane.namespace("restart")
    with control_plane.api_client() as admin:
        pipelines = Pipelines(admin, namespace)
        first = OperatorProcess(
            operator_kubeconfig, tmp_path, namespaces=(namespace,), **OPERATOR_SETTINGS
        )
        try:
            name = unique()
            pipelines.create(name, spec_for(kafka, double, unique()))
            pipelines.wait_phase(name, "Ready")
            wait_for(
                "the Events",
                lambda: (
                    {"TopicsCreated", "KsqlApplied", "SettingsPublished"}
                    <= set(pipelines.event_reasons(name))
                ),
            )
        finally:
            first_exit = first.stop()
        assert first_exit == 0
        statements, events = len(changes(double)), sorted(pipelines.event_reasons(name))
        topics_created = [line for line in first.log().splitlines() if "created topic" in line]
        assert len(topics_created) == 4
        second = OperatorProcess(
            operator_kubeconfig, tmp_path, namespaces=(namespace,), **OPERATOR_SETTINGS
        )
        try:
            wait_for(
                "the restarted operator to resume the pipeline",
                lambda: "Resuming is processed" in second.log(),
                timeout=30,
            )
        finally:
            second_exit = second.stop()
        assert second_exit == 0
        assert len(changes(double)) == statements
        assert "created topic" not in second.log()
        assert sorted(pipelines.event_reasons(name)) == events
        assert pipelines.status(name)["phase"] == "Ready"


def test_operator_rbac_denies_what_it_does_not_need(
    operator_kubeconfig: Path, pipelines: Pipelines
) -> None:
    with api_client(operator_kubeconfig) as as_operator:
        core, apps = k8s.CoreV1Api(as_operator), k8s.AppsV1Api(as_operator)
        assert core.list_namespaced_config_map(pipelines.namespace) is not None
        forbidden_calls: list[Callable[[], object]] = [
            lambda: core.list_namespaced_secret(pipelines.namespace),
            lambda: apps.delete_namespaced_deployment("anything", pipelines.namespace),
            lambda: core.list_namespaced_pod(pipelines.namespace),
            lambda: core.delete_namespaced_config_map("anything", pipelines.namespace),
            lambda: k8s.CustomObjectsApi(as_operator).create_namespaced_custom_object(
                GROUP, VERSION, pipelines.namespace, PLURAL, pipeline_body("x", {})
            ),
        ]
        for forbidden in forbidden_calls:
            with pytest.raises(ApiException) as raised:
                forbidden()
            assert raised.value.status == 403


# -- the operator dashboard, against a real Prometheus -------------------------------------


@pytest.mark.prometheus
def test_every_operator_panel_returns_data(
    operator_kubeconfig: Path,
    tmp_path: Path,
    control_plane: ControlPlaneUnderTest,
    kafka: KafkaUnderTest,
    double: KsqlRestDouble,
) -> None:
    namespace = control_plane.namespace("observed")
    operator = OperatorProcess(
        operator_kubeconfig, tmp_path, namespaces=(namespace,), **OPERATOR_SETTINGS
    )
    prometheus = Prometheus(
        tmp_path / "prometheus",
        [ScrapeJob("operator", [operator.metrics_port], {"namespace": "local"})],
    ).start()
    started = time.time()
    try:
        with control_plane.api_client() as admin:
            pipelines = Pipelines(admin, namespace)
            # Every outcome: one Ready, one invalid (permanent), and one that keeps
            # retrying while its ksqlDB is starting (temporary errors, drift checks).
            ready, invalid, waiting = unique(), unique(), unique()
            pipelines.create(ready, spec_for(kafka, double, unique()))
            pipelines.wait_phase(ready, "Ready")
            bad = spec_for(kafka, double, unique())
            bad["topics"]["alerts"]["name"] = bad["topics"]["processed"]["name"]
            pipelines.create(invalid, bad)
            pipelines.wait_phase(invalid, "Failed")
            starting = KsqlRestDouble().start()
            starting.set_starting(requests=10**6)
            try:
                pipelines.create(waiting, spec_for(kafka, starting, unique()))
                wait_for(
                    "a temporary error seen by Prometheus",
                    lambda: prometheus.query(
                        'energy_operator_reconciliations_total{outcome="temporary_error"} > 0'
                    ),
                )
                wait_for(
                    "a permanent error seen by Prometheus",
                    lambda: prometheus.query(
                        'energy_operator_reconciliations_total{outcome="permanent_error"} > 0'
                    ),
                )
                phases = {
                    r["metric"]["phase"]: float(r["value"][1])
                    for r in prometheus.query("energy_operator_pipelines")
                }
                assert phases["Ready"] >= 1 and phases["Failed"] >= 1
                assert phases["Provisioning"] >= 1
                # Rates need a few scrapes in their window: look again until they have.
                board = load_dashboard("operator.json")
                deadline = time.monotonic() + 30
                while True:
                    try:
                        assert_panels_return_data(prometheus, board, started)
                        break
                    except AssertionError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(1)
            finally:
                starting.stop()
    finally:
        prometheus.stop()
        operator.stop()
