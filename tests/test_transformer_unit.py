"""The transformer's guard against a Kafka call that never returns."""

from __future__ import annotations

import threading

import pytest

from energy_pipeline.transformer import service

pytestmark = pytest.mark.unit


def test_a_call_that_does_not_return_marks_the_clients_wedged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "TRANSACTION_CALL_SECONDS", 0.2)
    release = threading.Event()

    def stuck() -> None:
        release.wait(10)

    with pytest.raises(service._ClientsBroken) as raised:
        service._bounded("a stuck commit", stuck)
    release.set()
    assert raised.value.wedged
    assert "a stuck commit did not return" in str(raised.value)


def test_a_call_that_fails_fails_in_the_caller() -> None:
    def fail() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        service._bounded("a failing commit", fail)
    service._bounded("a commit", lambda: None)  # returns: nothing raised
