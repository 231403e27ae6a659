"""Settings: the environment and flags, and typos that fail with the key named."""

from __future__ import annotations

import pytest

from energy_pipeline.producer.service import ProducerSettings
from energy_pipeline.settings import SettingsError

pytestmark = pytest.mark.unit


def test_environment_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1234")
    monkeypatch.setenv("PRODUCER_AREAS", "offices, cafetería")
    monkeypatch.setenv("PRODUCER_RATE", "50")
    settings = ProducerSettings.load({"rate": 0.0})
    assert settings.bootstrap_servers == "127.0.0.1:1234"
    assert settings.areas == ["offices", "cafetería"]
    assert settings.rate == 0.0  # a flag wins over the environment


def test_unknown_prefixed_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCER_SENSORS_PER_AREAA", "4")
    with pytest.raises(SettingsError, match="PRODUCER_SENSORS_PER_AREAA"):
        ProducerSettings.load()


def test_bad_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCER_INTERVAL", "-5")
    with pytest.raises(SettingsError, match="PRODUCER_INTERVAL"):
        ProducerSettings.load()


def test_sasl_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(SettingsError, match="KAFKA_SASL_USERNAME"):
        ProducerSettings.load()
