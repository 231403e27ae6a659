"""The apply plan: which statements bring a ksqlDB server to the pipeline's statements.

The plan is data computed from two inputs — the desired :class:`Statement` list and
the :class:`ServerObject` map the server reported — and nothing else, so that it can
be printed, reviewed and tested without a server.

Drift is judged on *facets* of a definition (kind, topic, source, window, columns,
event-time column) rather than on the statement text: ksqlDB stores a reformatted
statement (backticks, injected WITH properties, ``SIZE 3600 SECONDS``), so comparing
text would find a change on every apply and drop state for nothing. An expression
that changes under the same column name is therefore not seen as a change; rename the
column when a formula changes.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from energy_ksql.render import Kind, Statement, render_drop, replace_form

# ksqlDB prints a type by its canonical name when it reformats a statement.
_TYPE_SYNONYMS = {"VARCHAR": "STRING", "INT": "INTEGER"}
_UNIT_SECONDS = {"MILLISECOND": 0.001, "SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}


class Action(StrEnum):
    CREATE = "create"
    KEEP = "keep"
    REPLACE = "replace"
    DROP = "drop"
    IGNORE = "ignore"


@dataclass(frozen=True)
class Definition:
    """What a CREATE statement defines, in a form that survives ksqlDB's reformatting."""

    kind: Kind
    name: str
    topic: str | None
    source: str | None
    window_seconds: float | None
    # Streams: "NAME TYPE" per column; tables: the projection's column names.
    columns: tuple[str, ...]
    timestamp: str | None
    timestamp_format: str | None


@dataclass(frozen=True)
class ServerObject:
    """A stream or table as LIST and DESCRIBE report it."""

    kind: Kind
    name: str
    topic: str | None = None
    # The defining statement from DESCRIBE; None when only LIST was asked.
    statement: str | None = None
    # Queries reading from this source (DESCRIBE's readQueries ids).
    read_queries: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    action: Action
    kind: Kind
    name: str
    reason: str
    sql: str | None = None


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def changes(self) -> tuple[Step, ...]:
        """The steps that send a statement, in the order they must run."""
        return tuple(s for s in self.steps if s.sql is not None)

    @property
    def is_noop(self) -> bool:
        return not self.changes

    def render(self) -> str:
        """Human-readable plan: one line per object, then each statement to run."""
        lines = [f"{s.action.value:>8} {s.kind.lower()} {s.name}: {s.reason}" for s in self.steps]
        if self.is_noop:
            lines.append("nothing to do")
        for number, step in enumerate(self.changes, 1):
            lines.append(f"\n-- {number}. {step.action.value} {step.kind.lower()} {step.name}")
            lines.append((step.sql or "").rstrip())
        return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------- statement facets


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def _ident(token: str) -> str:
    """An identifier as ksqlDB resolves it: quoted keeps its case, unquoted is uppercased."""
    token = token.strip().rstrip(";,")
    if "." in token and not token.startswith("`"):
        token = token.rsplit(".", 1)[1]  # reformatted statements qualify: S.`area`
    if token.startswith("`") and token.endswith("`") and len(token) > 1:
        return token[1:-1]
    return token.upper()


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses, quotes and backticks."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _balanced(text: str, start: int) -> str:
    """The text inside the parenthesis opening at ``start``."""
    depth, quote = 0, ""
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1 : index]
    raise ValueError("unbalanced parentheses")


def _column(item: str) -> str:
    """A column definition as "name TYPE [KEY]", types by their canonical name."""
    name, *rest = item.split()
    words = [_TYPE_SYNONYMS.get(w.upper(), w.upper()) for w in rest]
    return " ".join([_ident(name), *words])


def _property(sql: str, key: str) -> str | None:
    match = re.search(rf"\b{key}\s*=\s*'((?:[^']|'')*)'", sql, re.IGNORECASE)
    return match.group(1).replace("''", "'") if match else None


