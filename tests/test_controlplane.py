"""The local control plane itself: real kube-apiserver + etcd, RBAC, Pod Security; helm."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import yaml
from kubernetes import client

from energy_pipeline.local.controlplane import api_client
from energy_pipeline.local.gobuild import HELM_VERSION, KUBERNETES_VERSION

if TYPE_CHECKING:
    from controlplane_fixtures import ControlPlaneUnderTest

pytestmark = pytest.mark.k8s

T = TypeVar("T")


def pod(name: str, privileged: bool = False) -> client.V1Pod:
    """A Pod with no security settings (or privileged): the restricted level refuses it."""
    context = client.V1SecurityContext(privileged=True) if privileged else None
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(name="main", image="busybox:1.37", security_context=context)
            ]
        ),
    )


def until_allowed(call: Callable[[], T], timeout: float = 30.0) -> T:
    """``call()``, retried while the API server answers 403, for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except client.ApiException as error:
            if error.status != 403 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def status_of(error: client.ApiException) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(error.body or "{}")
    return body


def test_api_server_answers_and_lists_namespaces(control_plane: ControlPlaneUnderTest) -> None:
    with control_plane.api_client() as admin:
        version = client.VersionApi(admin).get_code()
        names = {
            item.metadata.name
            for item in client.CoreV1Api(admin).list_namespace().items
            if item.metadata is not None
        }
    assert version.git_version == KUBERNETES_VERSION
    assert {"default", "kube-system", "kube-public"} <= names


def test_kubeconfig_verifies_the_server_certificate(control_plane: ControlPlaneUnderTest) -> None:
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://127.0.0.1:")
    assert "insecure-skip-tls-verify" not in cluster
    assert "BEGIN CERTIFICATE" in base64.b64decode(cluster["certificate-authority-data"]).decode()


def test_rbac_forbids_a_service_account_until_it_is_bound(
    control_plane: ControlPlaneUnderTest, tmp_path: Path
) -> None:
    namespace = control_plane.namespace("rbac")
    kubeconfig = control_plane.serviceaccount_kubeconfig(
        namespace, "reader", tmp_path / "reader.kubeconfig"
    )
    with api_client(kubeconfig) as reader:
        with pytest.raises(client.ApiException) as refused:
            client.CoreV1Api(reader).list_namespaced_pod(namespace)
        assert refused.value.status == 403
        assert f"system:serviceaccount:{namespace}:reader" in status_of(refused.value)["message"]

        with control_plane.api_client() as admin:
            rbac = client.RbacAuthorizationV1Api(admin)
            rbac.create_namespaced_role(
                namespace,
                client.V1Role(
                    metadata=client.V1ObjectMeta(name="pod-reader"),
                    rules=[
                        client.V1PolicyRule(
                            api_groups=[""], resources=["pods"], verbs=["get", "list"]
                        )
                    ],
                ),
            )
            rbac.create_namespaced_role_binding(
                namespace,
                client.V1RoleBinding(
                    metadata=client.V1ObjectMeta(name="reader-reads-pods"),
                    role_ref=client.V1RoleRef(
                        api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
                    ),
                    subjects=[
                        client.RbacV1Subject(
                            kind="ServiceAccount", name="reader", namespace=namespace
                        )
                    ],
                ),
            )
        # The authorizer sees new bindings through a watch: it may take a moment.
        pods = until_allowed(lambda: client.CoreV1Api(reader).list_namespaced_pod(namespace))
        assert pods.items == []
        # The binding is for pods only, and only in this namespace.
        with pytest.raises(client.ApiException) as still_refused:
            client.CoreV1Api(reader).list_namespaced_secret(namespace)
        assert still_refused.value.status == 403
        with pytest.raises(client.ApiException) as elsewhere:
            client.CoreV1Api(reader).list_namespaced_pod("default")
        assert elsewhere.value.status == 403


def test_restricted_pod_security_rejects_a_pod_without_security_settings(
    control_plane: ControlPlaneUnderTest,
) -> None:
    namespace = control_plane.namespace(
        "restricted", labels={"pod-security.kubernetes.io/enforce": "restricted"}
    )
    with control_plane.api_client() as admin:
        core = client.CoreV1Api(admin)
        with pytest.raises(client.ApiException) as refused:
            core.create_namespaced_pod(namespace, pod("plain"))
        assert refused.value.status == 403
        message = status_of(refused.value)["message"]
        assert 'violates PodSecurity "restricted:latest"' in message
        assert "allowPrivilegeEscalation != false" in message
        assert "runAsNonRoot != true" in message
        assert core.list_namespaced_pod(namespace).items == []


def test_baseline_namespace_refuses_privileged_and_warns_about_restricted(
    control_plane: ControlPlaneUnderTest,
) -> None:
    namespace = control_plane.namespace(
        "warned",
        labels={
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
        },
    )
    with control_plane.api_client() as admin:
        core = client.CoreV1Api(admin)
        with pytest.raises(client.ApiException) as refused:
            core.create_namespaced_pod(namespace, pod("privileged", privileged=True))
        assert refused.value.status == 403
        assert 'violates PodSecurity "baseline:latest"' in status_of(refused.value)["message"]

        created, _, headers = core.create_namespaced_pod_with_http_info(namespace, pod("plain"))
    assert created.metadata is not None
    assert created.metadata.name == "plain"
    warning = headers.get("Warning", "")
    # The header quotes its text, so the quotes inside it come escaped.
    assert "would violate PodSecurity" in warning
    assert "restricted:latest" in warning
    assert "runAsNonRoot" in warning


def test_helm_version(helm_binary: Path) -> None:
    result = subprocess.run(
        [str(helm_binary), "version", "--short"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().startswith(HELM_VERSION)


def test_helm_template_renders_a_chart(helm_binary: Path, tmp_path: Path) -> None:
    chart = tmp_path / "demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("replicas: 2\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-demo\n"
        "data:\n  replicas: {{ .Values.replicas | quote }}\n"
        "  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    lint = subprocess.run(
        [str(helm_binary), "lint", str(chart)], capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = subprocess.run(
        [str(helm_binary), "template", "one", str(chart), "--set", "replicas=3"],
        capture_output=True,
        text=True,
        check=True,
    )
    manifest = yaml.safe_load(rendered.stdout)
    assert manifest["metadata"]["name"] == "one-demo"
    assert manifest["data"]["replicas"] == "3"
    assert manifest["data"]["kube"].startswith("v1.36")
