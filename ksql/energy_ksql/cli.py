"""energy-ksql: render, plan and apply the pipeline's ksqlDB statements.

    energy-ksql render -f pipeline.yaml
    energy-ksql plan   -f pipeline.yaml [--url URL] [--delete [--delete-topics]]
    energy-ksql apply  -f pipeline.yaml [--url URL] [--delete [--delete-topics]]
    energy-ksql status [-f pipeline.yaml] [--url URL]
    energy-ksql query  -f pipeline.yaml [--url URL] --area NAME [--windowed]

The URL defaults to the spec's ``ksql.url``. Basic auth is read from the
environment (``KSQL_USERNAME``, ``KSQL_PASSWORD``), never from the command line.
Exit status: 0 done, 1 ksqlDB refused or could not be reached, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from energy_ksql.client import KsqlClient, KsqlError, apply_plan, plan_against
from energy_ksql.render import InvalidNameError, render_pull_query, render_sql, render_statements
from energy_pipeline.spec import EnergyPipelineSpec, SpecError, load_manifest

EXIT_OK, EXIT_KSQL, EXIT_INPUT = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="energy-ksql", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str, help_text: str, spec_required: bool, server: bool
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "-f",
            "--file",
            required=spec_required,
            help="EnergyPipeline manifest (YAML); its spec: is read",
        )
        if server:
            sub.add_argument("--url", help="ksqlDB server (default: the spec's ksql.url)")
            sub.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
            sub.add_argument(
                "--ready-timeout",
                type=float,
                default=60.0,
                help="seconds to wait for a starting server",
            )
        return sub

    add("render", "print the statements", True, False)
    for name, text in (("plan", "print what apply would do"), ("apply", "apply the plan")):
        sub = add(name, text, True, True)
        sub.add_argument("--delete", action="store_true", help="drop the pipeline's objects")
        sub.add_argument(
            "--delete-topics",
            action="store_true",
            help="with --delete: also delete the tables' sink topics",
        )
    add("status", "server info, health and the pipeline's objects", False, True)
    query = add("query", "print an area's row from a pull query", True, True)
    query.add_argument("--area", required=True)
    query.add_argument(
        "--windowed",
        action="store_true",
        help="read the windowed table instead of the running totals",
    )
    return parser


def _auth() -> tuple[str, str] | None:
    user, password = os.environ.get("KSQL_USERNAME"), os.environ.get("KSQL_PASSWORD")
    return (user, password) if user and password else None


def _client(args: argparse.Namespace, spec: EnergyPipelineSpec | None) -> KsqlClient:
    url = args.url or (spec.ksql.url if spec else None)
    if not url:
        raise SpecError("--url is required without -f")
    return KsqlClient(url, auth=_auth(), timeout=args.timeout, ready_timeout=args.ready_timeout)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def run(args: argparse.Namespace) -> int:
    spec = load_manifest(args.file) if args.file else None
    if args.command == "render":
        if spec is None:
            raise SpecError("render needs -f")
        print(render_sql(spec), end="")
        return EXIT_OK
    statements = render_statements(spec) if spec else []
    with _client(args, spec) as client:
        if args.command in ("plan", "apply"):
            if args.delete_topics and not args.delete:
                raise SpecError("--delete-topics only goes with --delete")
            plan = plan_against(
                client, statements, delete=args.delete, delete_topics=args.delete_topics
            )
            print(plan.render(), end="")
            if args.command == "apply":
                for applied in apply_plan(client, plan):
                    print(f"applied: {applied.step.action.value} {applied.step.name}")
                    for warning in applied.warnings:
                        print(f"  warning: {warning}")
            return EXIT_OK
        if args.command == "status":
            health = client.healthcheck()
            info = client.info()
            print(
                f"server: {client.url} version {info.get('version')} "
                f"status {info.get('serverStatus')}"
            )
            print(f"healthy: {health.is_healthy}")
            state = client.current_state([s.name for s in statements])
            for statement in statements:
                found = state.get(statement.name)
                print(
                    f"{statement.kind.lower()} {statement.name}: "
                    f"{'present' if found else 'missing'}"
                )
            return EXIT_OK if health.is_healthy else EXIT_KSQL
        # query
        if spec is None:
            raise SpecError("query needs -f")
        table = spec.ksql.windowed_table_name if args.windowed else spec.ksql.totals_table_name
        result = client.query(render_pull_query(table, args.area))
        if not result.rows:
            print(f"no row for area {args.area!r} in {table}", file=sys.stderr)
            return EXIT_KSQL
        rows = result.as_dicts()
        _print_json(rows[0] if len(rows) == 1 else rows)
        return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except (SpecError, InvalidNameError) as error:
        print(f"energy-ksql: refused: {error}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as error:
        print(f"energy-ksql: {error}", file=sys.stderr)
        return EXIT_INPUT
    except KsqlError as error:
        code = f" {error.error_code}" if error.error_code else ""
        print(f"energy-ksql: ksqlDB error{code}: {error}", file=sys.stderr)
        if error.statement_text:
            print(f"  statement: {error.statement_text.strip()}", file=sys.stderr)
        return EXIT_KSQL


if __name__ == "__main__":
    sys.exit(main())
