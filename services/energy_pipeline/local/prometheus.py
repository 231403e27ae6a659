"""A real Prometheus on 127.0.0.1, for the tests and for a look at the local pipeline.

Debian's ``prometheus`` package (``apt-get install prometheus``) provides
``/usr/bin/prometheus`` and ``/usr/bin/promtool``; nothing is downloaded. One server
with a generated configuration in a work directory: it scrapes the given
``127.0.0.1`` targets, evaluates the given rule files and answers the HTTP API on
``127.0.0.1:<port>``. It is started and stopped by its PID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from energy_pipeline.local.broker import HOST, free_port, stop_pid

PROMETHEUS_BINARY = Path("/usr/bin/prometheus")
PROMTOOL_BINARY = Path("/usr/bin/promtool")
INSTALL_HINT = "apt-get install prometheus (Debian's package provides prometheus and promtool)"


class PrometheusError(RuntimeError):
    pass


def find_binary(name: str, default: Path) -> Path:
    """``default`` if it exists, else ``name`` on the PATH; a clear error otherwise."""
    if default.is_file():
        return default
    found = shutil.which(name)
    if found is None:
        raise PrometheusError(f"{name} is not installed: {INSTALL_HINT}")
    return Path(found)


def promtool() -> Path:
    return find_binary("promtool", PROMTOOL_BINARY)


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape job: ``targets`` are ports on 127.0.0.1; ``labels`` are added to every
    series, as Kubernetes relabeling adds ``namespace`` and ``pipeline``."""

    name: str
    ports: Sequence[int]
    labels: Mapping[str, str] = field(default_factory=dict)


def render_config(
    jobs: Sequence[ScrapeJob],
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> dict[str, Any]:
    """Pure: the prometheus.yml for these jobs, as data."""
    return {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": job.name,
                "static_configs": [
                    {
                        "targets": [f"{HOST}:{port}" for port in job.ports],
                        "labels": dict(job.labels),
                    }
                ],
            }
            for job in jobs
        ],
    }


class Prometheus:
    """One Prometheus server in ``workdir``: ``start()``, query, ``stop()``."""

    def __init__(
        self,
        workdir: Path,
        jobs: Sequence[ScrapeJob],
        rule_files: Sequence[Path] = (),
        port: int | None = None,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
    ) -> None:
        self.workdir = workdir
        self.port = free_port() if port is None else port
        self.config = render_config(jobs, rule_files, scrape_interval, evaluation_interval)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 30.0) -> Prometheus:
        binary = find_binary("prometheus", PROMETHEUS_BINARY)
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argument list
                [
                    str(binary),
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address={HOST}:{self.port}",
                    "--storage.tsdb.retention.time=1d",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with code {self.process.returncode}:\n{self.log()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as reply:  # noqa: S310 - our own local server
                    if reply.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise PrometheusError(f"prometheus was not ready within {timeout}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None:
            stop_pid(self.process.pid)
            self.process.wait()
            self.process = None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, path: str, **params: str | float) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; PrometheusError on an error."""
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 - our own local server
                body = json.loads(reply.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (the vector's samples)."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = (
            data["result"]
            if data["resultType"] != "scalar"
            else [{"metric": {}, "value": data["result"]}]
        )
        return result

    def query_range(
        self, expr: str, start: float, end: float, step: float = 1.0
    ) -> list[dict[str, Any]]:
        """A range query's result (one entry per series, with ``values``)."""
        data = self.api("query_range", query=expr, start=start, end=end, step=step)
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        """What Grafana's ``label_values(<match>, <label>)`` lists."""
        values: list[str] = self.api(f"label/{label}/values", **{"match[]": match})
        return values

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts (``/api/v1/alerts``)."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def targets_up(self) -> bool:
        """Whether every scrape target answered its last scrape."""
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(target["health"] == "up" for target in active)
