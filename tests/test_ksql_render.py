"""Rendering the ksqlDB statements, and the pipeline spec they are rendered from."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from energy_ksql.render import (
    InvalidNameError,
    render_drop,
    render_pull_query,
    render_sql,
    render_statements,
    replace_form,
)
from energy_pipeline import schema
from energy_pipeline.spec import (
    EnergyPipelineSpec,
    SpecError,
    load_manifest,
    spec_from_manifest,
    window_size_seconds,
)
from energy_pipeline.topics import DEFAULT_TOPICS

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden" / "ksql_default_pipeline.sql"
BAD_NAMES = ["x; DROP TABLE y", "a b", "`quoted`", "1abc", "", "name'--", "naïve"]


def test_default_pipeline_matches_golden_file() -> None:
    rendered = render_sql(EnergyPipelineSpec())
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(rendered, encoding="utf-8")
    assert rendered == GOLDEN.read_text(encoding="utf-8")


def test_statements_come_in_dependency_order_with_uppercase_names() -> None:
    statements = render_statements(EnergyPipelineSpec())
    assert [(s.role, s.kind, s.name) for s in statements] == [
        ("stream", "STREAM", "ENERGY_READINGS"),
        ("totals", "TABLE", "AREA_TOTALS"),
        ("windowed", "TABLE", "AREA_HOURLY"),
    ]
    assert all(s.sql.startswith(f"CREATE {s.kind} IF NOT EXISTS {s.name}") for s in statements)
    assert all("--" not in s.sql for s in statements), "template comments stay out of the SQL"


def test_every_parameter_reaches_the_statements() -> None:
    spec = spec_from_manifest(
        {
            "spec": {
                "topics": {"processed": {"name": "site7.processed"}},
                "ksql": {
                    "streamName": "site7_readings",
                    "totalsTableName": "site7_totals",
                    "windowedTableName": "site7_quarter",
                    "windowSize": "15 MINUTES",
                },
            }
        }
    )
    stream, totals, windowed = render_statements(spec)
    assert stream.name == "SITE7_READINGS"
    assert "CREATE STREAM IF NOT EXISTS site7_readings (" in stream.sql
    assert "KAFKA_TOPIC = 'site7.processed'" in stream.sql
    assert "CREATE TABLE IF NOT EXISTS site7_totals" in totals.sql
    assert "KAFKA_TOPIC = 'site7_totals'" in totals.sql
    assert "FROM site7_readings" in totals.sql
    assert "CREATE TABLE IF NOT EXISTS site7_quarter" in windowed.sql
    assert "KAFKA_TOPIC = 'site7_quarter'" in windowed.sql
    assert "FROM site7_readings" in windowed.sql
    assert "WINDOW TUMBLING (SIZE 15 MINUTES)" in windowed.sql


def test_stream_columns_are_the_reading_json_fields() -> None:
    stream = render_statements(EnergyPipelineSpec())[0]
    columns = re.findall(r"^\s+`(\w+)` \w+,?$", stream.sql, re.MULTILINE)
    assert columns == [
        schema.SENSOR_ID,
        schema.AREA,
        schema.ENERGY_CONSUMPTION,
        schema.TIMESTAMP,
        schema.READING_ID,
        schema.IS_HIGH_CONSUMPTION,
    ]
    assert "TIMESTAMP = '`timestamp`'" in stream.sql


def test_windowed_table_keeps_window_bounds_as_columns() -> None:
    windowed = render_statements(EnergyPipelineSpec())[2]
    assert "WINDOWSTART AS WINDOW_START" in windowed.sql
    assert "WINDOWEND AS WINDOW_END" in windowed.sql


@pytest.mark.parametrize("bad", BAD_NAMES)
@pytest.mark.parametrize("field", ["stream_name", "totals_table_name", "windowed_table_name"])
def test_a_bad_object_name_is_refused_by_render(field: str, bad: str) -> None:
    spec = EnergyPipelineSpec()
    # model_copy skips validation: render must check again on its own.
    broken = spec.model_copy(update={"ksql": spec.ksql.model_copy(update={field: bad})})
    with pytest.raises(InvalidNameError, match="not a ksqlDB identifier"):
        render_statements(broken)


@pytest.mark.parametrize("bad", ["x; DROP TABLE y", "a b", "topic'", "..", "t" * 250])
def test_a_bad_topic_name_is_refused_by_render(bad: str) -> None:
    spec = EnergyPipelineSpec()
    topics = spec.topics.model_copy(
        update={"processed": spec.topics.processed.model_copy(update={"name": bad})}
    )
    with pytest.raises(InvalidNameError, match="not a Kafka topic name"):
        render_statements(spec.model_copy(update={"topics": topics}))


def test_a_bad_window_size_is_refused_by_render() -> None:
    spec = EnergyPipelineSpec()
    broken = spec.model_copy(
        update={"ksql": spec.ksql.model_copy(update={"window_size": "1 HOUR); DROP"})}
    )
    with pytest.raises(InvalidNameError, match="window size"):
        render_statements(broken)


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_the_spec_refuses_bad_names_with_the_field_in_the_message(bad: str) -> None:
    with pytest.raises(SpecError, match=r"spec\.ksql\.totalsTableName"):
        spec_from_manifest({"spec": {"ksql": {"totalsTableName": bad}}})


def test_replace_form_and_drop() -> None:
    stream = render_statements(EnergyPipelineSpec())[0]
    assert replace_form(stream).startswith("CREATE OR REPLACE STREAM ENERGY_READINGS (")
    assert "IF NOT EXISTS" not in replace_form(stream)
    assert render_drop("TABLE", "AREA_TOTALS") == "DROP TABLE IF EXISTS AREA_TOTALS;"
    assert render_drop("TABLE", "T", delete_topic=True) == "DROP TABLE IF EXISTS T DELETE TOPIC;"
    with pytest.raises(InvalidNameError):
        render_drop("TABLE", "T; DROP STREAM S")


def test_pull_query_quotes_the_area_as_a_literal() -> None:
    assert render_pull_query("AREA_TOTALS", "offices") == (
        "SELECT * FROM AREA_TOTALS WHERE `area` = 'offices';"
    )
    assert render_pull_query("T", "o'; DROP TABLE T; --") == (
        "SELECT * FROM T WHERE `area` = 'o''; DROP TABLE T; --';"
    )
    for bad in ["", "x" * 300, "line\nbreak"]:
        with pytest.raises(InvalidNameError):
            render_pull_query("T", bad)


# ---------------------------------------------------------------- the spec


def test_spec_defaults_come_from_the_topic_and_schema_modules() -> None:
    spec = EnergyPipelineSpec()
    assert spec.topics.processed.to_topic_spec() == DEFAULT_TOPICS["processed"]
    assert spec.topics.dead_letter.to_topic_spec() == DEFAULT_TOPICS["deadLetter"]
    assert spec.high_consumption_threshold == schema.DEFAULT_THRESHOLD
    assert spec.kafka.topic_management == "admin"
    assert spec.deletion_policy == "Retain"


def test_manifest_is_read_from_yaml(tmp_path: Path) -> None:
    manifest = tmp_path / "pipeline.yaml"
    manifest.write_text(
        "apiVersion: energy.example.org/v1alpha1\n"
        "kind: EnergyPipeline\n"
        "metadata: {name: building}\n"
        "spec:\n"
        "  highConsumptionThreshold: 80\n"
        "  areaThresholds: {datacenter: 300}\n"
        "  kafka: {bootstrapServers: 'broker:9092', topicManagement: strimzi, cluster: energy}\n"
        "  ksql: {url: 'http://ksql:8088', windowSize: '30 MINUTES'}\n"
        "  deletionPolicy: Delete\n",
        encoding="utf-8",
    )
    spec = load_manifest(manifest)
    assert spec.threshold_for("datacenter") == 300
    assert spec.threshold_for("offices") == 80
    assert spec.kafka.cluster == "energy"
    assert spec.ksql.url == "http://ksql:8088"
    assert window_size_seconds(spec.ksql.window_size) == 1800
    assert spec.deletion_policy == "Delete"


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"kind": "Deployment", "spec": {}}, "expected 'EnergyPipeline'"),
        ({"spec": {"ksql": {"windowSize": "1 hour"}}}, r"spec\.ksql\.windowSize"),
        ({"spec": {"ksql": {"windowSize": "0 HOURS"}}}, r"spec\.ksql\.windowSize"),
        ({"spec": {"highConsumptionThreshold": -1}}, "highConsumptionThreshold"),
        ({"spec": {"tresholdTypo": 1}}, "tresholdTypo"),
        ({"spec": {"kafka": {"topicManagement": "strimzi"}}}, "kafka.cluster is required"),
        ({"spec": {"topics": {"alerts": {"name": "processed_iot_data"}}}}, "distinct"),
        ({"spec": {"ksql": {"streamName": "A", "totalsTableName": "a"}}}, "must differ"),
        ({"spec": {"ksql": {"url": "ksqldb:8088"}}}, r"spec\.ksql\.url"),
    ],
)
def test_invalid_manifests_are_refused_with_a_reason(
    manifest: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        spec_from_manifest(manifest)


def test_json_schema_carries_the_name_patterns_for_the_crd() -> None:
    text = str(EnergyPipelineSpec.model_json_schema(by_alias=True))
    assert "^[A-Za-z_][A-Za-z0-9_]*$" in text
    assert "^[a-zA-Z0-9._-]{1,249}$" in text
    assert "windowedTableName" in text