_HEAD = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(STREAM|TABLE)\s+(?:IF\s+NOT\s+EXISTS\s+)?(`[^`]+`|[\w.]+)",
    re.IGNORECASE,
)


def parse_definition(sql: str) -> Definition:
    """The facets of a CREATE STREAM/TABLE statement, ours or as ksqlDB stored it."""
    text = " ".join(_strip_comments(sql).split())
    head = _HEAD.match(text)
    if head is None:
        raise ValueError(f"not a CREATE STREAM/TABLE statement: {text[:80]!r}")
    kind: Kind = "STREAM" if head.group(1).upper() == "STREAM" else "TABLE"
    name = _ident(head.group(2))
    select = re.search(r"\bAS\s+SELECT\b", text, re.IGNORECASE)
    source = None
    window = None
    if select:
        body = text[select.end() :]
        source_match = re.search(r"\bFROM\s+(`[^`]+`|[\w.]+)", body, re.IGNORECASE)
        source = _ident(source_match.group(1)) if source_match else None
        projection = body[: source_match.start()] if source_match else body
        # A column's name is the last token of its item: "expr AS NAME" or "expr NAME".
        columns = tuple(_ident(item.split()[-1]) for item in _split_top_level(projection))
        size = re.search(r"\bWINDOW\s+\w+\s*\(\s*SIZE\s+(\d+)\s+([A-Z]+?)S?\b", body, re.IGNORECASE)
        if size:
            window = int(size.group(1)) * _UNIT_SECONDS[size.group(2).upper()]
    else:
        after = text[head.end() :]
        paren = after.find("(")
        with_at = re.search(r"\bWITH\s*\(", after, re.IGNORECASE)
        if paren >= 0 and (with_at is None or paren < with_at.start()):
            items = _split_top_level(_balanced(after, paren))
            columns = tuple(_column(item) for item in items)
        else:
            columns = ()
    topic = _property(text, "KAFKA_TOPIC")
    timestamp = _property(text, "TIMESTAMP")
    return Definition(
        kind=kind,
        name=name,
        topic=topic,
        source=source,
        window_seconds=window,
        columns=columns,
        timestamp=_ident(timestamp) if timestamp else None,
        timestamp_format=_property(text, "TIMESTAMP_FORMAT"),
    )


def differences(desired: Definition, current: Definition) -> list[str]:
    """What differs between two definitions, in words; empty when equal."""
    found = []
    for facet in (
        "kind",
        "topic",
        "source",
        "window_seconds",
        "columns",
        "timestamp",
        "timestamp_format",
    ):
        want, have = getattr(desired, facet), getattr(current, facet)
        if facet == "topic" and have is None:
            continue  # ksqlDB's default topic; nothing to compare against
        if want != have:
            found.append(f"{facet} {have!r} -> {want!r}")
    return found


def _replaceable(desired: Definition, current: Definition) -> bool:
    """Whether ksqlDB can CREATE OR REPLACE in place.

    Only a source stream (no query) qualifies here, and only by appending columns
    on the same topic and event time: aggregations and windowed tables cannot be
    replaced, and key or column changes are refused.
    """
    return (
        desired.kind == current.kind == "STREAM"
        and desired.source is None
        and current.source is None
        and (desired.topic == current.topic or current.topic is None)
        and desired.timestamp == current.timestamp
        and desired.timestamp_format == current.timestamp_format
        and len(desired.columns) > len(current.columns)
        and desired.columns[: len(current.columns)] == current.columns
    )


# ---------------------------------------------------------------- the plan


