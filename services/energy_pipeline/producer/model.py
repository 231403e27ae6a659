"""The building simulation: what each sensor reads at a given simulated moment.

Pure and deterministic: the readings depend only on the seed, the start and the
settings, never on how fast the machine runs. See README "The simulated building".

Units: a value is the energy of one reading in kWh. Magnitudes follow the original
exercise, where 100 per reading is "high": the levels below are per reading at the
default 60-second interval and scale linearly with the interval.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

REFERENCE_INTERVAL_S = 60.0
DEFAULT_AREAS = ("offices", "lobby", "cafeteria")
DEFAULT_START = datetime.fromisoformat("2026-01-05T06:00:00+00:00")  # a Monday morning


class AreaKind(StrEnum):
    OFFICES = "offices"
    CAFETERIA = "cafeteria"
    LOBBY = "lobby"


def area_kind(area: str) -> AreaKind:
    """The consumption profile an area follows, from its name (``cafetería`` too)."""
    name = area.casefold()
    if "office" in name or "oficina" in name:
        return AreaKind.OFFICES
    if "cafe" in name or "kitchen" in name or "canteen" in name:
        return AreaKind.CAFETERIA
    # Lobby, corridors and anything unknown: lighting and HVAC all day.
    return AreaKind.LOBBY


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((hour - centre) / width) ** 2)


def _ramp(hour: float, start: float, end: float) -> float:
    """0 before ``start``, 1 after ``end``, smooth in between."""
    if hour <= start:
        return 0.0
    if hour >= end:
        return 1.0
    x = (hour - start) / (end - start)
    return x * x * (3 - 2 * x)


@dataclass(frozen=True)
class Profile:
    """Mean kWh per reading (60-s interval) of one sensor of each kind of area."""

    office_base: float = 18.0  # servers, fridges, standby: nights and weekends
    office_peak: float = 90.0  # desks, screens, HVAC at full occupancy
    office_lunch_dip: float = 0.15  # share of the peak that goes to lunch
    cafeteria_base: float = 8.0
    cafeteria_breakfast: float = 55.0
    cafeteria_lunch: float = 100.0
    cafeteria_afternoon: float = 15.0
    lobby_night: float = 30.0  # security lighting and ventilation
    lobby_day: float = 25.0  # added from opening to closing
    weekend_lobby_share: float = 0.6

    def level(self, kind: AreaKind, moment: datetime) -> float:
        hour = moment.hour + moment.minute / 60 + moment.second / 3600
        weekend = moment.weekday() >= 5
        if kind is AreaKind.OFFICES:
            if weekend:
                return self.office_base + 4.0 * _bump(hour, 12.0, 2.5)
            occupancy = _ramp(hour, 7.0, 9.5) - _ramp(hour, 17.5, 20.0)
            occupancy *= 1.0 - self.office_lunch_dip * _bump(hour, 13.0, 0.5)
            return self.office_base + (self.office_peak - self.office_base) * occupancy
        if kind is AreaKind.CAFETERIA:
            if weekend:
                return self.cafeteria_base + 15.0 * _bump(hour, 13.0, 1.2)
            return (
                self.cafeteria_base
                + self.cafeteria_breakfast * _bump(hour, 8.25, 0.6)
                + self.cafeteria_lunch * _bump(hour, 13.0, 0.75)
                + self.cafeteria_afternoon * _bump(hour, 16.5, 0.5)
            )
        daylight = _ramp(hour, 6.0, 8.0) - _ramp(hour, 20.0, 22.0)
        share = self.weekend_lobby_share if weekend else 1.0
        # Ventilation follows outdoor temperature: a little more in the afternoon.
        hvac = 4.0 * _bump(hour, 15.0, 3.0)
        return self.lobby_night + hvac + self.lobby_day * daylight * share


@dataclass(frozen=True)
class SimulationConfig:
    areas: Sequence[str] = DEFAULT_AREAS
    sensors_per_area: int = 3
    interval_s: float = 60.0
    start: datetime = DEFAULT_START
    seed: int = 1
    noise: float = 0.08  # relative standard deviation of one reading
    sensor_spread: float = 0.12  # sensors of one area differ by about this much
    fault_rate: float = 0.002  # chance per reading that a fault starts
    profile: Profile = field(default_factory=Profile)


@dataclass(frozen=True)
class Sensor:
    sensor_id: str
    area: str
    kind: AreaKind
    factor: float


@dataclass
class _FaultState:
    stuck_rounds: int = 0
    stuck_value: float = 0.0
    dropout_rounds: int = 0
    last_value: float = 0.0


def build_sensors(config: SimulationConfig, rng: random.Random) -> list[Sensor]:
    sensors = []
    for area in config.areas:
        for number in range(1, config.sensors_per_area + 1):
            factor = rng.lognormvariate(0.0, config.sensor_spread)
            sensors.append(Sensor(f"{area}-{number:02d}", area, area_kind(area), factor))
    return sensors


class Simulation:
    """Rounds of readings: every sensor once per ``interval_s`` of simulated time.

    Faults: a *spike* (failing equipment) multiplies one reading by 2.5-4; a *stuck*
    sensor repeats its last value for 30-120 rounds; a *dropout* sends nothing for
    5-60 rounds.
    """

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self.sensors = build_sensors(config, self._rng)
        self._faults = [_FaultState() for _ in self.sensors]
        self._scale = config.interval_s / REFERENCE_INTERVAL_S
        self.round_index = 0

    @property
    def moment(self) -> datetime:
        """The simulated time of the next round."""
        return self.config.start + timedelta(seconds=self.round_index * self.config.interval_s)

    def next_round(self) -> tuple[datetime, list[tuple[Sensor, float]]]:
        """The next round's moment and its readings (dropped-out sensors are absent)."""
        config = self.config
        moment = self.moment
        self.round_index += 1
        levels = {kind: config.profile.level(kind, moment) * self._scale for kind in AreaKind}
        rng = self._rng
        gauss, uniform, randint = rng.gauss, rng.uniform, rng.randint
        readings = []
        for sensor, state in zip(self.sensors, self._faults, strict=True):
            if state.dropout_rounds:
                state.dropout_rounds -= 1
                continue
            if state.stuck_rounds:
                state.stuck_rounds -= 1
                readings.append((sensor, state.stuck_value))
                continue
            value = levels[sensor.kind] * sensor.factor * (1.0 + config.noise * gauss())
            draw = rng.random()
            if draw < config.fault_rate:
                kind = draw / config.fault_rate
                if kind < 0.5:
                    value *= uniform(2.5, 4.0)
                elif kind < 0.8:
                    state.stuck_rounds = randint(30, 120)
                    state.stuck_value = state.last_value or value
                    value = state.stuck_value
                else:
                    state.dropout_rounds = randint(5, 60)
                    continue
            value = round(max(value, 0.0), 3)
            state.last_value = value
            readings.append((sensor, value))
        return moment, readings
