"""A real Apache Kafka broker on 127.0.0.1, started by the project itself.

These machines have no Docker, so the broker runs from the Apache Kafka jars of
Maven Central: resolved once with ``mvn`` from ``kafka-pom.xml`` beside this file,
cached under ``~/.cache/energy-pipeline/kafka-<version>/libs``. One combined
broker + KRaft controller, bound to and advertising 127.0.0.1, with single-node
replication for the offsets and transaction-state topics so that consumer groups
and transactions work.

Used by ``make kafka-up`` / ``make kafka-down`` / ``make run`` (through
:mod:`energy_pipeline.local.cli`) and by the pytest session fixture.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
HOST = "127.0.0.1"
CACHE_ROOT = Path(
    os.environ.get("ENERGY_PIPELINE_CACHE", Path.home() / ".cache" / "energy-pipeline")
)


class BrokerError(RuntimeError):
    pass


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    return CACHE_ROOT / f"kafka-{version}" / "libs"


def resolve_jars(version: str = KAFKA_VERSION) -> Path:
    """The folder of the broker's jars, resolved with Maven the first time."""
    target = libs_dir(version)
    marker = target / ".complete"
    if marker.exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "mvn is not installed: it resolves the Kafka jars once (apt-get install maven)"
        )
    log.info("resolving Apache Kafka %s jars with Maven into %s (once)", version, target)
    staging = target.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    with resources.as_file(resources.files("energy_pipeline.local") / "kafka-pom.xml") as pom:
        result = subprocess.run(  # noqa: S603 - fixed argument list
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(pom),
                f"-Dkafka.version={version}",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        output = result.stdout[-3000:] + result.stderr[-2000:]
        raise BrokerError(f"mvn could not resolve Kafka {version}:\n{output}")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    marker.touch()
    return target


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java is not installed: Kafka needs Java 17 or newer")
    return java


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def kafka_uuid() -> str:
    """A cluster id in Kafka's form: 16 random bytes, URL-safe base64, unpadded."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        # Topics are created explicitly, with the partitions the pipeline defines.
        "auto.create.topics.enable": "false",
        # One node: internal topics cannot have more than one replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Nobody else joins a local group: do not wait for them.
        "group.initial.rebalance.delay.ms": "0",
        # A shorter minimum lets tests use short session timeouts.
        "group.consumer.min.session.timeout.ms": "3000",
        "group.min.session.timeout.ms": "3000",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


LOG4J2_PROPERTIES = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
"""


@dataclass
class LocalBroker:
    """One broker process and its files under ``workdir``."""

    workdir: Path
    port: int
    controller_port: int
    heap: str = "768m"
    pid: int | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "broker.pid"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def _java(self, main_class: str, *args: str) -> list[str]:
        classpath = str(resolve_jars() / "*")
        return [
            java_binary(),
            f"-Xmx{self.heap}",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-Djava.net.preferIPv4Stack=true",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            classpath,
            main_class,
            *args,
        ]

    def prepare(self) -> None:
        """Write the configuration and format the KRaft storage (only once per workdir)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        config = self.workdir / "server.properties"
        config.write_text(server_properties(self.port, self.controller_port, self.data_dir))
        if (self.data_dir / "meta.properties").exists():
            return
        result = subprocess.run(  # noqa: S603 - fixed argument list
            self._java(
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={kafka_uuid()}",
                "-c",
                str(config),
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{result.stdout}{result.stderr}")

    def start(self, timeout: float = 90.0) -> None:
        """Start the broker and wait until it answers metadata requests."""
        for port in (self.port, self.controller_port):
            if not port_is_free(port):
                raise BrokerError(
                    f"port {HOST}:{port} is already taken: stop what listens there "
                    "(make kafka-down) or choose another KAFKA_PORT"
                )
        self.prepare()
        with open(self.log_file, "ab") as out:
            process = subprocess.Popen(  # noqa: S603 - fixed argument list
                self._java("kafka.Kafka", str(self.workdir / "server.properties")),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = process.pid
        self.pid_file.write_text(f"{process.pid}\n")
        try:
            self._wait_ready(process, timeout)
        except BrokerError:
            self.stop()
            raise

    def _wait_ready(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrokerError(
                    f"Kafka exited with code {process.returncode}:\n{self.log_tail()}"
                )
            try:
                metadata = admin.list_topics(timeout=1.0)
                if metadata.brokers:
                    return
            except Exception:  # noqa: BLE001, S110 - not up yet; the loop retries
                pass
            time.sleep(0.2)
        raise BrokerError(f"Kafka did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker by its PID: SIGTERM, then SIGKILL if it does not go."""
        pid = self.pid or read_pid(self.pid_file)
        if pid is None:
            return
        stop_pid(pid, timeout)
        self.pid = None
        self.pid_file.unlink(missing_ok=True)


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0): reap it if it is ours.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the process, wait, then SIGKILL; never signals anything but ``pid``."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    log.warning("process %d did not stop within %.0fs; killing it", pid, timeout)
    os.kill(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(0.05)
