"""The ksqlDB client, plan and CLI against KsqlRestDouble (a test double, not ksqlDB)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from energy_ksql.cli import main
from energy_ksql.client import (
    EARLIEST,
    KsqlClient,
    KsqlNotReady,
    KsqlStatementError,
    KsqlUnauthorized,
    KsqlWrongEndpoint,
    apply_plan,
    plan_against,
)
from energy_ksql.double import KsqlRestDouble
from energy_ksql.render import Statement, render_statements
from energy_pipeline.spec import spec_from_manifest

pytestmark = pytest.mark.ksqldouble


@pytest.fixture
def client(double: KsqlRestDouble) -> Iterator[KsqlClient]:
    with KsqlClient(double.url, ready_timeout=5) as ksql:
        yield ksql


def _statements(**ksql: str) -> list[Statement]:
    return render_statements(spec_from_manifest({"spec": {"ksql": ksql}}))


def _manifest(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        f"kind: EnergyPipeline\nspec:\n  ksql:\n    url: '{url}'\n{extra}", encoding="utf-8"
    )
    return path


def test_apply_twice_changes_nothing_the_second_time(
    double: KsqlRestDouble, client: KsqlClient
) -> None:
    desired = _statements()
    first = apply_plan(client, plan_against(client, desired))
    assert [r.step.name for r in first] == ["ENERGY_READINGS", "AREA_TOTALS", "AREA_HOURLY"]
    assert set(double.sources) == {"ENERGY_READINGS", "AREA_TOTALS", "AREA_HOURLY"}
    sent = len(double.statements())

    second = plan_against(client, desired)
    assert second.is_noop
    assert apply_plan(client, second) == []
    creates = [s for s in double.statements()[sent:] if s.startswith("CREATE")]
    assert creates == []


def test_new_queries_are_asked_to_read_from_earliest(
    double: KsqlRestDouble, client: KsqlClient
) -> None:
    apply_plan(client, plan_against(client, _statements()))
    bodies = [body for method, path, body in double.requests if path == "/ksql"]
    assert bodies and all(body["streamsProperties"] == EARLIEST for body in bodies)


def test_changed_window_size_drops_then_creates_in_order(
    double: KsqlRestDouble, client: KsqlClient
) -> None:
    apply_plan(client, plan_against(client, _statements()))
    sent = len(double.statements())
    apply_plan(client, plan_against(client, _statements(windowSize="30 MINUTES")))
    changes = [s for s in double.statements()[sent:] if s.startswith(("CREATE", "DROP"))]
    assert [s.splitlines()[0] for s in changes] == [
        "DROP TABLE IF EXISTS AREA_HOURLY",
        "CREATE TABLE IF NOT EXISTS AREA_HOURLY",
    ]
    assert "SIZE 30 MINUTES" in double.sources["AREA_HOURLY"].statement
    assert plan_against(client, _statements(windowSize="30 MINUTES")).is_noop


def test_a_moved_stream_is_dropped_after_its_tables(
    double: KsqlRestDouble, client: KsqlClient
) -> None:
    apply_plan(client, plan_against(client, _statements()))
    spec = spec_from_manifest({"spec": {"topics": {"processed": {"name": "processed_v2"}}}})
    results = apply_plan(client, plan_against(client, render_statements(spec)))
    assert [(r.step.action.value, r.step.name) for r in results] == [
        ("drop", "AREA_TOTALS"),
        ("drop", "AREA_HOURLY"),
        ("drop", "ENERGY_READINGS"),
        ("create", "ENERGY_READINGS"),
        ("create", "AREA_TOTALS"),
        ("create", "AREA_HOURLY"),
    ]
    assert double.sources["ENERGY_READINGS"].topic == "processed_v2"


def test_delete_with_topics_drops_everything_but_keeps_the_processed_topic(
    double: KsqlRestDouble, client: KsqlClient
) -> None:
    desired = _statements()
    apply_plan(client, plan_against(client, desired))
    apply_plan(client, plan_against(client, desired, delete=True, delete_topics=True))
    assert double.sources == {}
    assert double.deleted_topics == ["area_hourly", "area_totals"]


def test_a_starting_server_is_waited_for_honouring_retry_after(double: KsqlRestDouble) -> None:
    double.set_starting(requests=2, retry_after=3)
    waits: list[float] = []
    with KsqlClient(double.url, ready_timeout=30, sleep=waits.append) as client:
        apply_plan(client, plan_against(client, _statements()))
    assert waits == [3.0, 3.0]
    assert "AREA_HOURLY" in double.sources


def test_a_server_that_stays_starting_raises_not_ready(double: KsqlRestDouble) -> None:
    double.set_starting(requests=100, retry_after=2)
    waits: list[float] = []
    with KsqlClient(double.url, ready_timeout=0.5, sleep=waits.append) as client:
        with pytest.raises(KsqlNotReady, match="not yet ready") as caught:
            client.execute("LIST STREAMS;")
    assert caught.value.error_code == 50302
    assert waits == []  # a 2 s Retry-After does not fit in 0.5 s


def test_ksqldb_errors_are_typed_and_verbatim(double: KsqlRestDouble, client: KsqlClient) -> None:
    apply_plan(client, plan_against(client, _statements()))
    with pytest.raises(KsqlStatementError) as caught:
        client.execute("DROP STREAM ENERGY_READINGS;")
    assert caught.value.error_code == 40001
    assert str(caught.value).startswith("Cannot drop ENERGY_READINGS.")
    with pytest.raises(KsqlStatementError, match="already exists"):
        client.execute(_statements()[0].sql.replace(" IF NOT EXISTS", ""))
    with pytest.raises(KsqlWrongEndpoint):
        client.execute("SELECT * FROM AREA_TOTALS;")


def test_if_not_exists_on_an_existing_object_is_a_warning(client: KsqlClient) -> None:
    stream = _statements()[0].sql
    client.execute(stream)
    [entity] = client.execute(stream)
    assert entity["@type"] == "warning_entity"
    assert "already exists" in entity["message"]


def test_healthcheck_reads_the_body_not_the_status(
    double: KsqlRestDouble, client: KsqlClient
) -> None:
    assert client.healthcheck().is_healthy
    double.healthy = False
    assert not client.healthcheck().is_healthy
    assert client.info()["version"].endswith("ksql-rest-double")


def test_basic_auth() -> None:
    with KsqlRestDouble(credentials=("energy", "s3cret")) as server:
        with KsqlClient(server.url, auth=("energy", "s3cret")) as good:
            assert good.list_sources() == []
        with KsqlClient(server.url, auth=("energy", "wrong")) as bad:
            with pytest.raises(KsqlUnauthorized):
                bad.list_sources()


def test_describe_returns_the_stored_statement(client: KsqlClient) -> None:
    apply_plan(client, plan_against(client, _statements()))
    description = client.describe("AREA_HOURLY")
    assert description["statement"].startswith("CREATE TABLE IF NOT EXISTS AREA_HOURLY")
    assert description["windowType"] == "TUMBLING"
    assert client.describe("ENERGY_READINGS")["readQueries"]


def test_pull_queries_answer_only_seeded_rows(double: KsqlRestDouble, client: KsqlClient) -> None:
    apply_plan(client, plan_against(client, _statements()))
    with pytest.raises(Exception, match="never computes aggregates"):
        client.query("SELECT * FROM AREA_TOTALS WHERE `area` = 'offices';")
    double.seed_rows(
        "AREA_TOTALS", "`area` STRING KEY, `READINGS` BIGINT", [["offices", 3], ["lab", 1]]
    )
    result = client.query("SELECT * FROM AREA_TOTALS WHERE `area` = 'offices';")
    assert result.as_dicts() == [{"area": "offices", "READINGS": 3}]


# ---------------------------------------------------------------- the CLI


def test_cli_refuses_a_bad_name_and_sends_nothing(
    double: KsqlRestDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(tmp_path, double.url, "    streamName: 'x; DROP TABLE y'\n")
    for command in (["render"], ["plan"], ["apply"]):
        assert main([*command, "-f", str(manifest)]) == 2
        assert "streamName" in capsys.readouterr().err
    assert double.requests == []


def test_cli_render_plan_apply_status_query(
    double: KsqlRestDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = str(_manifest(tmp_path, double.url))
    assert main(["render", "-f", manifest]) == 0
    assert "CREATE STREAM IF NOT EXISTS ENERGY_READINGS" in capsys.readouterr().out
    assert main(["plan", "-f", manifest]) == 0
    assert "create table AREA_HOURLY: missing" in capsys.readouterr().out
    assert double.sources == {}
    assert main(["apply", "-f", manifest]) == 0
    assert "applied: create AREA_HOURLY" in capsys.readouterr().out
    assert main(["apply", "-f", manifest]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["status", "-f", manifest]) == 0
    assert "table AREA_TOTALS: present" in capsys.readouterr().out
    double.seed_rows("AREA_TOTALS", "`area` STRING KEY, `READINGS` BIGINT", [["lab", 7]])
    assert main(["query", "-f", manifest, "--area", "lab"]) == 0
    assert '"READINGS": 7' in capsys.readouterr().out


def test_cli_prints_the_ksqldb_message_verbatim(
    double: KsqlRestDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = str(_manifest(tmp_path, double.url))
    assert main(["apply", "-f", manifest]) == 0
    capsys.readouterr()
    # A table read by no one but created outside the pipeline blocks a DROP of the stream.
    with KsqlClient(double.url) as client:
        client.execute(
            "CREATE TABLE SOMEONE_ELSES WITH (KAFKA_TOPIC='x') AS SELECT `area`, "
            "COUNT(*) AS N FROM ENERGY_READINGS GROUP BY `area` EMIT CHANGES;"
        )
    assert main(["apply", "-f", manifest, "--delete"]) == 1
    err = capsys.readouterr().err
    assert "ksqlDB error 40001: Cannot drop ENERGY_READINGS." in err
    assert "The following queries read from this source: [CTAS_SOMEONE_ELSES_" in err
