"""A small ksqlDB REST client (httpx) and the functions that plan and apply with it.

Errors come back as typed exceptions chosen by ksqlDB's ``error_code``; their
message is ksqlDB's own, unchanged. A server that is still starting (503 with
``error_code`` 50302) is waited for, honouring ``Retry-After``, up to ``ready_timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx

from energy_ksql.plan import Plan, ServerObject, Step, compute_plan
from energy_ksql.render import Statement, check_identifier, render_describe

MEDIA_TYPE = "application/vnd.ksql.v1+json"
# Without this a new persistent query reads only what arrives after it starts.
EARLIEST = {"ksql.streams.auto.offset.reset": "earliest"}
NOT_READY = 50302


class KsqlError(Exception):
    """An error answered by ksqlDB; ``str()`` is ksqlDB's message verbatim."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: int | None = None,
        statement_text: str | None = None,
        entities: Sequence[Any] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code
        self.statement_text = statement_text
        self.entities = list(entities)


class KsqlBadRequest(KsqlError):
    """40000, and anything else in 4xx without a more precise class."""


class KsqlStatementError(KsqlBadRequest):
    """40001: the statement is wrong, or names something that exists or does not."""


class KsqlWrongEndpoint(KsqlBadRequest):
    """40002: a query sent to /ksql (or a statement to /query)."""


class KsqlUnauthorized(KsqlError):
    """40100."""


class KsqlForbidden(KsqlError):
    """40300, and 40301 (Kafka access forbidden)."""


class KsqlNotFound(KsqlError):
    """40400."""


class KsqlTooManyRequests(KsqlError):
    """42900."""


class KsqlServerError(KsqlError):
    """50000, and anything else in 5xx without a more precise class."""


class KsqlCommandTimeout(KsqlServerError):
    """50301: the command queue did not catch up in time."""


class KsqlNotReady(KsqlServerError):
    """50302: still starting, after waiting as long as allowed."""


class KsqlShuttingDown(KsqlServerError):
    """50303."""


class KsqlUnavailable(KsqlError):
    """No answer: connection refused, timeout, or a body that is not ksqlDB's."""


ERROR_CLASSES: dict[int, type[KsqlError]] = {
    40000: KsqlBadRequest,
    40001: KsqlStatementError,
    40002: KsqlWrongEndpoint,
    40100: KsqlUnauthorized,
    40300: KsqlForbidden,
    40301: KsqlForbidden,
    40400: KsqlNotFound,
    42900: KsqlTooManyRequests,
    50000: KsqlServerError,
    50301: KsqlCommandTimeout,
    50302: KsqlNotReady,
    50303: KsqlShuttingDown,
}


def error_from_response(status: int, body: Any) -> KsqlError:
    """The typed exception for an error response (any 4xx/5xx)."""
    if isinstance(body, Mapping) and isinstance(body.get("error_code"), int):
        code: int = body["error_code"]
        cls = ERROR_CLASSES.get(code)
        if cls is None:
            cls = KsqlServerError if code >= 50000 else KsqlBadRequest
        return cls(
            str(body.get("message", "")),
            status=status,
            error_code=code,
            statement_text=body.get("statementText"),
            entities=body.get("entities") or (),
        )
    # No ksqlDB error body, e.g. a proxy's 401 page; the error_code stays unknown.
    fallback = {401: KsqlUnauthorized, 403: KsqlForbidden, 404: KsqlNotFound}
    cls = fallback.get(status, KsqlServerError if status >= 500 else KsqlBadRequest)
    return cls(f"HTTP {status}: {str(body)[:200]}", status=status)


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default  # absent, or an HTTP date: no reason to parse dates for this


@dataclass(frozen=True)
class Health:
    is_healthy: bool
    details: dict[str, Any]


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=False)) for row in self.rows]


def _schema_columns(schema: str) -> list[str]:
    """Column names from a header schema such as "`area` STRING KEY, `READINGS` BIGINT"."""
    names = []
    for item in schema.split(","):
        token = item.strip().split(" ", 1)[0]
        names.append(token.strip("`"))
    return [n for n in names if n]


