"""The operator benchmark: time for 50 EnergyPipelines (admin mode) to become Ready,
and the operator's resident memory then.

Runs a real kube-apiserver + etcd (the project's control plane), the given Kafka
broker, and the ksqlDB REST double (a test double, not ksqlDB). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import client as k8s

from energy_ksql.double import KsqlRestDouble
from energy_operator.api import API_VERSION, GROUP, KIND, PLURAL, VERSION
from energy_pipeline.local.broker import free_port, stop_pid
from energy_pipeline.local.controlplane import ControlPlane, api_client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from operator_helpers import install_pipeline_crd  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--pipelines", type=int, default=50)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="operator-bench-"))
    plane = ControlPlane(workdir / "controlplane", free_port(), free_port(), free_port())
    plane.start()
    double = KsqlRestDouble().start()
    operator = None
    try:
        with api_client(plane.kubeconfig) as admin:
            install_pipeline_crd(admin)
            k8s.CoreV1Api(admin).create_namespace({"metadata": {"name": "bench"}})
            operator = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "energy_operator.cli",
                    "--all-namespaces",
                    f"--liveness=http://127.0.0.1:{free_port()}/healthz",
                ],
                stdout=open(workdir / "operator.log", "wb"),
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "KUBECONFIG": str(plane.kubeconfig),
                    "OPERATOR_METRICS_PORT": str(free_port()),
                },
            )
            objects = k8s.CustomObjectsApi(admin)
            time.sleep(3)  # the operator's start-up is not what is measured
            started = time.perf_counter()
            for number in range(args.pipelines):
                prefix = f"bench{number:02d}"
                objects.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    "bench",
                    PLURAL,
                    {
                        "apiVersion": API_VERSION,
                        "kind": KIND,
                        "metadata": {"name": prefix},
                        "spec": {
                            "kafka": {"bootstrapServers": args.bootstrap},
                            "ksql": {
                                "url": double.url,
                                "streamName": f"{prefix.upper()}_READINGS",
                                "totalsTableName": f"{prefix.upper()}_TOTALS",
                                "windowedTableName": f"{prefix.upper()}_HOURLY",
                            },
                            "topics": {
                                role: {"name": f"{prefix}.{role}", "partitions": 1}
                                for role in ("raw", "processed", "alerts", "deadLetter")
                            },
                        },
                    },
                )
            while True:
                items = objects.list_namespaced_custom_object(GROUP, VERSION, "bench", PLURAL)[
                    "items"
                ]
                ready = sum((i.get("status") or {}).get("phase") == "Ready" for i in items)
                if ready == args.pipelines:
                    break
                if time.perf_counter() - started > 300:
                    raise TimeoutError(f"only {ready} of {args.pipelines} Ready after 300s")
                time.sleep(0.2)
            seconds = time.perf_counter() - started
            memory = rss_mb(operator.pid)
    finally:
        if operator is not None:
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(30)
            except subprocess.TimeoutExpired:
                stop_pid(operator.pid)
        double.stop()
        plane.stop()
    print(
        json.dumps({"value": seconds, "unit": "s", "rss_mb": memory, "pipelines": args.pipelines})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
