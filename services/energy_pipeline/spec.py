"""The pipeline's specification: one model shared by the operator and the CLIs.

It is the ``spec:`` of an ``EnergyPipeline`` resource, spelled in camelCase as the
operator's CRD spells it; Python code uses the snake_case attribute names. The
name patterns are module constants so that the CRD generator (which reads this
model's JSON schema) and the ksqlDB renderer check names with the same rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from energy_pipeline.schema import DEFAULT_THRESHOLD
from energy_pipeline.tariff import Tariff
from energy_pipeline.topics import DEFAULT_TOPICS, SIMULATED_TIME_CONFIG, TopicSpec

# Kafka's own rule for topic names (kafka.common.internals.Topic): 1 to 249 of
# these characters, and neither "." nor "..".
TOPIC_NAME_PATTERN = r"^[a-zA-Z0-9._-]{1,249}$"
# An unquoted ksqlDB identifier. Anything else (quotes, spaces, ";") is refused
# rather than escaped: the names end up in statements, and a name that needs
# escaping is more likely a mistake or an injection than a wish.
KSQL_IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# A window size as ksqlDB writes it: a positive count and a unit, e.g. "1 HOUR",
# "15 MINUTES". Uppercase only, so that the CRD's schema and this model agree.
WINDOW_SIZE_PATTERN = r"^[1-9][0-9]{0,5} (SECOND|MINUTE|HOUR|DAY)S?$"
# A Kubernetes Secret name (an RFC 1123 DNS subdomain).
K8S_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"

_UNIT_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}


def is_topic_name(name: str) -> bool:
    return re.fullmatch(TOPIC_NAME_PATTERN, name) is not None and name not in (".", "..")


def is_ksql_identifier(name: str) -> bool:
    return re.fullmatch(KSQL_IDENTIFIER_PATTERN, name) is not None


def window_size_seconds(size: str) -> int:
    """Seconds in a window size such as ``"1 HOUR"``; ValueError if it is not one."""
    match = re.fullmatch(WINDOW_SIZE_PATTERN, size)
    if match is None:
        raise ValueError(f"window size {size!r} is not like '1 HOUR' or '15 MINUTES'")
    count = int(size.split(" ")[0])
    return count * _UNIT_SECONDS[match.group(1)]


def _not_dots(name: str) -> str:
    if name in (".", ".."):
        raise ValueError("a topic cannot be named '.' or '..'")
    return name


TopicName = Annotated[str, StringConstraints(pattern=TOPIC_NAME_PATTERN), AfterValidator(_not_dots)]
KsqlIdentifier = Annotated[str, StringConstraints(pattern=KSQL_IDENTIFIER_PATTERN)]
WindowSize = Annotated[str, StringConstraints(pattern=WINDOW_SIZE_PATTERN)]
SecretName = Annotated[str, StringConstraints(pattern=K8S_SUBDOMAIN_PATTERN, max_length=253)]
# A Kubernetes object name (RFC 1123 label), e.g. a Strimzi Kafka cluster.
ResourceName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
Threshold = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Spec(BaseModel):
    # camelCase on the wire (the CRD), snake_case in Python; typos are errors.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class SecretRef(_Spec):
    """A Secret in the pipeline's namespace holding ``username`` and ``password``."""

    name: SecretName


class KafkaSpec(_Spec):
    bootstrap_servers: str = Field(default="kafka:9092", min_length=1)
    # The Strimzi Kafka cluster the topics belong to (label strimzi.io/cluster).
    cluster: ResourceName | None = None
    topic_management: Literal["strimzi", "admin"] = "admin"
    auth_secret_ref: SecretRef | None = None

    @model_validator(mode="after")
    def _cluster_for_strimzi(self) -> Self:
        if self.topic_management == "strimzi" and not self.cluster:
            raise ValueError("kafka.cluster is required when topicManagement is strimzi")
        return self


class TopicSettings(_Spec):
    name: TopicName
    partitions: int = Field(default=6, ge=1)
    replicas: int = Field(default=1, ge=1)
    config: dict[str, str] = Field(default_factory=lambda: dict(SIMULATED_TIME_CONFIG))

    @classmethod
    def of(cls, spec: TopicSpec) -> TopicSettings:
        return cls(
            name=spec.name,
            partitions=spec.partitions,
            replicas=spec.replicas,
            config=dict(spec.config),
        )

    def to_topic_spec(self) -> TopicSpec:
        return TopicSpec(self.name, self.partitions, self.replicas, dict(self.config))


