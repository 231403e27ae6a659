"""KsqlRestDouble: a test double of the ksqlDB REST API. It is NOT ksqlDB.

No ksqlDB server can run where this project is tested, so the client and the
operator are tested against this double: a real HTTP server on 127.0.0.1 that
answers like ksqlDB does, as written down in ``shared/reference/ksqldb-rest-api.md``.

What it does:

- keeps a registry of streams and tables with the statement text that created them,
  the topic, the source a CREATE ... AS SELECT reads and the query it starts;
- ``/ksql``: CREATE [OR REPLACE] STREAM|TABLE [IF NOT EXISTS], DROP STREAM|TABLE
  [IF EXISTS] [DELETE TOPIC], LIST/SHOW STREAMS|TABLES|QUERIES, DESCRIBE; answers
  ``currentStatus`` entities, a ``warning_entity`` for IF NOT EXISTS on an existing
  object, error 40001 for a duplicate without it, for DROP of a missing source and
  for DROP while a query reads the source, 40002 for a SELECT;
- ``/info`` and ``/healthcheck`` (200 with ``isHealthy`` false when made unhealthy);
- 503 with error 50302 and ``Retry-After`` for the next N requests while "starting";
- optional HTTP basic auth (401, error 40100).

What it does not do: it reads no Kafka topic and computes nothing. A pull query on
``/query`` answers only rows a test seeded with :meth:`KsqlRestDouble.seed_rows`, and
an explicit error otherwise; it never makes up an aggregate. It stores statements as
sent (ksqlDB reformats them), returns no ``fields`` in DESCRIBE, does not check column
types, keys or expressions, does not stream chunked responses and has no /status.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast

_IDENT = r"(`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)"
_CREATE = re.compile(
    rf"^CREATE\s+(OR\s+REPLACE\s+)?(STREAM|TABLE)\s+(IF\s+NOT\s+EXISTS\s+)?{_IDENT}",
    re.IGNORECASE,
)
_DROP = re.compile(
    rf"^DROP\s+(STREAM|TABLE)\s+(IF\s+EXISTS\s+)?{_IDENT}(\s+DELETE\s+TOPIC)?$", re.IGNORECASE
)
_LIST = re.compile(r"^(?:LIST|SHOW)\s+(STREAMS|TABLES|QUERIES)(\s+EXTENDED)?$", re.IGNORECASE)
_DESCRIBE = re.compile(rf"^DESCRIBE\s+{_IDENT}(\s+EXTENDED)?$", re.IGNORECASE)
_PULL = re.compile(
    rf"^SELECT\s+\*\s+FROM\s+{_IDENT}(?:\s+WHERE\s+{_IDENT}\s*=\s*'((?:[^']|'')*)')?$",
    re.IGNORECASE,
)


def _name(token: str) -> str:
    return token[1:-1] if token.startswith("`") else token.upper()


def split_statements(text: str) -> list[str]:
    """Statements separated by ``;`` outside quotes, without the ``;``."""
    out: list[str] = []
    current: list[str] = []
    quote = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'`\"":
            quote = char
        elif char == ";":
            out.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    out.append("".join(current).strip())
    return [s for s in out if s]


@dataclass
class Source:
    kind: str  # "STREAM" or "TABLE"
    name: str
    statement: str
    topic: str
    source: str | None = None  # what its query reads
    query_id: str | None = None  # the query writing it, for CREATE ... AS SELECT
    windowed: bool = False
    readers: list[str] = field(default_factory=list)  # ids of queries reading it


@dataclass
class SeededRows:
    schema: str
    rows: list[list[Any]]
    key_index: int = 0


class DoubleError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class KsqlRestDouble:
    """A fake ksqlDB REST server for tests; see the module docstring for its limits.

    Start it with :meth:`start` (or ``with KsqlRestDouble() as server:``), point a
    client at :attr:`url`. State is plain attributes, for tests to set and read.
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.sources: dict[str, Source] = {}
        self.seeded: dict[str, SeededRows] = {}
        # Every request received, as (method, path, decoded JSON body or None).
        self.requests: list[tuple[str, str, Any]] = []
        self.deleted_topics: list[str] = []
        self.healthy = True
        self.starting_requests = 0
        self.retry_after = 1
        self._sequence = itertools.count(1)
        self._queries = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("KsqlRestDouble is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self._server = _DoubleServer(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._server.daemon_threads = True
        # A short poll interval so that stop() returns quickly between tests.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="ksql-rest-double",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ test controls

    def set_starting(self, requests: int, retry_after: int = 1) -> None:
        """Answer the next ``requests`` calls to /ksql and /query with 503 / 50302."""
        self.starting_requests = requests
        self.retry_after = retry_after

    def seed_rows(
        self, table: str, schema: str, rows: Sequence[Sequence[Any]], key_index: int = 0
    ) -> None:
        """Rows that pull queries on ``table`` will answer, filtered on ``key_index``."""
        self.seeded[table.upper()] = SeededRows(schema, [list(r) for r in rows], key_index)

    def statements(self) -> list[str]:
        """The /ksql statements received, in order, one per statement."""
        sent = []
        for method, path, body in self.requests:
            if method == "POST" and path == "/ksql" and isinstance(body, dict):
                sent.extend(split_statements(str(body.get("ksql", ""))))
        return sent

    # ------------------------------------------------------------ endpoints

    def handle_ksql(self, text: str) -> tuple[int, Any]:
        entities: list[dict[str, Any]] = []
        with self._lock:
            for statement in split_statements(text):
                try:
                    entities.append(self._run(statement))
                except DoubleError as error:
                    return error.code // 100, {
                        "@type": "statement_error",
                        "error_code": error.code,
                        "message": error.message,
                        "statementText": statement + ";",
                        "entities": entities,
                    }
        return 200, entities

    def handle_query(self, text: str) -> tuple[int, Any]:
        statement = " ".join(text.strip().rstrip(";").split())
        match = _PULL.match(statement)
        if match is None:
            return _error(
                40001,
                "KsqlRestDouble only answers 'SELECT * FROM t [WHERE "
                "key = 'literal']' pull queries",
                statement,
            )
        name = _name(match.group(1))
        with self._lock:
            if name not in self.sources:
                return _error(40001, f"{name} does not exist.", statement)
            seeded = self.seeded.get(name)
            if seeded is None:
                return _error(
                    50000,
                    f"KsqlRestDouble has no rows seeded for {name}: it "
                    "is not ksqlDB and never computes aggregates",
                    statement,
                )
            rows = seeded.rows
            if match.group(3) is not None:
                wanted = match.group(3).replace("''", "'")
                rows = [r for r in rows if r[seeded.key_index] == wanted]
            query_id = f"double_pull_{next(self._queries)}"
            out: list[dict[str, Any]] = [{"header": {"queryId": query_id, "schema": seeded.schema}}]
            out.extend({"row": {"columns": row}} for row in rows)
        return 200, out

    def info(self) -> dict[str, Any]:
        return {
            "KsqlServerInfo": {
                # Says what it is: nothing may take this double for a real server.
                "version": "0.0.0-ksql-rest-double",
                "kafkaClusterId": "none-ksql-rest-double",
                "ksqlServiceId": "ksql_rest_double_",
                "serverStatus": "RUNNING",
            }
        }

    def health(self) -> dict[str, Any]:
        part = {"isHealthy": self.healthy}
        return {
            "isHealthy": self.healthy,
            "details": {"metastore": part, "kafka": part, "commandRunner": part},
        }

    # ------------------------------------------------------------ statements

    def _run(self, statement: str) -> dict[str, Any]:
        text = " ".join(statement.split())
        if re.match(r"^SELECT\b", text, re.IGNORECASE):
            raise DoubleError(
                40002,
                "The following statement types should be issued to "
                "the websocket endpoint '/query': SELECT",
            )
        if match := _CREATE.match(text):
            return self._create(statement, text, match)
        if match := _DROP.match(text):
            return self._drop(statement, match)
        if match := _LIST.match(text):
            return self._list(statement, match.group(1).upper())
        if match := _DESCRIBE.match(text):
            return self._describe(statement, _name(match.group(1)))
        raise DoubleError(40000, f"KsqlRestDouble does not implement this statement: {text[:80]}")

    def _status(
        self, statement: str, command: str, message: str, query_id: str | None = None
    ) -> dict[str, Any]:
        return {
            "@type": "currentStatus",
            "statementText": statement + ";",
            "commandId": command,
            "commandStatus": {"status": "SUCCESS", "message": message, "queryId": query_id},
            "commandSequenceNumber": next(self._sequence),
            "warnings": [],
        }

    def _create(self, statement: str, text: str, match: re.Match[str]) -> dict[str, Any]:
        replace, kind, if_not_exists = match.group(1), match.group(2).upper(), match.group(3)
        name = _name(match.group(4))
        if replace and if_not_exists:
            raise DoubleError(40001, "Cannot set both OR REPLACE and IF NOT EXISTS.")
        existing = self.sources.get(name)
        noun = kind.lower()
        if existing is not None and not replace:
            message = (
                f"Cannot add {noun} '{name}': A {existing.kind.lower()} with the same "
                "name already exists"
            )
            if if_not_exists:
                return {
                    "@type": "warning_entity",
                    "statementText": statement + ";",
                    "message": message,
                    "warnings": [],
                }
            raise DoubleError(40001, message)
        topic_match = re.search(r"\bKAFKA_TOPIC\s*=\s*'([^']*)'", text, re.IGNORECASE)
        select = re.search(r"\bAS\s+SELECT\b", text, re.IGNORECASE)
        source_name = None
        aggregate = windowed = False
        if select:
            source_match = re.search(rf"\bFROM\s+{_IDENT}", text[select.end() :], re.IGNORECASE)
            if source_match is None:
                raise DoubleError(40001, "KsqlRestDouble: no FROM in the query")
            source_name = _name(source_match.group(1))
            if source_name not in self.sources:
                raise DoubleError(40001, f"{source_name} does not exist.")
            windowed = re.search(r"\bWINDOW\s+\w+\s*\(", text, re.IGNORECASE) is not None
            aggregate = re.search(r"\bGROUP\s+BY\b", text, re.IGNORECASE) is not None
        elif topic_match is None:
            raise DoubleError(
                40001, 'Missing required property "KAFKA_TOPIC" which has no default value.'
            )
        topic = topic_match.group(1) if topic_match else name
        if existing is not None:  # CREATE OR REPLACE
            if existing.kind != kind:
                raise DoubleError(
                    40001,
                    f"Cannot add {noun} '{name}': A "
                    f"{existing.kind.lower()} with the same name already "
                    "exists",
                )
            if existing.windowed or windowed or aggregate or existing.source != source_name:
                raise DoubleError(
                    40001,
                    f"Cannot upgrade data source '{name}': KsqlRestDouble "
                    "refuses CREATE OR REPLACE of windowed or aggregation "
                    "queries and changes of source, as ksqlDB does",
                )
            if existing.topic != topic:
                raise DoubleError(
                    40001,
                    f"Cannot upgrade data source '{name}': the Kafka "
                    f"topic cannot change ({existing.topic} -> {topic})",
                )
            existing.statement = statement + ";"
            return self._status(
                statement, f"{noun}/`{name}`/create", f"Created {noun} {name}", existing.query_id
            )
        query_id = None
        if source_name is not None:
            prefix = "CTAS" if kind == "TABLE" else "CSAS"
            query_id = f"{prefix}_{name}_{next(self._queries)}"
            self.sources[source_name].readers.append(query_id)
        self.sources[name] = Source(
            kind, name, statement + ";", topic, source_name, query_id, windowed
        )
        message = "Stream created" if kind == "STREAM" else "Table created"
        if query_id:
            message = f"Created query with ID {query_id}"
        return self._status(statement, f"{noun}/`{name}`/create", message, query_id)

    def _drop(self, statement: str, match: re.Match[str]) -> dict[str, Any]:
        kind, if_exists, delete_topic = match.group(1).upper(), match.group(2), match.group(4)
        name = _name(match.group(3))
        existing = self.sources.get(name)
        noun = kind.lower()
        if existing is None:
            if if_exists:
                return self._status(
                    statement, f"{noun}/`{name}`/drop", f"Source `{name}` does not exist."
                )
            raise DoubleError(40001, f"Source {name} does not exist.")
        if existing.kind != kind:
            raise DoubleError(
                40001,
                f"Incompatible data source type is {existing.kind}, but "
                f"statement was DROP {kind}. Did you mean DROP "
                f"{existing.kind}?",
            )
        if existing.readers:
            raise DoubleError(
                40001,
                f"Cannot drop {name}.\nThe following queries read from "
                f"this source: [{', '.join(existing.readers)}].\nYou need "
                "to terminate them before dropping " + name + ".",
            )
        del self.sources[name]
        if existing.source and existing.source in self.sources:
            self.sources[existing.source].readers.remove(existing.query_id or "")
        self.seeded.pop(name, None)
        if delete_topic:
            self.deleted_topics.append(existing.topic)
        return self._status(
            statement,
            f"{noun}/`{name}`/drop",
            f"Source `{name}` (topic: {existing.topic}) was dropped.",
        )

    def _list(self, statement: str, what: str) -> dict[str, Any]:
        if what == "QUERIES":
            queries = [
                {
                    "queryString": s.statement,
                    "sinks": [s.name],
                    "sinkKafkaTopics": [s.topic],
                    "id": s.query_id,
                    "queryType": "PERSISTENT",
                    "state": "RUNNING",
                }
                for s in self.sources.values()
                if s.query_id
            ]
            return {
                "@type": "queries",
                "statementText": statement + ";",
                "queries": queries,
                "warnings": [],
            }
        kind = what[:-1]
        items = [
            {
                "type": s.kind,
                "name": s.name,
                "topic": s.topic,
                "keyFormat": "KAFKA",
                "valueFormat": "JSON",
                "isWindowed": s.windowed,
            }
            for s in self.sources.values()
            if s.kind == kind
        ]
        return {
            "@type": what.lower(),
            "statementText": statement + ";",
            what.lower(): items,
            "warnings": [],
        }

    def _describe(self, statement: str, name: str) -> dict[str, Any]:
        source = self.sources.get(name)
        if source is None:
            raise DoubleError(40001, f"Could not find STREAM/TABLE '{name}' in the Metastore")

        def query(query_id: str) -> dict[str, Any]:
            sink = next(s for s in self.sources.values() if s.query_id == query_id)
            return {
                "id": query_id,
                "queryString": sink.statement,
                "sinks": [sink.name],
                "sinkKafkaTopics": [sink.topic],
                "queryType": "PERSISTENT",
                "state": "RUNNING",
            }

        return {
            "@type": "sourceDescription",
            "statementText": statement + ";",
            "sourceDescription": {
                "name": name,
                "windowType": "TUMBLING" if source.windowed else None,
                "readQueries": [query(q) for q in source.readers],
                "writeQueries": [query(source.query_id)] if source.query_id else [],
                "fields": [],  # the double does not parse columns
                "type": source.kind,
                "timestamp": "",
                "statistics": "",
                "errorStats": "",
                "extended": False,
                "keyFormat": "KAFKA",
                "valueFormat": "JSON",
                "topic": source.topic,
                "partitions": 0,
                "replication": 0,
                "statement": source.statement,
            },
            "warnings": [],
        }


