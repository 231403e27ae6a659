"""Session fixtures: a real kube-apiserver + etcd, and helm, for the whole test run.

The control plane is the project's own (energy_pipeline.local.controlplane) on
free ports of 127.0.0.1 in a temporary folder, stopped by PID when the session
ends. ``CONTROL_PLANE_KUBECONFIG`` may instead name the admin kubeconfig of one
already running (``make apiserver-up`` writes ``build/kubeconfig``). kube-apiserver,
etcd and helm are built from Go modules the first time (minutes), then cached.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from energy_pipeline.local.broker import free_port
from energy_pipeline.local.controlplane import (
    ControlPlane,
    api_client,
    serviceaccount_kubeconfig,
)
from energy_pipeline.local.gobuild import (
    ETCD,
    HELM,
    KUBE_APISERVER,
    GoTool,
    binary_path,
    ensure_built,
)


class ControlPlaneUnderTest:
    """The API server the tests use; ``plane`` is None when it was given from outside."""

    def __init__(self, kubeconfig: Path, plane: ControlPlane | None) -> None:
        self.kubeconfig = kubeconfig
        self.plane = plane

    def api_client(self) -> ApiClient:
        """A new ``kubernetes.client.ApiClient`` as the admin; close it (``with``) after use."""
        return api_client(self.kubeconfig)

    def namespace(self, prefix: str, labels: dict[str, str] | None = None) -> str:
        """A fresh namespace for one test (no controller deletes namespaces here)."""
        from kubernetes import client

        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        with self.api_client() as admin:
            client.CoreV1Api(admin).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
            )
        return name

    def serviceaccount_kubeconfig(self, namespace: str, name: str, path: Path) -> Path:
        """A kubeconfig authenticating as that ServiceAccount (created if missing)."""
        return serviceaccount_kubeconfig(self.kubeconfig, namespace, name, path)


def announce_build(config: pytest.Config, *tools: GoTool) -> None:
    """Say so on the terminal, past pytest's capture, when a build of minutes is due."""
    missing = [tool.name for tool in tools if not binary_path(tool).exists()]
    if not missing:
        return
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(
            f"\nbuilding {', '.join(missing)} from Go modules once: several minutes the "
            "first time, cached under ~/.cache/energy-pipeline/go-bin afterwards",
            file=sys.stderr,
            flush=True,
        )


@pytest.fixture(scope="session")
def control_plane(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlaneUnderTest]:
    given = os.environ.get("CONTROL_PLANE_KUBECONFIG")
    if given:
        yield ControlPlaneUnderTest(Path(given), None)
        return
    workdir = Path(tmp_path_factory.mktemp("controlplane"))
    plane = ControlPlane(workdir, free_port(), free_port(), free_port())
    announce_build(pytestconfig, ETCD, KUBE_APISERVER)
    plane.start()
    try:
        yield ControlPlaneUnderTest(plane.kubeconfig, plane)
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def helm_binary(pytestconfig: pytest.Config) -> Path:
    """The helm v3 binary, built from its Go module the first time."""
    announce_build(pytestconfig, HELM)
    return ensure_built(HELM)
