"""``make report``: the simulated day is the producer's, and the picture is written."""

from __future__ import annotations

import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from energy_pipeline.local.report import day_config, simulate_day
from energy_pipeline.producer.model import Simulation
from energy_pipeline.producer.service import ProducerSettings

pytestmark = pytest.mark.unit


def test_the_day_has_the_readings_the_producer_sends() -> None:
    config = day_config("2026-01-05")
    producer = ProducerSettings.load({"start": "2026-01-05T00:00:00Z"}).simulation()
    assert config == producer
    days = simulate_day(config)
    # The producer's model, round by round: same readings, so same sums and highs.
    simulation = Simulation(producer)
    energy: dict[str, float] = {area: 0.0 for area in producer.areas}
    high: dict[str, int] = {area: 0 for area in producer.areas}
    for _ in range(24 * 60):  # one day of 60-second rounds
        _, readings = simulation.next_round()
        for sensor, value in readings:
            energy[sensor.area] += value
            high[sensor.area] += value > 100
    assert simulation.moment == config.start + timedelta(days=1)
    for area, day in days.items():
        assert day.energy_kwh == pytest.approx(energy[area])
        assert len(day.high) == high[area]
        assert all(value > 100 for _, value in day.high)
        assert day.moments[0] == datetime(2026, 1, 5, tzinfo=UTC)
        assert len(day.moments) == len(day.mean) == 24 * 60


def test_a_weekday_has_office_peaks_and_quiet_nights() -> None:
    days = simulate_day(day_config("2026-01-05"))
    offices = days["offices"]
    assert offices.high, "a weekday's office peak exceeds the threshold"
    assert all(7 <= moment.hour < 20 for moment, _ in offices.high)
    night = [m for t, m in zip(offices.moments, offices.mean, strict=True) if t.hour < 6]
    noon = [m for t, m in zip(offices.moments, offices.mean, strict=True) if 10 <= t.hour < 12]
    assert max(night) < min(noon)


def test_report_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "report" / "day.png"
    result = subprocess.run(
        [sys.executable, "-m", "energy_pipeline.local.report", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width >= 800 and height >= 600
    # Deterministic: the same day draws the same picture.
    again = tmp_path / "again.png"
    subprocess.run(
        [sys.executable, "-m", "energy_pipeline.local.report", "--out", str(again)],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert again.read_bytes() == data


def test_report_refuses_a_bad_day(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "energy_pipeline.local.report", "--day", "Monday"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "report:" in result.stderr
