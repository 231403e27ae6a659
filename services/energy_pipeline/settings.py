"""Settings from the environment, shared by every service.

Each service has one settings class with its own environment prefix
(``PRODUCER_``, ``TRANSFORMER_``). The connection to Kafka is common and read
without prefix, as Kubernetes manifests usually spell it
(``KAFKA_BOOTSTRAP_SERVERS``, ``KAFKA_SECURITY_PROTOCOL``, ...).

A variable that carries a service's prefix but names no setting is a typo, and
start-up fails with its name rather than silently running on a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, Self

import pydantic_settings
from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """A setting is unknown or has a bad value; the message names the key."""


class EnvSettings(BaseSettings):
    """Settings read from the environment with a prefix, where a typo is an error."""

    model_config = SettingsConfigDict(extra="forbid", populate_by_name=True)

    @classmethod
    def prefix(cls) -> str:
        return str(cls.model_config.get("env_prefix", "")).upper()

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None) -> Self:
        """Read the environment (and flags given as ``overrides``), or fail naming the key."""
        prefix = cls.prefix()
        if prefix:
            known = {f"{prefix}{name}".upper() for name in cls.model_fields}
            for key in os.environ:
                if key.upper().startswith(prefix) and key.upper() not in known:
                    raise SettingsError(f"unknown setting {key}; known: {', '.join(sorted(known))}")
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        try:
            return cls(**given)
        except ValidationError as error:
            raise SettingsError(_describe(cls, error)) from None
        except pydantic_settings.SettingsError as error:
            raise SettingsError(str(error)) from None


class ServiceSettings(EnvSettings):
    """Base of every service's settings: the Kafka connection."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers"),
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL", "security_protocol")
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, validation_alias=AliasChoices("KAFKA_SASL_MECHANISM", "sasl_mechanism")
    )
    sasl_username: str | None = Field(
        None, validation_alias=AliasChoices("KAFKA_SASL_USERNAME", "sasl_username")
    )
    sasl_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("KAFKA_SASL_PASSWORD", "sasl_password")
    )
    ssl_ca_location: str | None = Field(
        None, validation_alias=AliasChoices("KAFKA_SSL_CA_LOCATION", "ssl_ca_location")
    )

    @model_validator(mode="after")
    def _sasl_complete(self) -> Self:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "KAFKA_SECURITY_PROTOCOL is SASL_*: set KAFKA_SASL_MECHANISM, "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        return self


def _describe(cls: type[EnvSettings], error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        key = f"{cls.prefix()}{name}".upper() if name else "settings"
        alias = cls.model_fields[name].validation_alias if name in cls.model_fields else None
        if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
            key = alias.choices[0]
        problems.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
    return "invalid settings: " + "; ".join(problems)
