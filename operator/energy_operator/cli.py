"""``energy-operator``: run the EnergyPipeline operator (kopf, standalone)."""

from __future__ import annotations

import argparse
import logging
import sys

import kopf

from energy_pipeline.settings import SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="energy-operator",
        description="Reconcile EnergyPipeline resources: Kafka topics, ksqlDB stream and "
        "tables, and the services' settings. Settings from OPERATOR_* environment "
        "variables (OPERATOR_METRICS_PORT, OPERATOR_DRIFT_INTERVAL_SECONDS, ...); the "
        "cluster from the in-cluster service account or KUBECONFIG.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)"
    )
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch only this namespace (repeatable)",
    )
    parser.add_argument(
        "--liveness",
        default="http://127.0.0.1:8080/healthz",
        help="liveness endpoint (default http://127.0.0.1:8080/healthz)",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per ksqlDB request would drown what the operator decides.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        from energy_operator import handlers  # noqa: F401 - registers the handlers
    except SettingsError as error:
        print(f"energy-operator: {error}", file=sys.stderr)
        return 2
    # Standalone: one replica (the Deployment uses strategy Recreate), no peering.
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
