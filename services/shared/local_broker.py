"""Kafka brokers run on this machine, as child processes: Apache Kafka from its Maven Central
jars (the tests, the fault suite, the benchmark, ``make run BROKER=kafka``) and noida-db from
its wheel (``make run``'s zero-set-up default).

Both have one life cycle: ``start`` (and wait until it answers), ``stop`` (without losing
what it acknowledged), ``kill`` (SIGKILL, as a crash), ``start`` again on the same data and
port, and ``wipe`` (its data gone, as a lost disk).

Apache Kafka runs as production runs it (docker-compose.yml): KRaft, one node that is broker
and controller, with ``KAFKA_SETTINGS``; a test fails when the two drift apart. Its jars are
fetched by Maven (``deploy/kafka/pom.xml``) into a cache outside the repository, once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from services.shared.broker import broker_answers

__all__ = [
    "KAFKA_POM",
    "KAFKA_SETTINGS",
    "ApacheKafka",
    "BrokerKind",
    "BrokerUnavailable",
    "LocalBroker",
    "NoidaBroker",
    "free_port",
    "kafka_version",
    "local_broker",
]

ROOT = Path(__file__).resolve().parent.parent.parent
#: The Maven project that names Apache Kafka's release and the logging backend it runs with.
KAFKA_POM = ROOT / "deploy" / "kafka" / "pom.xml"
KAFKA_LOG_CONFIG = ROOT / "deploy" / "kafka" / "log4j2.properties"

#: The broker's settings, as docker-compose.yml gives them to the ``apache/kafka`` image
#: (``KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR`` is ``offsets.topic.replication.factor``).
#: Listeners, addresses and paths differ by nature and are set per process below.
KAFKA_SETTINGS = {
    "node.id": "1",
    "process.roles": "broker,controller",
    # A single node cannot replicate: every internal topic gets one replica, one in sync.
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    # Topics come from ensure_topics only, with their partitions and configs.
    "auto.create.topics.enable": "false",
    "group.initial.rebalance.delay.ms": "0",
}

BrokerKind = Literal["kafka", "noida"]


class BrokerUnavailable(RuntimeError):
    """The broker cannot run on this machine; the message says what to install."""


_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port nobody listens on now, on the loopback interface, and not one this
    process was given before: a port handed out is not bound until its server starts,
    so the kernel may offer it again, and two listeners of one broker would then clash."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port``."""
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


class LocalBroker:
    """A broker process with its data under ``data_dir``, serving on ``host:port``."""

    #: Names the broker in messages and its log file.
    program = "broker"

    def __init__(self, data_dir: Path, port: int = 9092, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir
        self.port = port
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.program}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Whatever must exist before the first start on ``data_dir``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 60.0) -> None:
        """Start, and return once the broker answers a metadata request."""
        self.prepare()
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches us; we stop it in order
            )
        deadline = time.monotonic() + timeout
        while not asyncio.run(broker_answers(self.bootstrap_servers)):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.program} exited with {self.process.returncode}; see {self.log_path}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(
                    f"{self.program} on {self.bootstrap_servers} did not answer within "
                    f"{timeout:.0f}s; see {self.log_path}"
                )
            time.sleep(0.2)  # polling a condition with a deadline

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    #: The signal that asks the broker for a clean shutdown.
    stop_signal = signal.SIGTERM

    def before_stop(self) -> None:
        """Whatever the broker must be told before ``stop_signal`` keeps what it acknowledged."""

    def stop(self, timeout: float = 30.0) -> None:
        """A clean shutdown: everything acknowledged is on disk when it returns."""
        if self.process is None or not self.running:
            return
        self.before_stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, self.stop_signal)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._wait_gone(timeout)

    def kill(self) -> None:
        """SIGKILL to every process of the broker, as a crash would."""
        if self.process is not None and self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._wait_gone(30.0)

    def wipe(self) -> None:
        """Stop (if running) and delete every byte the broker held; the next ``start`` begins
        an empty broker on the same port."""
        self.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _wait_gone(self, timeout: float) -> None:
        """Until every process of the broker's group has exited, so that a new broker meets
        neither the old one's port nor its files."""
        if self.process is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                return
            time.sleep(0.05)


def kafka_version() -> str:
    """The Apache Kafka release ``deploy/kafka/pom.xml`` pins."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ElementTree.parse(KAFKA_POM).find("m:properties/m:kafka.version", namespace)
    if version is None or not version.text:
        raise ValueError(f"no kafka.version in {KAFKA_POM}")
    return version.text


def kafka_cache() -> Path:
    """Where the broker's jars are kept: outside the repository, shared by every clone."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("OKR_KAFKA_CACHE", Path(base) / "okr-platform"))


#: What to install for each program the broker needs.
REQUIREMENTS = {
    "java": "Java 17+ (apt-get install openjdk-17-jre-headless)",
    "mvn": "Maven (apt-get install maven)",
}


