"""The operator's own settings, from ``OPERATOR_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from energy_pipeline.settings import EnvSettings


class OperatorSettings(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="OPERATOR_", extra="forbid", populate_by_name=True)

    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9090, ge=0, le=65535)
    # How often every Ready pipeline is checked for drift (a topic deleted, a ksqlDB
    # object missing or changed).
    drift_interval_seconds: float = Field(60.0, gt=0)
    # How long deletion keeps trying to clean up unreachable dependencies before it
    # gives up, says so in an Event, and lets the resource go.
    deletion_timeout_seconds: float = Field(300.0, ge=0)
    kafka_timeout_seconds: float = Field(10.0, gt=0)
    ksql_timeout_seconds: float = Field(10.0, gt=0)
    # The longest wait between two tries when a dependency is unavailable.
    max_retry_delay_seconds: float = Field(60.0, gt=0)
