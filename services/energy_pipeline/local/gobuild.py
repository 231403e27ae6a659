"""Go programs the tests need, built from released Go modules once and cached.

The recipes are small wrapper modules under ``tools/`` in the repository (a
``go.mod`` and a committed ``go.sum`` each): ``tools/controlplane`` for
kube-apiserver and etcd, ``tools/helm`` for helm. :func:`ensure_built` runs
``go build -o ... <package>`` in such a module the first time and keeps the binary
under ``~/.cache/energy-pipeline/go-bin/<name>-<version>-<digest>/<name>``; the
digest covers the module's go.mod and go.sum, the package and the linker flags, so
changing a recipe builds again and nothing else does. Go's own build and module
caches (``GOCACHE``, ``GOMODCACHE``) make a second build of the same sources fast.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from energy_pipeline.local.broker import CACHE_ROOT

log = logging.getLogger(__name__)

KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.7.0"
HELM_VERSION = "v3.21.4"
# The k8s.io modules helm is built with (tools/helm/go.sum): the Kubernetes version
# `helm template` and `helm lint` assume when no cluster is asked.
HELM_KUBE_VERSION = (1, 36)


class GoBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class GoTool:
    """One main package of a wrapper module under ``tools/``."""

    name: str
    module: str
    package: str
    version: str
    ldflags: tuple[str, ...] = field(default=())


def _version_flags(package: str, values: dict[str, str]) -> tuple[str, ...]:
    return tuple(f"-X {package}.{key}={value}" for key, value in values.items())


def _kube_version_flags(version: str) -> tuple[str, ...]:
    major, minor = version.removeprefix("v").split(".")[:2]
    return _version_flags(
        "k8s.io/component-base/version",
        {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"},
    )


KUBE_APISERVER = GoTool(
    name="kube-apiserver",
    module="controlplane",
    package="k8s.io/kubernetes/cmd/kube-apiserver",
    version=KUBERNETES_VERSION,
    ldflags=_kube_version_flags(KUBERNETES_VERSION),
)
ETCD = GoTool(
    name="etcd",
    module="controlplane",
    package="go.etcd.io/etcd/server/v3",
    version=ETCD_VERSION,
)
HELM = GoTool(
    name="helm",
    module="helm",
    package="helm.sh/helm/v3/cmd/helm",
    version=HELM_VERSION,
    ldflags=(
        *_version_flags("helm.sh/helm/v3/internal/version", {"version": HELM_VERSION}),
        *(
            flag
            for package in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules")
            for flag in _version_flags(
                package,
                {
                    "k8sVersionMajor": str(HELM_KUBE_VERSION[0]),
                    "k8sVersionMinor": str(HELM_KUBE_VERSION[1]),
                },
            )
        ),
    ),
)


def tools_dir() -> Path:
    """The repository's ``tools/`` folder (``ENERGY_PIPELINE_TOOLS`` overrides it)."""
    override = os.environ.get("ENERGY_PIPELINE_TOOLS")
    if override:
        return Path(override)
    # services/energy_pipeline/local/gobuild.py -> the repository root
    return Path(__file__).resolve().parents[3] / "tools"


def module_dir(tool: GoTool) -> Path:
    folder = tools_dir() / tool.module
    if not (folder / "go.mod").exists() or not (folder / "go.sum").exists():
        raise GoBuildError(
            f"{folder} has no go.mod and go.sum: {tool.name} is built from the repository's "
            "tools/ folder, so run from a checkout (or set ENERGY_PIPELINE_TOOLS)"
        )
    return folder


def recipe_digest(tool: GoTool) -> str:
    folder = module_dir(tool)
    digest = hashlib.sha256()
    for part in (
        (folder / "go.mod").read_bytes(),
        (folder / "go.sum").read_bytes(),
        tool.package.encode(),
        " ".join(tool.ldflags).encode(),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:12]


def binary_path(tool: GoTool) -> Path:
    """Where the cached binary of ``tool`` is, built or not."""
    folder = f"{tool.name}-{tool.version}-{recipe_digest(tool)}"
    return CACHE_ROOT / "go-bin" / folder / tool.name


def go_binary() -> str:
    go = shutil.which("go")
    if go is None:
        raise GoBuildError(
            "go is not installed: kube-apiserver, etcd and helm are built from Go modules "
            "once: install Go 1.26 or newer (an older Go from 1.21 on fetches the 1.26 "
            "toolchain from the Go module proxy by itself)"
        )
    return go


def ensure_built(tool: GoTool, timeout: float = 3600.0) -> Path:
    """The path of ``tool``'s binary, built into the cache first if it is missing."""
    target = binary_path(tool)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two test sessions may ask at once: one builds, the other waits for it.
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        _build(tool, target, timeout)
    return target


def _build(tool: GoTool, target: Path, timeout: float) -> None:
    go = go_binary()
    folder = module_dir(tool)
    log.info(
        "building %s %s from Go modules into %s (the first build takes minutes; "
        "later ones use the cache)",
        tool.name,
        tool.version,
        target,
    )
    staging = target.with_name(f"{tool.name}.partial")
    staging.unlink(missing_ok=True)
    command = [go, "build", "-trimpath", "-o", str(staging)]
    if tool.ldflags:
        command.append("-ldflags=" + " ".join(tool.ldflags))
    command.append(tool.package)
    started = time.monotonic()
    try:
        result = subprocess.run(  # noqa: S603 - fixed argument list
            command,
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise GoBuildError(f"building {tool.name} took longer than {timeout:.0f}s") from exc
    if result.returncode != 0:
        output = result.stdout[-3000:] + result.stderr[-5000:]
        raise GoBuildError(f"go build of {tool.package} failed in {folder}:\n{output}")
    os.replace(staging, target)
    log.info("built %s in %.0fs", tool.name, time.monotonic() - started)