class KsqlClient:
    """A ksqlDB server at ``url``. Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        url: str,
        *,
        auth: tuple[str, str] | None = None,
        timeout: float = 10.0,
        ready_timeout: float = 60.0,
        streams_properties: Mapping[str, str] = EARLIEST,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.ready_timeout = ready_timeout
        self.streams_properties = dict(streams_properties)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.url,
            auth=httpx.BasicAuth(*auth) if auth else None,
            # Statements may wait up to ksqlDB's 5 s command timeout before answering.
            timeout=httpx.Timeout(timeout),
            headers={"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ transport

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TimeoutException as error:
                raise KsqlUnavailable(f"{method} {self.url}{path}: timed out ({error})") from None
            except httpx.TransportError as error:
                raise KsqlUnavailable(f"{method} {self.url}{path}: {error}") from None
            try:
                payload = response.json()
            except ValueError:
                payload = response.text
            if response.is_success:
                return payload
            failure = error_from_response(response.status_code, payload)
            if failure.error_code == NOT_READY:
                wait = _retry_after(response, 1.0)
                if time.monotonic() + wait <= deadline:
                    self._sleep(wait)
                    continue
            raise failure

    # ------------------------------------------------------------ endpoints

    def info(self) -> dict[str, Any]:
        """``GET /info``: the KsqlServerInfo object (version, ids, serverStatus)."""
        body = self._request("GET", "/info")
        info = body.get("KsqlServerInfo") if isinstance(body, Mapping) else None
        if not isinstance(info, dict):
            raise KsqlUnavailable(f"/info answered without KsqlServerInfo: {str(body)[:200]}")
        return info

    def healthcheck(self) -> Health:
        """``GET /healthcheck``. It answers 200 when unhealthy too: the body decides."""
        body = self._request("GET", "/healthcheck")
        if not isinstance(body, Mapping) or not isinstance(body.get("isHealthy"), bool):
            raise KsqlUnavailable(f"/healthcheck answered without isHealthy: {str(body)[:200]}")
        return Health(body["isHealthy"], dict(body.get("details") or {}))

    def execute(self, sql: str) -> list[dict[str, Any]]:
        """``POST /ksql``: one entity per statement, or the typed error."""
        body = self._request(
            "POST", "/ksql", {"ksql": sql, "streamsProperties": self.streams_properties}
        )
        if not isinstance(body, list):
            raise KsqlUnavailable(f"/ksql answered {str(body)[:200]}, expected a list")
        for entity in body:
            status = (entity.get("commandStatus") or {}) if isinstance(entity, dict) else {}
            if status.get("status") == "ERROR":
                # Accepted, then failed while executing: still ksqlDB's message.
                raise KsqlServerError(
                    str(status.get("message", "")),
                    statement_text=entity.get("statementText"),
                    entities=body,
                )
        return body

    def query(self, sql: str) -> QueryResult:
        """``POST /query`` for a pull query; the whole (finite) response is read."""
        body = self._request(
            "POST", "/query", {"ksql": sql, "streamsProperties": self.streams_properties}
        )
        if not isinstance(body, list):
            raise KsqlUnavailable(f"/query answered {str(body)[:200]}, expected a list")
        columns: list[str] = []
        rows: list[list[Any]] = []
        for item in body:
            if not isinstance(item, dict):
                continue
            if "header" in item:
                columns = _schema_columns(str(item["header"].get("schema", "")))
            elif "row" in item:
                rows.append(list(item["row"].get("columns") or []))
            elif "errorMessage" in item:
                # An error once the response has started streaming.
                message = item["errorMessage"]
                text = message.get("message", message) if isinstance(message, dict) else message
                raise KsqlServerError(str(text))
        return QueryResult(columns, rows)

    # ------------------------------------------------------------ metadata

    def list_sources(self) -> list[ServerObject]:
        """Every stream and table the server has (LIST STREAMS; LIST TABLES)."""
        found = []
        for entity in self.execute("LIST STREAMS; LIST TABLES;"):
            for key, kind in (("streams", "STREAM"), ("tables", "TABLE")):
                for source in entity.get(key) or ():
                    found.append(
                        ServerObject(
                            "STREAM" if kind == "STREAM" else "TABLE",
                            source["name"],
                            source.get("topic"),
                        )
                    )
        return found

    def describe(self, name: str) -> dict[str, Any]:
        """DESCRIBE: the sourceDescription, with its defining ``statement``."""
        check_identifier(name, "source name")
        for entity in self.execute(render_describe(name)):
            if entity.get("@type") == "sourceDescription":
                description: dict[str, Any] = entity["sourceDescription"]
                return description
        raise KsqlUnavailable(f"DESCRIBE {name} answered no sourceDescription")

    def current_state(self, names: Collection[str]) -> dict[str, ServerObject]:
        """What the server has: every source by uppercase name, described if in ``names``."""
        wanted = {n.upper() for n in names}
        state = {}
        for source in self.list_sources():
            obj = source
            if source.name.upper() in wanted:
                description = self.describe(source.name)
                obj = ServerObject(
                    source.kind,
                    source.name,
                    description.get("topic") or source.topic,
                    description.get("statement"),
                    tuple(q.get("id", "") for q in description.get("readQueries") or ()),
                )
            state[source.name.upper()] = obj
        return state


# ---------------------------------------------------------------- plan and apply


def plan_against(
    client: KsqlClient,
    statements: Sequence[Statement],
    *,
    delete: bool = False,
    delete_topics: bool = False,
    previously_managed: Collection[str] = (),
) -> Plan:
    """The plan from what ``client``'s server reports to ``statements``."""
    names = [s.name for s in statements] + list(previously_managed)
    return compute_plan(
        statements,
        client.current_state(names),
        delete=delete,
        delete_topics=delete_topics,
        previously_managed=previously_managed,
    )


@dataclass(frozen=True)
class StepResult:
    step: Step
    entities: list[dict[str, Any]]

    @property
    def warnings(self) -> list[str]:
        return [
            str(e.get("message", "")) for e in self.entities if e.get("@type") == "warning_entity"
        ]


def apply_plan(client: KsqlClient, plan: Plan) -> list[StepResult]:
    """Run the plan's statements in order, one request each; stop at the first error.

    One request per statement so that an error names its step; the exception's
    ``entities`` are what that request had done, and earlier steps stay applied.
    """
    results = []
    for step in plan.changes:
        if step.sql is not None:  # always, for changes; this tells mypy
            results.append(StepResult(step, client.execute(step.sql)))
    return results
