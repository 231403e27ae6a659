"""Stopping a service cleanly: SIGTERM (Kubernetes) and SIGINT (Ctrl-C) set a flag
that the service's loop checks; the loop then flushes and closes its clients."""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

from energy_pipeline.metrics_server import MetricsServer
from energy_pipeline.settings import SettingsError

log = logging.getLogger(__name__)

S = TypeVar("S")


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between rounds."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def set(self) -> None:
        self.event.set()


# The young generation is collected after this many allocations (Python's default is
# 700): a service's loop allocates hundreds of thousands of short-lived objects a
# second (messages, bytes) and no reference cycles, so collecting often costs time
# and finds nothing.
YOUNG_COLLECTION_THRESHOLD = 50_000


def tune_gc_for_streaming() -> None:
    """Set the garbage collector up for a streaming loop, once start-up is done: what
    start-up made is moved out of the collector's sight (it lives as long as the
    process), and the young generation is collected less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


class Service(Protocol):
    def serve_metrics(self) -> MetricsServer | None: ...

    def run_until_stopped(self, stop: StopFlag) -> int: ...


def run_cli(prog: str, load: Callable[[], S], build: Callable[[S], Service]) -> int:
    """A service's ``main``: settings (or exit 2 naming the bad key), signals, the
    metrics endpoint, the loop; the exit code of the loop."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load()
    except SettingsError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    stop = StopFlag()
    stop.install()
    service = build(settings)
    server = service.serve_metrics()
    tune_gc_for_streaming()
    try:
        return service.run_until_stopped(stop)
    finally:
        if server is not None:
            server.stop()