def compute_plan(
    desired: Sequence[Statement],
    current: Mapping[str, ServerObject],
    *,
    delete: bool = False,
    delete_topics: bool = False,
    previously_managed: Collection[str] = (),
) -> Plan:
    """The steps from what the server has (``current``, by uppercase name) to ``desired``.

    ``desired`` is in dependency order (a source before what reads it). With
    ``delete`` the pipeline's objects are dropped instead, tables before the stream;
    ``delete_topics`` adds DELETE TOPIC for the tables' sink topics only — never for
    the stream, whose topic is the pipeline's processed topic, owned elsewhere.
    Objects the server has that are not desired are dropped only if listed in
    ``previously_managed`` (e.g. a renamed table); others are left alone.
    """
    current = {name.upper(): obj for name, obj in current.items()}
    managed = {n.upper() for n in previously_managed}
    if delete:
        return _deletion_plan(desired, current, delete_topics)

    wanted = {s.name: s for s in desired}
    drops: list[Step] = []
    creates: list[Step] = []
    notes: list[Step] = []
    recreate: set[str] = set()  # dropped on the server, so must be created again

    definitions = {s.name: parse_definition(s.sql) for s in desired}
    current_definitions = {
        name: parse_definition(obj.statement) for name, obj in current.items() if obj.statement
    }

    for statement in desired:
        name = statement.name
        have = current.get(name)
        if have is None:
            creates.append(Step(Action.CREATE, statement.kind, name, "missing", statement.sql))
            continue
        have_definition = current_definitions.get(name)
        if have_definition is None:
            diffs = [] if have.kind == statement.kind else [f"kind {have.kind} -> {statement.kind}"]
        else:
            diffs = differences(definitions[name], have_definition)
        if name in recreate:
            diffs = diffs or ["its source is dropped and created again"]
        if not diffs:
            notes.append(Step(Action.KEEP, statement.kind, name, "equal"))
            continue
        reason = "; ".join(diffs)
        if (
            have_definition is not None
            and name not in recreate
            and _replaceable(definitions[name], have_definition)
        ):
            creates.append(
                Step(Action.REPLACE, statement.kind, name, reason, replace_form(statement))
            )
            continue
        # Drop and create again, and with it every desired object reading this one.
        if name not in recreate:
            drops.append(Step(Action.DROP, have.kind, name, reason, render_drop(have.kind, name)))
            recreate.add(name)
        creates.append(Step(Action.CREATE, statement.kind, name, reason, statement.sql))
        for reader in desired:
            reader_current = current_definitions.get(reader.name)
            reads_it = definitions[reader.name].source == name or (
                reader_current is not None and reader_current.source == name
            )
            if reads_it and reader.name in current and reader.name not in recreate:
                drops.append(
                    Step(
                        Action.DROP,
                        current[reader.name].kind,
                        reader.name,
                        f"reads {name}, which is dropped",
                        render_drop(current[reader.name].kind, reader.name),
                    )
                )
                recreate.add(reader.name)

    extras = [obj for name, obj in current.items() if name not in wanted]
    for obj in sorted(extras, key=lambda o: (o.kind != "TABLE", o.name)):
        if obj.name.upper() in managed:
            drops.append(
                Step(
                    Action.DROP,
                    obj.kind,
                    obj.name,
                    "no longer in the pipeline",
                    render_drop(obj.kind, obj.name),
                )
            )
        else:
            notes.append(Step(Action.IGNORE, obj.kind, obj.name, "not managed by this pipeline"))

    # Tables before streams when dropping: a source cannot be dropped while read.
    drops.sort(key=lambda s: s.kind != "TABLE")
    # A KEEP of an object that is then dropped and recreated is no longer a KEEP.
    notes = [n for n in notes if n.name not in recreate]
    return Plan(tuple(drops + creates + notes))


def _deletion_plan(
    desired: Sequence[Statement], current: Mapping[str, ServerObject], delete_topics: bool
) -> Plan:
    steps = []
    for statement in sorted(reversed(desired), key=lambda s: s.kind != "TABLE"):
        have = current.get(statement.name)
        if have is None:
            steps.append(Step(Action.KEEP, statement.kind, statement.name, "already absent"))
            continue
        with_topic = delete_topics and have.kind == "TABLE"
        reason = "pipeline deleted" + (", with its sink topic" if with_topic else "")
        steps.append(
            Step(
                Action.DROP,
                have.kind,
                statement.name,
                reason,
                render_drop(have.kind, statement.name, with_topic),
            )
        )
    return Plan(tuple(s for s in steps if s.sql) + tuple(s for s in steps if not s.sql))