def _error(code: int, message: str, statement: str) -> tuple[int, dict[str, Any]]:
    return code // 100, {
        "@type": "statement_error",
        "error_code": code,
        "message": message,
        "statementText": statement,
        "entities": [],
    }


class _DoubleServer(ThreadingHTTPServer):
    owner: KsqlRestDouble


class _Handler(BaseHTTPRequestHandler):
    server_version = "KsqlRestDouble"

    @property
    def owner(self) -> KsqlRestDouble:
        return cast(_DoubleServer, self.server).owner

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read KsqlRestDouble.requests instead of stderr

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.ksql.v1+json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        credentials = self.owner.credentials
        if credentials is None:
            return True
        expected = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        return self.headers.get("Authorization", "") == f"Basic {expected}"

    def _handle(self, method: str) -> None:
        owner = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        owner.requests.append((method, path, body))
        if not self._authorized():
            self._send(
                401,
                {"@type": "generic_error", "error_code": 40100, "message": "Unauthorized"},
                {"WWW-Authenticate": 'Basic realm="KsqlRestDouble"'},
            )
            return
        if method == "GET" and path == "/info":
            self._send(200, owner.info())
        elif method == "GET" and path == "/healthcheck":
            self._send(200, owner.health())
        elif method == "POST" and path in ("/ksql", "/query"):
            with owner._lock:
                starting = owner.starting_requests > 0
                if starting:
                    owner.starting_requests -= 1
            if starting:
                self._send(
                    503,
                    {
                        "@type": "generic_error",
                        "error_code": 50302,
                        "message": "KSQL is not yet ready to serve requests.",
                    },
                    {"Retry-After": str(owner.retry_after)},
                )
                return
            if not isinstance(body, dict) or not isinstance(body.get("ksql"), str):
                self._send(
                    400,
                    {
                        "@type": "generic_error",
                        "error_code": 40000,
                        "message": "Request body must be JSON with a 'ksql' string",
                    },
                )
                return
            handle = owner.handle_ksql if path == "/ksql" else owner.handle_query
            status, payload = handle(body["ksql"])
            self._send(status, payload)
        else:
            self._send(
                404,
                {
                    "@type": "generic_error",
                    "error_code": 40400,
                    "message": f"KsqlRestDouble has no {method} {path}",
                },
            )

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")
