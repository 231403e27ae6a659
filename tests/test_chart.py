"""The Helm chart: lint, render, offline schemas, the real API server, Pod Security, RBAC.

helm is the real binary (built from its Go module once, ``helm_binary``); manifests are
validated offline against the Kubernetes JSON schemas (kubernetes-validate, strict) and
the EnergyPipeline CRD's own schema; then applied, server-side, to the real
kube-apiserver of ``control_plane``: as a dry run for every scenario, and for real in a
namespace where Pod Security enforces (and warns about) the restricted level.
"""

from __future__ import annotations

import re
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from energy_pipeline.spec import spec_from_manifest

from chart_helpers import (
    CHART,
    CRD_FILE,
    EXAMPLES,
    KIND_DIR,
    ROOT,
    SCENARIOS,
    TEST_CRDS,
    Kube,
    by_kind,
    copy_chart,
    helm,
    load_yaml_documents,
    pod_specs,
    render,
    rendered_text,
    values_args,
)

if TYPE_CHECKING:
    from controlplane_fixtures import ControlPlaneUnderTest

pytestmark = pytest.mark.chart

# The schemas kubernetes-validate ships for the Kubernetes minor of the API server.
SCHEMA_VERSION = "1.37.0"
# Kinds no Kubernetes schema covers: the CRDs validate them (the EnergyPipeline's
# offline, all of them on the API server).
CUSTOM_KINDS = {
    "EnergyPipeline",
    "Kafka",
    "KafkaNodePool",
    "ServiceMonitor",
    "PodMonitor",
    "PrometheusRule",
}
PROJECT_IMAGES = {
    "operator": "energy-pipeline/energy-operator",
    "producer": "energy-pipeline/energy-producer",
    "transformer": "energy-pipeline/energy-transformer",
}
CONSOLE_SCRIPTS = {
    "operator": "energy-operator",
    "producer": "energy-producer",
    "transformer": "energy-transformer",
}
# What the pods bind their metrics and probes to.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a value to compare, not a bind
SETTINGS_KEYS = {"KAFKA_BOOTSTRAP_SERVERS", "PRODUCER_TOPIC", "TRANSFORMER_INPUT_TOPIC"}


@pytest.fixture(scope="module")
def defaults(helm_binary: Path) -> list[dict[str, Any]]:
    return render(helm_binary)


@pytest.fixture(scope="module")
def everything(helm_binary: Path) -> list[dict[str, Any]]:
    return render(helm_binary, SCENARIOS["ci/monitoring-values.yaml"])


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    assert CRD_FILE.exists(), f"{CRD_FILE} is missing (the operator's generated CRD)"
    document: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return document


def crd_validator(crd: dict[str, Any]) -> jsonschema.Draft4Validator:
    """The EnergyPipeline CRD's openAPIV3Schema as a JSON Schema (OpenAPI 3.0 is draft 4-ish)."""
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return jsonschema.Draft4Validator(version["schema"]["openAPIV3Schema"])