def kafka_jars() -> Path:
    """The folder of the pinned release's jars, fetched from Maven Central on first use (one
    process fetches while the others wait on a lock; an interrupted fetch leaves nothing).
    Raises ``BrokerUnavailable`` without Java, or without Maven while nothing is cached."""
    lib = kafka_cache() / f"kafka-{kafka_version()}" / "lib"
    needed = ("java",) if lib.is_dir() else ("java", "mvn")
    missing = [REQUIREMENTS[program] for program in needed if shutil.which(program) is None]
    if missing:
        raise BrokerUnavailable("Apache Kafka needs " + " and ".join(missing))
    if lib.is_dir():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with (lib.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if lib.is_dir():
            return lib
        staging = Path(tempfile.mkdtemp(dir=lib.parent, prefix=".fetch-"))
        try:
            fetched = subprocess.run(
                [
                    *("mvn", "--batch-mode", "--quiet", "--file", str(KAFKA_POM)),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={staging}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if fetched.returncode != 0:
                raise BrokerUnavailable(
                    f"Maven could not fetch Apache Kafka {kafka_version()}: "
                    + (fetched.stdout + fetched.stderr).strip()[-2000:]
                )
            staging.rename(lib)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return lib


class ApacheKafka(LocalBroker):
    """Apache Kafka in KRaft combined mode (one node, broker and controller), from its jars.

    The controller listens on a port of its own, chosen once per instance, so a restart on
    the same data finds the quorum where it left it.
    """

    program = "kafka"

    def __init__(self, data_dir: Path, port: int = 9092, host: str = "127.0.0.1") -> None:
        super().__init__(data_dir, port, host)
        self.controller_port = free_port()

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def kraft_dir(self) -> Path:
        """The broker's log directory: its topics and its metadata."""
        return self.data_dir / "kraft"

    def properties(self) -> dict[str, str]:
        """The server's configuration: compose's settings, with this process's addresses."""
        return KAFKA_SETTINGS | {
            "listeners": (
                f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "log.dirs": str(self.kraft_dir),
        }

    def _java(self, main_class: str, *arguments: str) -> list[str]:
        return [
            "java",
            *("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true"),
            f"-Dlog4j2.configurationFile={KAFKA_LOG_CONFIG}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            *("-cp", str(kafka_jars() / "*")),
            main_class,
            *arguments,
        ]

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    def prepare(self) -> None:
        """Write the configuration, and format the storage the first time (with
        ``controller.quorum.voters`` set, formatting needs no ``--standalone``)."""
        super().prepare()
        self.logs_dir.mkdir(exist_ok=True)
        self.config_path.write_text(
            "".join(f"{name}={value}\n" for name, value in self.properties().items())
        )
        if (self.kraft_dir / "meta.properties").exists():
            return
        formatted = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                *("--cluster-id", cluster_id()),
                *("--config", str(self.config_path)),
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if formatted.returncode != 0:
            raise RuntimeError(
                f"formatting Kafka's storage failed: {formatted.stdout}{formatted.stderr}"
            )

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_path))

    @property
    def log_path(self) -> Path:
        # The JVM's own output (a crash, a bad option); the broker logs to logs/server.log.
        return self.data_dir / "kafka.out"


def cluster_id(draw: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A new cluster id as Kafka makes one: URL-safe base64 of 16 random bytes,
    unpadded, drawn again when it starts with '-' (the storage tool's argument
    parser would take such an id for an option, as Kafka's own ``Uuid`` avoids)."""
    while True:
        encoded = base64.urlsafe_b64encode(draw()).decode().rstrip("=")
        if not encoded.startswith("-"):
            return encoded


def noida_executable() -> str:
    """The ``noida-db`` script installed next to this interpreter, or the one on PATH."""
    beside = Path(sys.executable).parent / "noida-db"
    if beside.exists():
        return str(beside)
    found = shutil.which("noida-db")
    if found is None:
        raise BrokerUnavailable("noida-db is not installed: pip install noida-db")
    return found


class NoidaBroker(LocalBroker):
    """A ``noida-db`` process serving only Kafka: the zero-set-up broker of ``make run``."""

    program = "noida-db"

    def command(self) -> list[str]:
        return [
            *(noida_executable(), "start", "--only", "kafka", "--host", self.host),
            *("--kafka-port", str(self.port), "--data-dir", str(self.data_dir)),
        ]

    stop_signal = signal.SIGINT

    def before_stop(self) -> None:
        """noida-db keeps records in memory between periodic saves, and a signal alone (even
        SIGINT) loses the last seconds of them: it is first told to save and stop through
        its own command."""
        subprocess.run(
            [noida_executable(), "stop", "kafka", "--data-dir", str(self.data_dir)],
            capture_output=True,
            timeout=120,
            check=False,
        )


def local_broker(kind: BrokerKind, data_dir: Path, port: int = 9092) -> LocalBroker:
    """A broker of ``kind`` for ``data_dir``; its ``start`` raises ``BrokerUnavailable`` when
    it cannot run here, saying what to install."""
    if kind == "kafka":
        return ApacheKafka(data_dir, port)
    return NoidaBroker(data_dir, port)
