"""The local runner as a user runs it: make kafka-up / kafka-down / run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from energy_pipeline.local.broker import HOST, free_port, port_is_free

pytestmark = pytest.mark.kafka


def local(
    command: list[str], build: Path, port: int, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "ENERGY_PIPELINE_BUILD": str(build),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return subprocess.run(
        [sys.executable, "-m", "energy_pipeline.local", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_run_shows_every_area_and_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    result = local(["run", "--duration", "12"], tmp_path, port, timeout=180)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = result.stdout.split("final summary", 1)[1]
    rows = {line.split()[0]: line.split() for line in summary.splitlines()[2:5]}
    assert set(rows) == {"cafeteria", "lobby", "offices"}
    assert all(int(row[1]) > 0 for row in rows.values())  # readings per area
    for row in rows.values():  # cost at the default tariff: 0.15 a kWh, all day
        energy, cost = float(row[-2]), float(row[-1])
        # Both are rounded for display (energy to 0.1, cost to 0.01).
        assert cost == pytest.approx(0.15 * energy, abs=0.02) and cost > 0
    assert "Kafka stopped" in result.stdout
    assert port_is_free(port)
    assert not (tmp_path / "kafka" / "broker.pid").exists()


def test_kafka_up_on_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = local(["kafka-up"], tmp_path, port, timeout=60)
    assert result.returncode == 1
    assert f"port {HOST}:{port} is already taken" in result.stderr


def test_kafka_up_then_down(tmp_path: Path) -> None:
    port = free_port()
    up = local(["kafka-up"], tmp_path, port)
    try:
        assert up.returncode == 0, up.stderr
        assert f"bootstrap servers {HOST}:{port}" in up.stdout
        again = local(["kafka-up"], tmp_path, port)
        assert "already running" in again.stdout
        topics = local(["topics"], tmp_path, port)
        assert topics.returncode == 0 and "iot_sensor_data: created" in topics.stdout
    finally:
        down = local(["kafka-down"], tmp_path, port)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert port_is_free(port)