# ------------------------------------------------------------------ helm lint, template


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(helm_binary: Path, scenario: str) -> None:
    result = helm(helm_binary, "lint", "--strict", str(CHART), *values_args(SCENARIOS[scenario]))
    assert "0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_manifests_validate_offline(
    helm_binary: Path, crd: dict[str, Any], scenario: str
) -> None:
    manifests = render(helm_binary, SCENARIOS[scenario])
    assert manifests, "the chart rendered nothing"
    pipeline_schema = crd_validator(crd)
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        if manifest["kind"] in CUSTOM_KINDS:
            if manifest["kind"] == "EnergyPipeline":
                pipeline_schema.validate(manifest)
                spec_from_manifest(manifest)  # the operator's own model agrees
            continue
        try:
            kubernetes_validate.validate(manifest, SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            raise AssertionError(f"{scenario}: {name}: {path}: {error.message}") from None
        except kubernetes_validate.SchemaNotFoundError as error:
            raise AssertionError(f"{scenario}: {name}: {error.message}") from None


def test_values_schema_rejects_misspelled_keys_and_bad_types(helm_binary: Path) -> None:
    cases = {
        "producr.replicas=2": "additional properties 'producr' not allowed",
        "producer.replica=2": "additional properties 'replica' not allowed",
        "monitoring.serviceMonitor.enable=true": "additional properties 'enable' not allowed",
        "producer.replicas=two": "/producer/replicas",
        "operator.image.tag=latest": "/operator/image/tag",
        "pipeline.spec.deletionPolicy=Keep": "/pipeline/spec/deletionPolicy",
    }
    for setting, message in cases.items():
        for command in ("template", "lint"):
            args = [command, str(CHART)] if command == "lint" else [command, "x", str(CHART)]
            result = helm(helm_binary, *args, "--set", setting, check=False)
            assert result.returncode != 0, f"helm {command} accepted {setting}"
            assert message in result.stdout + result.stderr, (setting, result.stderr)


# ------------------------------------------------------------------ what the chart renders


def test_every_pod_runs_restricted(helm_binary: Path, everything: list[dict[str, Any]]) -> None:
    specs = pod_specs(everything)
    assert {
        "energy-pipeline-operator",
        "energy-pipeline-producer",
        "energy-pipeline-transformer",
        "energy-pipeline-ksqldb",
        "energy-pipeline-test-metrics",
    } <= set(specs)
    image_user = dockerfile_user()
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert isinstance(pod["runAsUser"], int) and pod["runAsUser"] > 0, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])
            assert container["imagePullPolicy"] == "IfNotPresent"
            repository, _, tag = container["image"].rpartition(":")
            assert tag and tag != "latest", container["image"]
            if repository in PROJECT_IMAGES.values():
                assert tag == "0.1.0"
                assert (pod["runAsUser"], pod["runAsGroup"]) == image_user, name
                mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
                assert name.endswith("test-metrics") or "/tmp" in mounts, name


def test_operator_deployment(defaults: list[dict[str, Any]]) -> None:
    deployment = by_kind(defaults, "Deployment")["energy-pipeline-operator"]
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "energy-pipeline-operator"
    (container,) = pod["containers"]
    assert container["image"] == "energy-pipeline/energy-operator:0.1.0"
    assert container["args"] == ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"OPERATOR_METRICS_HOST": ALL_INTERFACES, "OPERATOR_METRICS_PORT": "9090"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    service = by_kind(defaults, "Service")["energy-pipeline-operator"]
    assert service["spec"]["ports"][0]["port"] == 9090


# The operator's permissions: exactly these, nothing else.
OPERATOR_RULES = {
    # Framework
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("", "namespaces"): {"list", "watch"},
    ("", "events"): {"create"},
    ("events.k8s.io", "events"): {"create"},
    ("energy-pipeline.github.io", "energypipelines"): {"get", "list", "watch", "patch", "update"},
    ("energy-pipeline.github.io", "energypipelines/status"): {"get", "patch", "update"},
    # Application
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "update"},
    ("apps", "deployments"): {"get", "list", "watch", "patch"},
    ("kafka.strimzi.io", "kafkatopics"): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "update",
        "delete",
    },
    ("kafka.strimzi.io", "kafkatopics/status"): {"get"},
    ("", "secrets"): {"get"},
}


def test_operator_cluster_role_is_the_least_it_needs(
    helm_binary: Path, defaults: list[dict[str, Any]]
) -> None:
    role = by_kind(defaults, "ClusterRole")["energy-pipeline-operator"]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no names, no URLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == OPERATOR_RULES
    binding = by_kind(defaults, "ClusterRoleBinding")["energy-pipeline-operator"]
    assert binding["roleRef"]["name"] == "energy-pipeline-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "energy-pipeline-operator", "namespace": "energy"}
    ]
    text = rendered_text(helm_binary, "templates/operator-clusterrole.yaml")
    framework, application = text.index("# Framework:"), text.index("# Application:")
    assert framework < text.index("customresourcedefinitions") < application
    assert application < text.index("configmaps")


