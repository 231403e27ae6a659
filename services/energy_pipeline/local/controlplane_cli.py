"""The local control plane and helm: ``python -m energy_pipeline.local.controlplane_cli <command>``.

- ``apiserver-up`` / ``apiserver-down``: etcd and kube-apiserver on 127.0.0.1 (ports from
  ``APISERVER_PORT``, default 6443, and ``ETCD_PORT``, default 2379; the etcd peer port
  from ``ETCD_PEER_PORT``, default ETCD_PORT + 1), files under ``build/controlplane``,
  an admin kubeconfig in ``build/kubeconfig``;
- ``build``: only build (or find cached) kube-apiserver, etcd and helm;
- ``helm -- ARGS``: run helm, built first if it is not cached yet;
- ``helm-path``: print where the helm binary is (building it if needed).

The first build of kube-apiserver takes several minutes; later ones come from
``~/.cache/energy-pipeline/go-bin``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from energy_pipeline.local.controlplane import ControlPlane, ControlPlaneError
from energy_pipeline.local.gobuild import (
    ETCD,
    HELM,
    KUBE_APISERVER,
    GoBuildError,
    binary_path,
    ensure_built,
)

BUILD = Path(os.environ.get("ENERGY_PIPELINE_BUILD", "build"))
WORKDIR = BUILD / "controlplane"
KUBECONFIG = BUILD / "kubeconfig"


def env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a port number, got {raw!r}") from None
    if not 1 <= port <= 65535:
        raise SystemExit(f"{name} must be between 1 and 65535, got {port}")
    return port


def local_control_plane() -> ControlPlane:
    etcd_port = env_port("ETCD_PORT", 2379)
    return ControlPlane(
        WORKDIR,
        apiserver_port=env_port("APISERVER_PORT", 6443),
        etcd_port=etcd_port,
        etcd_peer_port=env_port("ETCD_PEER_PORT", etcd_port + 1),
        kubeconfig_path=KUBECONFIG,
    )


def apiserver_up() -> ControlPlane:
    plane = local_control_plane()
    running = plane.running_pids()
    if "kube-apiserver" in running and "etcd" in running:
        print(
            f"the control plane is already running at {plane.server} "
            f"(kube-apiserver pid {running['kube-apiserver']}, etcd pid {running['etcd']}); "
            f"kubeconfig: {plane.kubeconfig}"
        )
        return plane
    if running:
        print("stopping what is left of an earlier control plane", flush=True)
        plane.stop()
    if not all(binary_path(tool).exists() for tool in (ETCD, KUBE_APISERVER)):
        print("building etcd and kube-apiserver once (several minutes the first time)", flush=True)
    plane.build()
    print(
        f"starting etcd on {plane.etcd_url} and kube-apiserver on {plane.server} "
        f"(logs in {plane.workdir}) ...",
        flush=True,
    )
    plane.start()
    print(
        f"the control plane is up at {plane.server} (kube-apiserver pid {plane.apiserver_pid}, "
        f"etcd pid {plane.etcd_pid})\nkubeconfig: {plane.kubeconfig}  "
        f"(export KUBECONFIG={plane.kubeconfig.resolve()})"
    )
    return plane


def apiserver_down() -> None:
    plane = local_control_plane()
    running = plane.running_pids()
    plane.stop()
    if not running:
        print("the control plane is not running")
        return
    stopped = ", ".join(f"{component} (pid {pid})" for component, pid in running.items())
    print(f"stopped {stopped}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m energy_pipeline.local.controlplane_cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("apiserver-up", help="start etcd and kube-apiserver on 127.0.0.1")
    sub.add_parser("apiserver-down", help="stop them")
    sub.add_parser("build", help="build kube-apiserver, etcd and helm if they are not cached")
    helm = sub.add_parser("helm", help="run helm with the arguments after --")
    helm.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("helm-path", help="print the path of the helm binary")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One line per readiness probe is noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        if args.command == "apiserver-up":
            apiserver_up()
        elif args.command == "apiserver-down":
            apiserver_down()
        elif args.command == "build":
            for tool in (ETCD, KUBE_APISERVER, HELM):
                print(f"{tool.name} {tool.version}: {ensure_built(tool)}", flush=True)
        elif args.command == "helm":
            helm_args = args.args[1:] if args.args[:1] == ["--"] else args.args
            binary = str(ensure_built(HELM))
            sys.stdout.flush()
            os.execv(binary, [binary, *helm_args])  # noqa: S606 - our own helm build
        elif args.command == "helm-path":
            print(ensure_built(HELM))
    except (ControlPlaneError, GoBuildError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
