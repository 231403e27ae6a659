"""Reading a service's /metrics in tests: totals per series and per metric name."""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    totals: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            totals[name_labels] = float(value)
            totals[name_labels.split("{", 1)[0]] += float(value)
    return totals


def wait_for_metric(port: int, name: str, minimum: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if scrape(port).get(name, 0) >= minimum:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{name} did not reach {minimum} within {timeout}s")