@pytest.mark.parametrize("component", ["producer", "transformer"])
def test_pipeline_workloads_read_the_settings_config_map(
    defaults: list[dict[str, Any]], component: str
) -> None:
    port = {"producer": 8000, "transformer": 8001}[component]
    prefix = component.upper()
    deployment = by_kind(defaults, "Deployment")[f"energy-pipeline-{component}"]
    assert deployment["metadata"]["labels"]["energy-pipeline.github.io/pipeline"] == (
        "energy-pipeline"
    )
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["energy-pipeline.github.io/pipeline"] == (
        "energy-pipeline"
    )
    (container,) = template["spec"]["containers"]
    assert container["image"] == f"energy-pipeline/energy-{component}:0.1.0"
    # Not optional: the pod waits until the operator has published the settings.
    assert container["envFrom"] == [{"configMapRef": {"name": "energy-pipeline-settings"}}]
    env = {e["name"]: e for e in container["env"]}
    assert env[f"{prefix}_METRICS_HOST"]["value"] == ALL_INTERFACES
    assert env[f"{prefix}_METRICS_PORT"]["value"] == str(port)
    assert not SETTINGS_KEYS & set(env), "the settings come from the ConfigMap"
    if component == "transformer":
        assert env["TRANSFORMER_INSTANCE_ID"]["valueFrom"] == {
            "fieldRef": {"fieldPath": "metadata.name"}
        }
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert template["spec"]["automountServiceAccountToken"] is False
    service = by_kind(defaults, "Service")[f"energy-pipeline-{component}"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert "helm.sh/chart" not in deployment["spec"]["selector"]["matchLabels"]


def test_values_set_replicas_images_and_resources(helm_binary: Path) -> None:
    manifests = render(
        helm_binary,
        sets={
            "transformer.replicas": "3",
            "imageRegistry": "registry.example.com/team",
            "producer.image.tag": "0.1.0-rc1",
            "producer.resources.limits.memory": "1Gi",
        },
    )
    deployments = by_kind(manifests, "Deployment")
    assert deployments["energy-pipeline-transformer"]["spec"]["replicas"] == 3
    (producer,) = deployments["energy-pipeline-producer"]["spec"]["template"]["spec"]["containers"]
    expected = "registry.example.com/team/energy-pipeline/energy-producer:0.1.0-rc1"
    assert producer["image"] == expected
    assert producer["resources"]["limits"]["memory"] == "1Gi"
    # ksqlDB's image is not the project's: the registry is not put in front of it.
    ksqldb = deployments["energy-pipeline-ksqldb"]["spec"]["template"]["spec"]["containers"][0]
    assert ksqldb["image"].startswith("confluentinc/cp-ksqldb-server:")


def test_ksqldb_fits_a_single_broker_cluster(defaults: list[dict[str, Any]]) -> None:
    deployment = by_kind(defaults, "Deployment")["energy-pipeline-ksqldb"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["KSQL_BOOTSTRAP_SERVERS"] == "energy-kafka-kafka-bootstrap:9092"
    assert env["KSQL_LISTENERS"] == "http://0.0.0.0:8088"
    assert env["KSQL_KSQL_INTERNAL_TOPIC_REPLICAS"] == "1"
    assert env["KSQL_KSQL_STREAMS_REPLICATION_FACTOR"] == "1"
    assert env["KSQL_KSQL_SERVICE_ID"]
    service = by_kind(defaults, "Service")["energy-pipeline-ksqldb"]
    assert service["spec"]["ports"][0]["port"] == 8088
    # The image renders its configuration into /etc/ksqldb: an emptyDir seeded by the
    # init container, since the root filesystem is read-only.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/etc/ksqldb": "config", "/tmp": "tmp"}


def test_kafka_is_one_kraft_node_with_the_topic_operator(defaults: list[dict[str, Any]]) -> None:
    kafka = by_kind(defaults, "Kafka")["energy-kafka"]
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert kafka["spec"]["entityOperator"] == {"topicOperator": {}}
    assert "zookeeper" not in kafka["spec"]
    listeners = {(x["name"], x["port"], x["tls"]) for x in kafka["spec"]["kafka"]["listeners"]}
    assert listeners == {("plain", 9092, False)}
    config = kafka["spec"]["kafka"]["config"]
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "default.replication.factor",
    ):
        assert config[key] == 1, key
    (pool,) = by_kind(defaults, "KafkaNodePool").values()
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "energy-kafka"
    assert pool["spec"]["replicas"] == 1
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]


def test_default_pipeline_points_at_the_charts_kafka_and_ksqldb(
    defaults: list[dict[str, Any]],
) -> None:
    pipeline = by_kind(defaults, "EnergyPipeline")["energy-pipeline"]
    spec = spec_from_manifest(pipeline)
    assert spec.kafka.topic_management == "strimzi"
    assert spec.kafka.cluster == "energy-kafka"
    assert spec.kafka.bootstrap_servers == "energy-kafka-kafka-bootstrap:9092"
    services = by_kind(defaults, "Service")
    assert spec.ksql.url == "http://energy-pipeline-ksqldb:8088"
    assert services["energy-pipeline-ksqldb"]["spec"]["ports"][0]["port"] == 8088


