"""Helpers for the chart tests: render with helm, and talk to the API server over HTTP.

The API client here is a small one on httpx rather than ``kubernetes.client``: the
tests need server-side apply of arbitrary kinds (including custom ones), the
``Warning`` headers of each answer (Pod Security warnings come that way), and
discovery of kinds right after their CRDs were created.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from energy_pipeline.local.gobuild import KUBERNETES_VERSION

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "energy-pipeline"
CRD_FILE = CHART / "crds" / "energypipelines.energy-pipeline.github.io.yaml"
TEST_CRDS = Path(__file__).resolve().parent / "crds"
KIND_DIR = ROOT / "deploy" / "kind"
EXAMPLES = ROOT / "examples"
RELEASE = "energy-pipeline"

# Every values scenario the chart must render, lint and apply: the defaults, the CI
# scenarios and the values the kind path uses (make deploy, make demo).
SCENARIOS: dict[str, list[Path]] = {
    "defaults": [],
    **{f"ci/{p.name}": [p] for p in sorted((CHART / "ci").glob("*-values.yaml"))},
    "kind": [KIND_DIR / "energy-pipeline-values.yaml"],
    "kind-building-b": [KIND_DIR / "building-b-values.yaml"],
}


def helm(binary: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(binary), *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def values_args(values: list[Path], sets: dict[str, str] | None = None) -> list[str]:
    args: list[str] = []
    for path in values:
        args += ["--values", str(path)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


def render(
    binary: Path,
    values: list[Path] | None = None,
    sets: dict[str, str] | None = None,
    namespace: str = "energy",
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    """The manifests ``helm template`` renders (test hooks included), as dicts."""
    result = helm(
        binary,
        "template",
        RELEASE,
        str(chart),
        "--namespace",
        namespace,
        "--kube-version",
        KUBERNETES_VERSION,
        *values_args(values or [], sets),
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def rendered_text(binary: Path, template: str, values: list[Path] | None = None) -> str:
    """One template's rendered text, comments included."""
    return helm(
        binary, "template", RELEASE, str(CHART), "--show-only", template, *values_args(values or [])
    ).stdout


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_specs(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod spec the manifests hold: Deployments' templates and bare Pods."""
    specs = {}
    for manifest in manifests:
        if manifest["kind"] == "Deployment":
            specs[manifest["metadata"]["name"]] = manifest["spec"]["template"]["spec"]
        elif manifest["kind"] == "Pod":
            specs[manifest["metadata"]["name"]] = manifest["spec"]
    return specs


def copy_chart(destination: Path) -> Path:
    """A copy of the chart to change files in (the chart itself is never touched)."""
    target = destination / "energy-pipeline"
    shutil.copytree(CHART, target)
    return target


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# ---------------------------------------------------------------- API server over HTTP


class ApiError(AssertionError):
    def __init__(self, what: str, response: httpx.Response) -> None:
        super().__init__(f"{what}: HTTP {response.status_code}: {response.text[:2000]}")
        self.status = response.status_code
        self.body = response.text


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Resource:
    path: str  # /api/v1 or /apis/<group>/<version>
    plural: str
    namespaced: bool


class Kube:
    """The API server of a kubeconfig (token user, CA data), as the tests need it."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        self.http = httpx.Client(
            base_url=cluster["server"],
            verify=context,
            headers={"Authorization": f"Bearer {user['token']}"},
            timeout=30.0,
        )
        self._resources: dict[tuple[str, str], Resource] = {}

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @staticmethod
    def group_path(api_version: str) -> str:
        return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"

    def resource(self, api_version: str, kind: str, timeout: float = 30.0) -> Resource:
        """The resource of a kind, by discovery (retried: new CRDs take a moment)."""
        key = (api_version, kind)
        if key in self._resources:
            return self._resources[key]
        path = self.group_path(api_version)
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.get(path)
            if response.status_code == 200:
                for item in response.json()["resources"]:
                    if item["kind"] == kind and "/" not in item["name"]:
                        found = Resource(path, item["name"], item["namespaced"])
                        self._resources[key] = found
                        return found
            if time.monotonic() > deadline:
                raise AssertionError(f"the API server serves no {kind} in {api_version}")
            time.sleep(0.2)

    def object_path(self, manifest: dict[str, Any], namespace: str | None) -> str:
        resource = self.resource(manifest["apiVersion"], manifest["kind"])
        name = manifest["metadata"]["name"]
        if resource.namespaced:
            ns = manifest["metadata"].get("namespace") or namespace
            assert ns, f"{manifest['kind']}/{name} is namespaced and has no namespace"
            return f"{resource.path}/namespaces/{ns}/{resource.plural}/{name}"
        return f"{resource.path}/{resource.plural}/{name}"

    def apply(
        self, manifest: dict[str, Any], namespace: str | None = None, dry_run: bool = False
    ) -> Answer:
        """Server-side apply of one manifest; raises ApiError unless it is accepted."""
        params = {"fieldManager": "energy-pipeline-tests", "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        response = self.http.patch(
            self.object_path(manifest, namespace),
            params=params,
            content=json.dumps(manifest),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        what = f"apply {manifest['kind']}/{manifest['metadata']['name']}"
        if response.status_code not in (200, 201):
            raise ApiError(what, response)
        return Answer(response.status_code, response.json(), warnings_of(response))

    def create(self, manifest: dict[str, Any], namespace: str) -> Answer:
        """POST (create) one namespaced manifest; raises ApiError unless it is created."""
        resource = self.resource(manifest["apiVersion"], manifest["kind"])
        response = self.http.post(
            f"{resource.path}/namespaces/{namespace}/{resource.plural}", json=manifest
        )
        if response.status_code != 201:
            raise ApiError(f"create {manifest['kind']}/{manifest['metadata']['name']}", response)
        return Answer(response.status_code, response.json(), warnings_of(response))

    def install_crds(self, manifests: list[dict[str, Any]], timeout: float = 60.0) -> None:
        """Apply CRDs for real and wait until each is Established."""
        for manifest in manifests:
            self.apply(manifest)
        deadline = time.monotonic() + timeout
        for manifest in manifests:
            path = self.object_path(manifest, None)
            while True:
                conditions = self.http.get(path).json().get("status", {}).get("conditions", [])
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"CRD {manifest['metadata']['name']} not Established")
                time.sleep(0.1)

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        metadata: dict[str, Any] = {"name": name}
        if labels:
            metadata["labels"] = labels
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})

    def allowed(self, user: str, groups: list[str], attributes: dict[str, str]) -> bool:
        """Whether RBAC lets ``user`` do what ``attributes`` say (a SubjectAccessReview)."""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": groups, "resourceAttributes": attributes},
        }
        response = self.http.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review)
        if response.status_code != 201:
            raise ApiError("SubjectAccessReview", response)
        return bool(response.json()["status"].get("allowed", False))


def warnings_of(response: httpx.Response) -> list[str]:
    """The texts of the ``Warning: 299 - "text"`` headers of an answer."""
    texts = []
    for header in response.headers.get_list("warning"):
        for part in header.split(", 299 "):
            text = part.removeprefix("299 ").removeprefix("- ").strip()
            texts.append(text.strip('"'))
    return texts
