"""Running the operator in tests: the CRD installed on the real kube-apiserver, the
operator as a child process, and waiting for what it reports.

No kubelet or controllers run on the test control plane: nothing here waits for
pods or for garbage collection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from energy_operator.api import API_VERSION, GROUP, KIND, PLURAL, VERSION
from energy_pipeline.local.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
CRD_FILE = ROOT / "deploy/helm/energy-pipeline/crds/energypipelines.energy-pipeline.github.io.yaml"

T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 60, every: float = 0.3
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except ApiException as error:
            last = error
        else:
            if last:
                return cast(T, last)
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def install_crd(api_client: k8s.ApiClient, document: Mapping[str, Any]) -> None:
    """Create or replace a CRD and wait until it is established."""
    extensions = k8s.ApiextensionsV1Api(api_client)
    name = document["metadata"]["name"]
    try:
        current = extensions.read_custom_resource_definition(name)
        body = dict(document)
        body["metadata"] = {
            **document["metadata"],
            "resourceVersion": current.metadata.resource_version,
        }
        extensions.replace_custom_resource_definition(name, body)
    except ApiException as error:
        if error.status != 404:
            raise
        extensions.create_custom_resource_definition(dict(document))

    def established() -> bool:
        conditions = extensions.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(f"CRD {name} established", established, timeout=30)


def install_pipeline_crd(api_client: k8s.ApiClient) -> None:
    install_crd(api_client, yaml.safe_load(CRD_FILE.read_text()))


def pipeline_body(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": dict(spec)}


class Pipelines:
    """EnergyPipelines of one namespace."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str) -> None:
        self.api = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.core = k8s.CoreV1Api(api_client)

    def create(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        return dict(
            self.api.create_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                pipeline_body(name, spec),
                field_validation="Strict",
            )
        )

    def get(self, name: str) -> dict[str, Any]:
        return dict(
            self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        )

    def patch_spec(self, name: str, spec: Mapping[str, Any]) -> None:
        self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": dict(spec)}
        )

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def gone(self, name: str) -> bool:
        try:
            self.get(name)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        for condition in self.status(name).get("conditions") or []:
            if condition["type"] == kind:
                return dict(condition)
        return {}

    def wait_phase(
        self, name: str, phase: str, generation: int | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            if status.get("phase") != phase:
                return None
            if generation is not None and status.get("observedGeneration") != generation:
                return None
            return status

        return wait_for(f"{self.namespace}/{name} phase {phase}", reached, timeout)

    def event_reasons(self, name: str) -> list[str]:
        events = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return [event.reason for event in events.items]


class OperatorProcess:
    """``energy-operator`` as a child process, its output in a log file."""

    def __init__(
        self,
        kubeconfig: Path,
        log_dir: Path,
        *,
        namespaces: tuple[str, ...] = (),
        **settings: str,
    ) -> None:
        """Watch ``namespaces`` (kopf globs allowed), or every namespace if empty."""
        self.metrics_port = free_port()
        self.liveness_port = free_port()
        self.log_path = log_dir / f"operator-{uuid.uuid4().hex[:6]}.log"
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PYTHONUNBUFFERED": "1",
            "OPERATOR_METRICS_PORT": str(self.metrics_port),
            **settings,
        }
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "energy_operator.cli",
                    *([f"--namespace={n}" for n in namespaces] or ["--all-namespaces"]),
                    f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM and wait; the exit code (0 for a clean stop)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if code != 0:
            print(f"operator exited with {code}:\n{self.log()[-4000:]}")
        return code