@pytest.mark.parametrize("scenario", ["kind-building-b"])
def test_second_building_release_has_only_its_workloads(helm_binary: Path, scenario: str) -> None:
    manifests = render(helm_binary, SCENARIOS[scenario])
    kinds = {m["kind"] for m in manifests}
    assert kinds == {"Deployment", "Service", "Pod"}
    deployments = by_kind(manifests, "Deployment")
    assert set(deployments) == {"energy-pipeline-producer", "energy-pipeline-transformer"}
    for deployment in deployments.values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": "building-b-settings"}}]
        labels = deployment["metadata"]["labels"]
        assert labels["energy-pipeline.github.io/pipeline"] == "building-b"


def test_monitoring_is_off_by_default_and_on_for_kind(
    helm_binary: Path, defaults: list[dict[str, Any]]
) -> None:
    monitoring = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy", "ConfigMap"}
    assert not monitoring & {m["kind"] for m in defaults}
    kind = render(helm_binary, SCENARIOS["kind"])
    monitored = {f"energy-pipeline-{c}" for c in ("operator", "producer", "transformer")}
    assert set(by_kind(kind, "ServiceMonitor")) == monitored
    for monitor in by_kind(kind, "ServiceMonitor").values():
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        selected = monitor["spec"]["selector"]["matchLabels"]
        services = [
            s
            for s in by_kind(kind, "Service").values()
            if selected.items() <= s["metadata"]["labels"].items()
        ]
        assert len(services) == 1, monitor["metadata"]["name"]


def test_dashboards_and_alert_rules_come_from_the_files(helm_binary: Path, tmp_path: Path) -> None:
    sets = {
        "monitoring.grafanaDashboards.enabled": "true",
        "monitoring.prometheusRule.enabled": "true",
    }
    # Without the files: nothing, and nothing broken.
    bare = copy_chart(tmp_path / "bare")
    for path in list((bare / "files").glob("dashboards/*.json")) + [
        bare / "files" / "alerts.rules.yaml"
    ]:
        path.unlink(missing_ok=True)
    manifests = render(helm_binary, sets=sets, chart=bare)
    assert not {"ConfigMap", "PrometheusRule"} & {m["kind"] for m in manifests}
    # With a placeholder dashboard and one rule group: one ConfigMap, one PrometheusRule.
    placeholder = copy_chart(tmp_path / "placeholder")
    (placeholder / "files" / "dashboards").mkdir(parents=True, exist_ok=True)
    for path in (placeholder / "files" / "dashboards").glob("*.json"):
        path.unlink()
    (placeholder / "files" / "dashboards" / "Tiny_Board.json").write_text(
        '{"title": "tiny", "panels": []}\n'
    )
    rules = {"groups": [{"name": "energy", "rules": [{"alert": "Up", "expr": "up == 0"}]}]}
    (placeholder / "files" / "alerts.rules.yaml").write_text(yaml.safe_dump(rules))
    manifests = render(helm_binary, sets=sets, chart=placeholder)
    (dashboard,) = by_kind(manifests, "ConfigMap").values()
    assert dashboard["metadata"]["name"] == "energy-pipeline-dashboard-tiny-board"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert yaml.safe_load(dashboard["data"]["Tiny_Board.json"]) == {"title": "tiny", "panels": []}
    (rule,) = by_kind(manifests, "PrometheusRule").values()
    assert rule["spec"] == rules
    # The chart's own files, whatever they are now: one ConfigMap per dashboard.
    manifests = render(helm_binary, sets=sets)
    dashboards = sorted((CHART / "files" / "dashboards").glob("*.json"))
    assert len(by_kind(manifests, "ConfigMap")) == len(dashboards)


def test_network_policies_admit_the_scrapers_and_the_operator(
    everything: list[dict[str, Any]],
) -> None:
    policies = by_kind(everything, "NetworkPolicy")
    assert set(policies) == {
        f"energy-pipeline-{c}" for c in ("operator", "producer", "transformer", "ksqldb")
    }
    ksqldb = policies["energy-pipeline-ksqldb"]["spec"]["ingress"][0]
    sources = [peer.get("podSelector", {}).get("matchLabels", {}) for peer in ksqldb["from"]]
    assert {"app.kubernetes.io/component": "operator"}.items() <= sources[0].items()


