"""What energy costs, and when it is wasted: the tariff and the off-hours rule.

Plain functions of the reading's event time (the simulated clock), so that cost per
hour and off-hours energy follow the simulated day, not the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# The building is expected to be empty outside these hours and at weekends: energy
# used then is the usual waste (lights, screens and HVAC left on).
WORKDAY_START_HOUR = 7
WORKDAY_END_HOUR = 20


@dataclass(frozen=True)
class Tariff:
    """A price per kWh, optionally higher in peak hours (``peak_start_hour`` to
    ``peak_end_hour``, UTC, every day)."""

    price_per_kwh: float = 0.15
    peak_price_per_kwh: float | None = None
    peak_start_hour: int = 8
    peak_end_hour: int = 20
    currency: str = "EUR"

    def __post_init__(self) -> None:
        if self.price_per_kwh < 0 or (self.peak_price_per_kwh or 0) < 0:
            raise ValueError("prices must be >= 0")
        if not 0 <= self.peak_start_hour < self.peak_end_hour <= 24:
            raise ValueError("peak hours must satisfy 0 <= start < end <= 24")

    def price_at(self, moment: datetime) -> float:
        if self.peak_price_per_kwh is not None and (
            self.peak_start_hour <= moment.hour < self.peak_end_hour
        ):
            return self.peak_price_per_kwh
        return self.price_per_kwh


def is_off_hours(moment: datetime) -> bool:
    """Night or weekend, when the building should use only its base load."""
    return moment.weekday() >= 5 or not WORKDAY_START_HOUR <= moment.hour < WORKDAY_END_HOUR
