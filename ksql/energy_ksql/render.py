"""Render the pipeline's ksqlDB statements from its spec: the one place that writes SQL.

The templates in ``templates/`` are the readable, versioned source of the statements;
this module fills in their parameters (object names, topic names, window size) after
checking every one of them. A name that is not a plain identifier or Kafka topic name
raises :class:`InvalidNameError` before any statement exists, so nothing can send it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Literal

from energy_pipeline.schema import AREA, MAX_STRING_LENGTH
from energy_pipeline.spec import (
    WINDOW_SIZE_PATTERN,
    EnergyPipelineSpec,
    is_ksql_identifier,
    is_topic_name,
)

Kind = Literal["STREAM", "TABLE"]
Role = Literal["stream", "totals", "windowed"]

# Java DateTimeFormatter pattern for the readings' `timestamp`. The optional sections
# are tried in order: six fraction digits, else three, else none; XXX reads both
# "Z" and "+00:00". Written here unquoted; sql_string() doubles the quotes.
TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS][.SSS]XXX"


class InvalidNameError(ValueError):
    """A name cannot be put in a statement; the message says which and why."""


@dataclass(frozen=True)
class Statement:
    """One rendered CREATE statement and the object it defines."""

    role: Role
    kind: Kind
    # Unquoted identifiers are uppercased by ksqlDB; this is the name it will report.
    name: str
    sql: str


def check_identifier(name: str, what: str) -> str:
    if not isinstance(name, str) or not is_ksql_identifier(name):
        raise InvalidNameError(
            f"{what} {name!r} is not a ksqlDB identifier (a letter or _, then letters, digits or _)"
        )
    return name


def check_topic(name: str, what: str) -> str:
    if not isinstance(name, str) or not is_topic_name(name):
        raise InvalidNameError(
            f"{what} {name!r} is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"
        )
    return name


def check_window_size(size: str) -> str:
    """The window size as written in SQL: ``"1 HOUR"`` becomes ``"1 HOURS"``."""
    if not isinstance(size, str) or re.fullmatch(WINDOW_SIZE_PATTERN, size) is None:
        raise InvalidNameError(f"window size {size!r} is not like '1 HOUR' or '15 MINUTES'")
    # Recent ksqlDB documents only the plural units; older versions accept both.
    return size if size.endswith("S") else size + "S"


def sql_string(value: str) -> str:
    """A SQL string literal: single quotes, embedded quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def sink_topic(table_name: str) -> str:
    """The Kafka topic a table writes to: its name in lowercase, like our other topics.

    Named explicitly (rather than ksqlDB's default, the uppercased name) so that the
    plan can see which topic a table writes and DELETE TOPIC deletes what we expect.
    """
    return check_identifier(table_name, "table name").lower()


def _template(name: str) -> Template:
    text = resources.files("energy_ksql").joinpath("templates", name).read_text("utf-8")
    # Whole-line comments explain the template to its readers; the server gets
    # only the statement (ksqlDB would store comments in its command topic).
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return Template("\n".join(lines).strip() + "\n")


def render_statements(spec: EnergyPipelineSpec) -> list[Statement]:
    """The pipeline's statements in dependency order: the stream, then its tables."""
    ksql = spec.ksql
    params = {
        "stream_name": check_identifier(ksql.stream_name, "streamName"),
        "totals_table_name": check_identifier(ksql.totals_table_name, "totalsTableName"),
        "windowed_table_name": check_identifier(ksql.windowed_table_name, "windowedTableName"),
        "processed_topic": check_topic(spec.topics.processed.name, "processed topic"),
        "totals_topic": check_topic(sink_topic(ksql.totals_table_name), "totals topic"),
        "windowed_topic": check_topic(sink_topic(ksql.windowed_table_name), "windowed topic"),
        "window_size": check_window_size(ksql.window_size),
        # The template puts this between quotes: it holds ' characters to double.
        "timestamp_format": TIMESTAMP_FORMAT.replace("'", "''"),
    }
    names = [params["stream_name"], params["totals_table_name"], params["windowed_table_name"]]
    if len({n.upper() for n in names}) != len(names):
        raise InvalidNameError(f"stream and table names must differ, got {names}")
    return [
        Statement(
            "stream",
            "STREAM",
            params["stream_name"].upper(),
            _template("stream.sql").substitute(params),
        ),
        Statement(
            "totals",
            "TABLE",
            params["totals_table_name"].upper(),
            _template("totals_table.sql").substitute(params),
        ),
        Statement(
            "windowed",
            "TABLE",
            params["windowed_table_name"].upper(),
            _template("windowed_table.sql").substitute(params),
        ),
    ]


def render_sql(spec: EnergyPipelineSpec) -> str:
    """All statements as one script, as ``energy-ksql render`` prints it."""
    return "\n".join(s.sql for s in render_statements(spec))


def replace_form(statement: Statement) -> str:
    """The statement as ``CREATE OR REPLACE`` (ksqlDB refuses it with IF NOT EXISTS)."""
    prefix = f"CREATE {statement.kind} IF NOT EXISTS "
    if not statement.sql.startswith(prefix):
        raise ValueError(f"not a rendered CREATE {statement.kind} statement: {statement.sql!r}")
    return f"CREATE OR REPLACE {statement.kind} " + statement.sql[len(prefix) :]


def render_drop(kind: Kind, name: str, delete_topic: bool = False) -> str:
    check_identifier(name, f"{kind.lower()} name")
    suffix = " DELETE TOPIC" if delete_topic else ""
    return f"DROP {kind} IF EXISTS {name}{suffix};"


def render_describe(name: str) -> str:
    return f"DESCRIBE {check_identifier(name, 'source name')};"


def render_pull_query(table_name: str, area: str) -> str:
    """A pull query for one area's row(s) of a per-area table."""
    check_identifier(table_name, "table name")
    if not area or len(area) > MAX_STRING_LENGTH or not area.isprintable():
        raise InvalidNameError(
            f"area {area[:40]!r} must be 1-{MAX_STRING_LENGTH} printable characters"
        )
    # The key column keeps the JSON field's case, hence the backticks. The table
    # name is checked above and the area is a quoted literal, hence the noqa.
    return f"SELECT * FROM {table_name} WHERE `{AREA}` = {sql_string(area)};"  # noqa: S608