def test_helm_test_pod_checks_every_metrics_endpoint(defaults: list[dict[str, Any]]) -> None:
    pod = by_kind(defaults, "Pod")["energy-pipeline-test-metrics"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    urls = container["args"][1:]
    assert urls == [
        "http://energy-pipeline-operator:9090/metrics",
        "http://energy-pipeline-producer:8000/metrics",
        "http://energy-pipeline-transformer:8001/metrics",
    ]
    compile(container["args"][0], "helm-test", "exec")  # the script is Python


# ------------------------------------------------------------------ images, kind, examples


def dockerfile_stages() -> dict[str, list[str]]:
    """The Dockerfile's instructions (continuation lines joined), by stage name."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = match.group(2) or match.group(1)
            stages[current] = [line]
        elif current:
            stages[current].append(line)
    return stages


def dockerfile_user() -> tuple[int, int]:
    (user,) = [i for i in dockerfile_stages()["runtime"] if i.startswith("USER ")]
    uid, gid = user.split()[1].split(":")
    return int(uid), int(gid)


def test_images_are_multi_stage_non_root_and_run_the_console_scripts(
    everything: list[dict[str, Any]],
) -> None:
    stages = dockerfile_stages()
    text = (ROOT / "Dockerfile").read_text()
    python = re.search(r"ARG PYTHON_VERSION=(\S+)", text)
    assert python is not None and python.group(1) == "3.11"
    assert stages["build"][0] == "FROM python:${PYTHON_VERSION}-slim AS build"
    assert stages["runtime"][0] == "FROM python:${PYTHON_VERSION}-slim AS runtime"
    assert any("pip wheel" in i and "./services/fastpath" in i for i in stages["build"])
    assert any(i.startswith("COPY --from=rust ") for i in stages["build"])
    assert any("--no-index" in i and "/wheels" in i for i in stages["runtime"])
    assert any(i.startswith("ENV PYTHONDONTWRITEBYTECODE=1") for i in stages["runtime"])
    assert dockerfile_user() == (10001, 10001)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for component, script in CONSOLE_SCRIPTS.items():
        assert stages[component][0] == f"FROM runtime AS {component}"
        assert f'ENTRYPOINT ["{script}"]' in stages[component]
        assert script in scripts, f"pyproject.toml has no console script {script}"
    # The chart runs those images.
    images = {c["image"] for spec in pod_specs(everything).values() for c in spec["containers"]}
    assert {f"{repository}:0.1.0" for repository in PROJECT_IMAGES.values()} <= images


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [x for x in (ROOT / ".dockerignore").read_text().splitlines() if x and x[0] != "#"]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!services/", "!operator/", "!ksql/"} <= set(lines)


def test_kind_maps_the_node_ports_on_localhost(helm_binary: Path) -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    mappings = [m for node in config["nodes"] for m in node.get("extraPortMappings", [])]
    assert all(m["listenAddress"] == "127.0.0.1" for m in mappings)
    by_container = {m["containerPort"]: m["hostPort"] for m in mappings}
    stack = yaml.safe_load((KIND_DIR / "kube-prometheus-stack-values.yaml").read_text())
    ksqldb = by_kind(render(helm_binary, SCENARIOS["kind"]), "Service")["energy-pipeline-ksqldb"]
    assert ksqldb["spec"]["type"] == "NodePort"
    node_ports = {
        "grafana": stack["grafana"]["service"]["nodePort"],
        "prometheus": stack["prometheus"]["service"]["nodePort"],
        "ksqldb": ksqldb["spec"]["ports"][0]["nodePort"],
    }
    assert set(by_container) == set(node_ports.values())
    assert by_container[node_ports["ksqldb"]] == 8088
    assert by_container[node_ports["grafana"]] == 3000
    assert by_container[node_ports["prometheus"]] == 9090


def example_manifests() -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(EXAMPLES.glob("*.yaml"))}


def test_examples_are_valid_pipelines_of_two_buildings(crd: dict[str, Any]) -> None:
    examples = example_manifests()
    assert len(examples) >= 2
    validator = crd_validator(crd)
    modes, topics, ksql_names = set(), [], []
    for name, manifest in examples.items():
        assert manifest["apiVersion"] == "energy-pipeline.github.io/v1alpha1", name
        validator.validate(manifest)
        spec = spec_from_manifest(manifest)
        modes.add(spec.kafka.topic_management)
        topics += [
            t.name
            for t in (
                spec.topics.raw,
                spec.topics.processed,
                spec.topics.alerts,
                spec.topics.dead_letter,
            )
        ]
        ksql_names += [
            n.upper()
            for n in (
                spec.ksql.stream_name,
                spec.ksql.totals_table_name,
                spec.ksql.windowed_table_name,
            )
        ]
    assert modes == {"admin", "strimzi"}
    # They share one Kafka and one ksqlDB: nothing of one building may be the other's.
    assert len(set(topics)) == len(topics)
    assert len(set(ksql_names)) == len(ksql_names)


# ------------------------------------------------------------------ the real API server


@pytest.fixture(scope="module")
def kube(control_plane: ControlPlaneUnderTest, crd: dict[str, Any]) -> Iterator[Kube]:
    """The API server, with the EnergyPipeline CRD and the minimal test CRDs installed."""
    with Kube(control_plane.kubeconfig) as api:
        crds = [crd]
        for path in sorted(TEST_CRDS.glob("*.yaml")):
            crds += load_yaml_documents(path)
        api.install_crds(crds)
        yield api


@pytest.mark.k8s
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_server_side_dry_run_apply_of_the_whole_chart(
    helm_binary: Path, kube: Kube, scenario: str
) -> None:
    namespace = f"chart-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(namespace)
    manifests = render(helm_binary, SCENARIOS[scenario], namespace=namespace)
    for manifest in manifests:
        answer = kube.apply(manifest, namespace, dry_run=True)
        assert answer.body["kind"] == manifest["kind"]
        assert answer.body["metadata"]["name"] == manifest["metadata"]["name"]


@pytest.mark.k8s
def test_examples_apply_on_the_server(kube: Kube) -> None:
    namespace = f"examples-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(namespace)
    for name, manifest in example_manifests().items():
        answer = kube.apply(manifest, namespace)
        # The CRD's defaults may fill in fields; the pipeline they describe is the same.
        assert spec_from_manifest(answer.body) == spec_from_manifest(manifest), name


@pytest.fixture(scope="module")
def restricted_release(
    helm_binary: Path, kube: Kube
) -> tuple[str, list[dict[str, Any]], dict[str, list[str]]]:
    """Every scenario's objects applied for real in a namespace enforcing "restricted"."""
    namespace = f"restricted-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(
        namespace,
        {
            "pod-security.kubernetes.io/enforce": "restricted",
            # Enforcement looks at Pods only; warn also looks at workloads' templates.
            "pod-security.kubernetes.io/warn": "restricted",
        },
    )
    manifests = render(helm_binary, SCENARIOS["ci/monitoring-values.yaml"], namespace=namespace)
    warnings = {}
    for manifest in manifests:
        answer = kube.apply(manifest, namespace)
        warnings[f"{manifest['kind']}/{manifest['metadata']['name']}"] = answer.warnings
    return namespace, manifests, warnings