def _default_topic(role: str) -> Callable[[], TopicSettings]:
    return lambda: TopicSettings.of(DEFAULT_TOPICS[role])


class TopicsSpec(_Spec):
    raw: TopicSettings = Field(default_factory=_default_topic("raw"))
    processed: TopicSettings = Field(default_factory=_default_topic("processed"))
    alerts: TopicSettings = Field(default_factory=_default_topic("alerts"))
    dead_letter: TopicSettings = Field(default_factory=_default_topic("deadLetter"))

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        names = [t.name for t in (self.raw, self.processed, self.alerts, self.dead_letter)]
        if len(set(names)) != len(names):
            raise ValueError(f"topic names must be distinct, got {names}")
        return self


class KsqlSpec(_Spec):
    url: str = Field(default="http://ksqldb:8088", pattern=r"^https?://[^\s/]+(/\S*)?$")
    auth_secret_ref: SecretRef | None = None
    stream_name: KsqlIdentifier = "ENERGY_READINGS"
    totals_table_name: KsqlIdentifier = "AREA_TOTALS"
    windowed_table_name: KsqlIdentifier = "AREA_HOURLY"
    window_size: WindowSize = "1 HOUR"

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        # ksqlDB names are case-insensitive unless quoted, and ours are never quoted.
        names = [
            n.upper() for n in (self.stream_name, self.totals_table_name, self.windowed_table_name)
        ]
        if len(set(names)) != len(names):
            raise ValueError("streamName, totalsTableName and windowedTableName must differ")
        return self


class TariffSpec(_Spec):
    """The price of energy; ``peakPricePerKwh`` applies from ``peakStartHour`` to
    ``peakEndHour`` (UTC, event time)."""

    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "EUR"
    price_per_kwh: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.15
    peak_price_per_kwh: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    peak_start_hour: int = Field(default=8, ge=0, le=23)
    peak_end_hour: int = Field(default=20, ge=1, le=24)

    @model_validator(mode="after")
    def _hours_in_order(self) -> Self:
        if self.peak_start_hour >= self.peak_end_hour:
            raise ValueError("tariff.peakStartHour must be before peakEndHour")
        return self

    def to_tariff(self) -> Tariff:
        return Tariff(
            self.price_per_kwh,
            self.peak_price_per_kwh,
            self.peak_start_hour,
            self.peak_end_hour,
            self.currency,
        )


class EnergyPipelineSpec(_Spec):
    kafka: KafkaSpec = Field(default_factory=KafkaSpec)
    topics: TopicsSpec = Field(default_factory=TopicsSpec)
    high_consumption_threshold: Threshold = DEFAULT_THRESHOLD
    area_thresholds: dict[str, Threshold] | None = None
    ksql: KsqlSpec = Field(default_factory=KsqlSpec)
    tariff: TariffSpec = Field(default_factory=TariffSpec)
    deletion_policy: Literal["Retain", "Delete"] = "Retain"

    def threshold_for(self, area: str) -> float:
        if self.area_thresholds and area in self.area_thresholds:
            return self.area_thresholds[area]
        return self.high_consumption_threshold


class SpecError(ValueError):
    """A manifest is not an EnergyPipeline or its spec is invalid; says which field."""


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "spec"
        parts.append(f"spec.{where}: {item['msg']}")
    return "; ".join(parts)


def spec_from_manifest(manifest: Mapping[str, Any]) -> EnergyPipelineSpec:
    """The spec of a decoded EnergyPipeline manifest (its ``spec:`` key)."""
    kind = manifest.get("kind")
    if kind is not None and kind != "EnergyPipeline":
        raise SpecError(f"manifest kind is {kind!r}, expected 'EnergyPipeline'")
    spec = manifest.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise SpecError("manifest 'spec' must be a mapping")
    try:
        return EnergyPipelineSpec.model_validate(spec)
    except ValidationError as error:
        raise SpecError(_describe(error)) from None


def load_manifest(path: str | Path) -> EnergyPipelineSpec:
    """Read an EnergyPipeline manifest (YAML) and return its validated spec."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not YAML: {error}") from None
    if not isinstance(document, Mapping):
        raise SpecError(f"{path}: expected a mapping with a 'spec' key")
    return spec_from_manifest(document)
