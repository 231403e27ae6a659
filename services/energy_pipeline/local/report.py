"""``make report``: a picture of one simulated day, for those who would rather look.

    python -m energy_pipeline.local.report [--day 2026-01-05] [--out build/report/simulated-day.png]

Runs the producer's own model (:class:`~energy_pipeline.producer.model.Simulation`)
with the producer's default settings for one day from midnight, so the readings are
the ones ``energy-producer --start <day>T00:00:00Z`` sends, and draws per area the load
profile (the mean reading of each round), every reading above the threshold (the
high-consumption moments the transformer flags) and the off-hours (night) bands. No
Kafka is involved.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from energy_pipeline.producer.model import Simulation, SimulationConfig
from energy_pipeline.producer.service import ProducerSettings
from energy_pipeline.schema import DEFAULT_THRESHOLD
from energy_pipeline.settings import SettingsError
from energy_pipeline.tariff import WORKDAY_END_HOUR, WORKDAY_START_HOUR

DEFAULT_DAY = "2026-01-05"  # a Monday, the producer's default start day
DEFAULT_OUT = Path("build/report/simulated-day.png")


@dataclass
class AreaDay:
    """One area's simulated day: the mean reading per round and the high readings."""

    moments: list[datetime] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    high: list[tuple[datetime, float]] = field(default_factory=list)
    readings: int = 0
    energy_kwh: float = 0.0


def day_config(day: str, settings: ProducerSettings | None = None) -> SimulationConfig:
    """The producer's simulation settings, started at ``day``'s midnight (UTC)."""
    settings = settings or ProducerSettings.load({})
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return settings.model_copy(update={"start": start}).simulation()


def simulate_day(
    config: SimulationConfig, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, AreaDay]:
    """Pure: every round of one day, per area (in the configuration's order)."""
    simulation = Simulation(config)
    end = config.start + timedelta(days=1)
    days = {area: AreaDay() for area in config.areas}
    while simulation.moment < end:
        moment, readings = simulation.next_round()
        values: dict[str, list[float]] = defaultdict(list)
        for sensor, value in readings:
            values[sensor.area].append(value)
            if value > threshold:
                days[sensor.area].high.append((moment, value))
        for area, area_values in values.items():
            day = days[area]
            day.moments.append(moment)
            day.mean.append(sum(area_values) / len(area_values))
            day.readings += len(area_values)
            day.energy_kwh += sum(area_values)
    return days


def plot_day(
    days: dict[str, AreaDay], config: SimulationConfig, out: Path, threshold: float
) -> Path:
    """Write the PNG: one panel per area, sharing the time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        len(days), 1, figsize=(11, 2.6 * len(days) + 0.8), sharex=True, squeeze=False
    )
    start = config.start
    day_name = start.strftime("%A %Y-%m-%d")
    figure.suptitle(
        f"Simulated day, {day_name} (UTC): {config.sensors_per_area} sensors per area, "
        f"seed {config.seed}",
        fontsize=12,
    )
    for axis, (area, day) in zip(axes[:, 0], days.items(), strict=True):
        axis.axvspan(start, start + timedelta(hours=WORKDAY_START_HOUR), color="0.92", lw=0)
        axis.axvspan(
            start + timedelta(hours=WORKDAY_END_HOUR),
            start + timedelta(days=1),
            color="0.92",
            lw=0,
            label="off hours",
        )
        axis.plot(day.moments, day.mean, color="tab:blue", lw=1.2, label="mean reading")
        axis.axhline(threshold, color="tab:red", lw=0.8, ls="--", label=f"threshold {threshold:g}")
        if day.high:
            axis.scatter(
                [moment for moment, _ in day.high],
                [value for _, value in day.high],
                s=9,
                color="tab:red",
                zorder=3,
                label="high readings",
            )
        share = 100 * len(day.high) / day.readings if day.readings else 0.0
        axis.set_title(
            f"{area}: {day.energy_kwh:,.0f} kWh, high readings: {len(day.high)} ({share:.1f} %)",
            fontsize=10,
            loc="left",
        )
        axis.set_ylabel("kWh per reading")
        axis.set_ylim(bottom=0)
        axis.grid(True, axis="y", color="0.85", lw=0.5)
    axes[0, 0].legend(loc="upper left", fontsize=8, ncols=2)  # the night is low: room there
    bottom = axes[-1, 0]
    bottom.set_xlim(start, start + timedelta(days=1))
    bottom.xaxis.set_major_locator(mdates.HourLocator(byhour=range(0, 24, 2), tz=UTC))  # type: ignore[no-untyped-call]
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))  # type: ignore[no-untyped-call]
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    # No timestamps in the file's metadata: the same day gives the same bytes.
    figure.savefig(out, dpi=110, metadata={"Software": None})
    plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m energy_pipeline.local.report",
        description="Draw one simulated day of the producer's model: per-area load profile "
        "and high-consumption readings.",
    )
    parser.add_argument("--day", default=DEFAULT_DAY, help=f"the day, YYYY-MM-DD ({DEFAULT_DAY})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the PNG ({DEFAULT_OUT})")
    parser.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD, help="high above this (100)"
    )
    args = parser.parse_args(argv)
    try:
        config = day_config(args.day)
    except (ValueError, SettingsError) as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    days = simulate_day(config, args.threshold)
    out = plot_day(days, config, args.out, args.threshold)
    for area, day in days.items():
        print(f"{area:<12} {day.energy_kwh:>10,.0f} kWh {len(day.high):>5} high readings")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