@pytest.mark.k8s
def test_workloads_draw_no_pod_security_warnings(
    kube: Kube, restricted_release: tuple[str, list[dict[str, Any]], dict[str, list[str]]]
) -> None:
    namespace, manifests, warnings = restricted_release
    assert {name: w for name, w in warnings.items() if w} == {}
    # No controller runs here to make the Deployments' pods: make them as Pods, which the
    # restricted level must admit without a warning.
    for manifest in manifests:
        if manifest["kind"] != "Deployment":
            continue
        template = manifest["spec"]["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{manifest['metadata']['name']}-pod",
                "labels": template["metadata"]["labels"],
            },
            "spec": template["spec"],
        }
        answer = kube.create(pod, namespace)
        assert answer.warnings == [], manifest["metadata"]["name"]


@pytest.mark.k8s
def test_pod_security_would_refuse_a_pod_without_the_charts_settings(
    kube: Kube, restricted_release: tuple[str, list[dict[str, Any]], dict[str, list[str]]]
) -> None:
    """The check above can fail: the same pod without its security context is refused."""
    namespace, manifests, _ = restricted_release
    deployment = by_kind(manifests, "Deployment")["energy-pipeline-producer"]
    spec = dict(deployment["spec"]["template"]["spec"])
    spec.pop("securityContext")
    spec["containers"] = [
        {k: v for k, v in c.items() if k != "securityContext"} for c in spec["containers"]
    ]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unsafe"}, "spec": spec}
    with pytest.raises(AssertionError, match='violates PodSecurity \\\\"restricted'):
        kube.create(pod, namespace)


