"""The apply plan over the states an object can be in: missing, equal, changed, extra."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from energy_ksql.plan import Action, ServerObject, Step, compute_plan, parse_definition
from energy_ksql.render import Statement, render_statements
from energy_pipeline.spec import EnergyPipelineSpec, spec_from_manifest

pytestmark = pytest.mark.unit


def _statements(**ksql: str) -> list[Statement]:
    return render_statements(spec_from_manifest({"spec": {"ksql": ksql}}))


def _server(statements: list[Statement]) -> dict[str, ServerObject]:
    """A server that holds exactly these statements."""
    return {s.name: ServerObject(s.kind, s.name, None, s.sql) for s in statements}


def _summary(steps: Sequence[Step]) -> list[tuple[str, str]]:
    return [(s.action.value, s.name) for s in steps]


def test_everything_missing_creates_stream_then_tables() -> None:
    desired = _statements()
    plan = compute_plan(desired, {})
    assert _summary(plan.changes) == [
        ("create", "ENERGY_READINGS"),
        ("create", "AREA_TOTALS"),
        ("create", "AREA_HOURLY"),
    ]
    assert [s.sql for s in plan.changes] == [s.sql for s in desired]
    assert all("IF NOT EXISTS" in (s.sql or "") for s in plan.changes)


def test_everything_equal_is_a_noop() -> None:
    desired = _statements()
    plan = compute_plan(desired, _server(desired))
    assert plan.is_noop
    assert {s.action for s in plan.steps} == {Action.KEEP}
    assert "nothing to do" in plan.render()


def test_one_missing_table_is_created_alone() -> None:
    desired = _statements()
    current = _server(desired)
    del current["AREA_HOURLY"]
    assert _summary(compute_plan(desired, current).changes) == [("create", "AREA_HOURLY")]


def test_changed_window_size_drops_then_creates_the_windowed_table() -> None:
    current = _server(_statements())
    plan = compute_plan(_statements(windowSize="15 MINUTES"), current)
    assert _summary(plan.changes) == [("drop", "AREA_HOURLY"), ("create", "AREA_HOURLY")]
    drop, create = plan.changes
    assert drop.sql == "DROP TABLE IF EXISTS AREA_HOURLY;"
    assert "SIZE 15 MINUTES" in (create.sql or "")
    assert "window_seconds 3600 -> 900" in drop.reason


def test_changed_sink_topic_of_the_totals_table_is_drop_and_create() -> None:
    desired = _statements()
    current = _server(desired)
    moved = current["AREA_TOTALS"].statement or ""
    current["AREA_TOTALS"] = ServerObject(
        "TABLE", "AREA_TOTALS", None, moved.replace("'area_totals'", "'old_totals'")
    )
    plan = compute_plan(desired, current)
    assert _summary(plan.changes) == [("drop", "AREA_TOTALS"), ("create", "AREA_TOTALS")]


def test_a_stream_with_appended_columns_is_replaced_in_place() -> None:
    desired = _statements()
    older = desired[0].sql.replace(",\n    `isHighConsumption` BOOLEAN", "")
    current = _server(desired)
    current["ENERGY_READINGS"] = ServerObject("STREAM", "ENERGY_READINGS", None, older)
    plan = compute_plan(desired, current)
    assert _summary(plan.changes) == [("replace", "ENERGY_READINGS")]
    assert (plan.changes[0].sql or "").startswith("CREATE OR REPLACE STREAM ENERGY_READINGS (")


def test_a_stream_on_another_topic_is_dropped_after_its_tables_and_all_recreated() -> None:
    desired = _statements()
    current = _server(desired)
    moved = (current["ENERGY_READINGS"].statement or "").replace(
        "'processed_iot_data'", "'old_topic'"
    )
    current["ENERGY_READINGS"] = ServerObject("STREAM", "ENERGY_READINGS", None, moved)
    plan = compute_plan(desired, current)
    actions = _summary(plan.changes)
    assert actions[:3] == [
        ("drop", "AREA_TOTALS"),
        ("drop", "AREA_HOURLY"),
        ("drop", "ENERGY_READINGS"),
    ]
    assert actions[3:] == [
        ("create", "ENERGY_READINGS"),
        ("create", "AREA_TOTALS"),
        ("create", "AREA_HOURLY"),
    ]
    assert not [s for s in plan.steps if s.action is Action.KEEP]


def test_an_object_of_the_wrong_kind_is_dropped_as_what_it_is() -> None:
    desired = _statements()
    current = _server(desired)
    current["AREA_TOTALS"] = ServerObject("STREAM", "AREA_TOTALS", "t", None)
    plan = compute_plan(desired, current)
    assert plan.changes[0].sql == "DROP STREAM IF EXISTS AREA_TOTALS;"
    assert _summary(plan.changes) == [("drop", "AREA_TOTALS"), ("create", "AREA_TOTALS")]


def test_extra_objects_are_left_alone_unless_we_managed_them() -> None:
    desired = _statements()
    current = _server(desired)
    current["SOMEONE_ELSES"] = ServerObject("TABLE", "SOMEONE_ELSES", "x")
    current["OLD_HOURLY"] = ServerObject("TABLE", "OLD_HOURLY", "y")
    plan = compute_plan(desired, current, previously_managed=["old_hourly"])
    assert _summary(plan.changes) == [("drop", "OLD_HOURLY")]
    ignored = [s for s in plan.steps if s.action is Action.IGNORE]
    assert _summary(ignored) == [("ignore", "SOMEONE_ELSES")]


def test_delete_drops_tables_before_the_stream_and_never_the_processed_topic() -> None:
    desired = _statements()
    plan = compute_plan(desired, _server(desired), delete=True, delete_topics=True)
    assert [s.sql for s in plan.changes] == [
        "DROP TABLE IF EXISTS AREA_HOURLY DELETE TOPIC;",
        "DROP TABLE IF EXISTS AREA_TOTALS DELETE TOPIC;",
        "DROP STREAM IF EXISTS ENERGY_READINGS;",
    ]


def test_delete_of_what_is_absent_sends_nothing() -> None:
    assert compute_plan(_statements(), {}, delete=True).is_noop


def test_plan_renders_each_object_and_statement() -> None:
    text = compute_plan(_statements(windowSize="2 HOURS"), _server(_statements())).render()
    assert "    drop table AREA_HOURLY: window_seconds 3600 -> 7200" in text
    assert "-- 1. drop table AREA_HOURLY\nDROP TABLE IF EXISTS AREA_HOURLY;" in text
    assert "    keep stream ENERGY_READINGS: equal" in text


def test_definitions_survive_ksqldb_reformatting() -> None:
    """ksqlDB stores a reformatted statement; it must compare equal to ours."""
    ours = render_statements(EnergyPipelineSpec())
    stored_stream = (
        "CREATE STREAM ENERGY_READINGS (`sensorId` STRING, `area` STRING, "
        "`energyConsumption` DOUBLE, `timestamp` STRING, `readingId` STRING, "
        "`isHighConsumption` BOOLEAN) WITH (KAFKA_TOPIC='processed_iot_data', "
        "KEY_FORMAT='KAFKA', TIMESTAMP='`timestamp`', "
        "TIMESTAMP_FORMAT='yyyy-MM-dd''T''HH:mm:ss[.SSSSSS][.SSS]XXX', VALUE_FORMAT='JSON');"
    )
    stored_hourly = (
        "CREATE TABLE AREA_HOURLY WITH (KAFKA_TOPIC='area_hourly', PARTITIONS=6, REPLICAS=1, "
        "VALUE_FORMAT='JSON') AS SELECT\n  ENERGY_READINGS.`area` `area`,\n"
        "  WINDOWSTART WINDOW_START,\n  WINDOWEND WINDOW_END,\n  COUNT(*) READINGS,\n"
        "  AVG(ENERGY_READINGS.`energyConsumption`) AVG_CONSUMPTION,\n"
        "  SUM((CASE WHEN ENERGY_READINGS.`isHighConsumption` THEN 1 ELSE 0 END)) "
        "HIGH_READINGS\nFROM ENERGY_READINGS ENERGY_READINGS\n"
        "WINDOW TUMBLING ( SIZE 3600 SECONDS ) \nGROUP BY ENERGY_READINGS.`area`\nEMIT CHANGES;"
    )
    assert parse_definition(stored_stream) == parse_definition(ours[0].sql)
    assert parse_definition(stored_hourly) == parse_definition(ours[2].sql)