def operator_can(
    kube: Kube, release_namespace: str, verb: str, group: str, resource: str, namespace: str
) -> bool:
    """Whether the operator's ServiceAccount may do ``verb`` on ``resource`` in ``namespace``."""
    plural, _, subresource = resource.partition("/")
    attributes = {"namespace": namespace, "verb": verb, "group": group, "resource": plural}
    if subresource:
        attributes["subresource"] = subresource
    account = f"system:serviceaccount:{release_namespace}:energy-pipeline-operator"
    groups = [
        "system:serviceaccounts",
        f"system:serviceaccounts:{release_namespace}",
        "system:authenticated",
    ]
    return kube.allowed(account, groups, attributes)


@pytest.mark.k8s
def test_operator_is_allowed_what_it_needs_and_denied_the_rest(
    kube: Kube, restricted_release: tuple[str, list[dict[str, Any]], dict[str, list[str]]]
) -> None:
    namespace = restricted_release[0]
    other = "default"  # the ClusterRole reaches every namespace
    # The authorizer sees the new binding through a watch: wait for the first grant.
    deadline = time.monotonic() + 30
    while not operator_can(kube, namespace, "get", "", "configmaps", namespace):
        assert time.monotonic() < deadline, "the operator's binding never took effect"
        time.sleep(0.2)
    for (group, resource), verbs in OPERATOR_RULES.items():
        for verb in verbs:
            for where in (namespace, other):
                assert operator_can(kube, namespace, verb, group, resource, where), (
                    verb,
                    group,
                    resource,
                    where,
                )
    denied = [
        ("delete", "apps", "deployments"),
        ("create", "apps", "deployments"),
        ("list", "", "secrets"),
        ("watch", "", "secrets"),
        ("create", "", "secrets"),
        ("delete", "", "configmaps"),
        ("list", "", "pods"),
        ("delete", "energy-pipeline.github.io", "energypipelines"),
        ("create", "energy-pipeline.github.io", "energypipelines"),
        ("update", "kafka.strimzi.io", "kafkatopics/status"),
        ("create", "kafka.strimzi.io", "kafkas"),
        ("create", "rbac.authorization.k8s.io", "rolebindings"),
    ]
    for verb, group, resource in denied:
        for where in (namespace, other):
            assert not operator_can(kube, namespace, verb, group, resource, where), (
                verb,
                group,
                resource,
                where,
            )


@pytest.mark.k8s
def test_helm_install_prints_the_next_steps_and_uninstall_removes_the_release(
    helm_binary: Path, kube: Kube, control_plane: ControlPlaneUnderTest
) -> None:
    """``helm install`` itself (as ``make deploy`` does, without --wait: no pods run here)."""
    namespace = release = f"install-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(namespace)
    cluster = ["--kubeconfig", str(control_plane.kubeconfig), "--namespace", namespace]
    result = helm(
        helm_binary,
        "upgrade",
        "--install",
        release,
        str(CHART),
        *cluster,
        *values_args(SCENARIOS["kind"]),
    )
    notes = result.stdout.split("NOTES:", 1)[1]
    for text in (
        f"kubectl -n {namespace} wait kafka/energy-kafka",
        "get energypipelines",
        "energy-ksql query -f pipeline.yaml --url http://127.0.0.1:8088",
        f"helm test {release}",
        f"helm uninstall {release} -n {namespace}",
    ):
        assert text in notes, text
    pipeline = {
        "apiVersion": "energy-pipeline.github.io/v1alpha1",
        "kind": "EnergyPipeline",
        "metadata": {"name": "energy-pipeline"},
    }
    operator = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{release}-energy-pipeline-operator"},
    }
    for installed in (pipeline, operator):
        assert kube.http.get(kube.object_path(installed, namespace)).status_code == 200
    helm(helm_binary, "uninstall", release, "--wait", *cluster)
    assert kube.http.get(kube.object_path(pipeline, namespace)).status_code == 404
