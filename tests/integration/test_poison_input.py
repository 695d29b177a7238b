"""Poison on every consumed topic, against the real service processes and a real broker.

For each consumed topic a table of poison messages goes out interleaved with valid ones, all on
one partition so that every valid message comes after poison in the consumer's order. Then:
each poison message is on ``<topic>.dlq`` exactly once, with its original bytes and a reason
naming what was wrong; the valid messages took effect (the consumer went on); and the
service's ``/metrics`` counts each reason. Each service runs once, on a broker of its own, and
is stopped before the assertions, which read what the run collected.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError

from contracts import (
    ALIGNMENT_EVENTS,
    EVENT_TYPES,
    GOAL_EVENTS,
    KPI_READINGS,
    METRICS_EVENTS,
    current_version,
    dlq_topic,
    parse_event,
)
from services.shared.dlq import MAX_DLQ_BYTES
from services.shared.local_broker import ApacheKafka
from services.shared.telemetry import DLQ_REASONS
from tests.integration.conftest import kafka_for_test
from tests.integration.test_goal_service import objective_body
from tests.support import (
    Scrape,
    ServiceProcess,
    read_topic,
    scrape,
    wait_caught_up,
    wait_for,
)

pytestmark = pytest.mark.integration

#: Just under what the broker takes in one record (Kafka's default ``message.max.bytes``,
#: 1 MiB + 12 bytes, which noida-db applies too): it reaches the consumer, but a DLQ copy of it
#: with the reason headers added would not fit.
HUGE = 1_048_400
#: Kafka key of the poison (valid messages carry their aggregate id).
POISON_KEY = b"poison"
#: The KPI the valid readings and KPIRecorded events are about.
PROBE_KPI = "poison_probe"
NOW = datetime(2026, 10, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Poison:
    name: str
    value: bytes | None
    #: The ``dlq.kind`` header, and the ``reason`` label of the DLQ counter.
    kind: str
    #: What the ``dlq.reason`` header must name.
    reason: str


@dataclass
class Delivery:
    """What one service run did with one topic's messages."""

    topic: str
    poison: list[Poison]
    #: Poison name -> (partition, offset) it was written at.
    written: dict[str, tuple[int, int]] = field(default_factory=dict)
    dead: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)
    #: The service's /metrics before the messages went out, and after it had consumed them.
    before: Scrape = field(default_factory=dict)
    after: Scrape = field(default_factory=dict)
    #: The valid messages' count, and what the service shows of them afterwards.
    valid: int = 0
    effect: Any = None

    def increase(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return self.after.get(key, 0.0) - self.before.get(key, 0.0)


async def _produce(
    bootstrap: str, messages: list[tuple[str, bytes | None, bytes | None]]
) -> list[tuple[int, int]]:
    """Write ``(topic, key, value)`` in order, each to partition 0; returns where each landed."""
    # The client's own size check would stop the huge message before the broker sees it.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        landed = []
        for topic, key, value in messages:
            metadata = await producer.send_and_wait(topic, value, key=key, partition=0)
            landed.append((metadata.partition, metadata.offset))
        return landed
    finally:
        await producer.stop()


def produce(
    bootstrap: str, messages: list[tuple[str, bytes | None, bytes | None]]
) -> list[tuple[int, int]]:
    return asyncio.run(_produce(bootstrap, messages))


def interleave(
    topic: str, poison: list[Poison], valid: list[tuple[bytes, bytes]]
) -> list[tuple[str, bytes | None, bytes | None]]:
    """valid, poison, valid, poison, ..., valid: each poison has a valid message after it."""
    assert len(valid) == len(poison) + 1
    messages: list[tuple[str, bytes | None, bytes | None]] = [(topic, *valid[0])]
    for case, (key, value) in zip(poison, valid[1:], strict=True):
        messages += [(topic, POISON_KEY, case.value), (topic, key, value)]
    return messages


def record_written(delivery: Delivery, landed: list[tuple[int, int]]) -> None:
    """Poison sits at the odd indexes of ``interleave``'s messages."""
    for index, case in enumerate(delivery.poison):
        delivery.written[case.name] = landed[2 * index + 1]


# -- building messages -------------------------------------------------------------------------


def envelope(event_type: str, position: int, aggregate_id: str, payload: Any) -> dict[str, Any]:
    """A valid integration event (checked), as a producer in another language would write it."""
    model = EVENT_TYPES[event_type]
    raw = {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": current_version(event_type),
        "producer": model.model_fields["producer"].default,
        "position": position,
        "aggregate_id": aggregate_id,
        "aggregate_version": 1,
        "occurred_at": NOW.isoformat(),
        "actor": "poison-test",
        "causation_id": None,
        "correlation_id": None,
        "payload": payload,
    }
    parse_event(json.dumps(raw).encode())  # a template that is itself poison proves nothing
    return raw


def encode(raw: Any) -> bytes:
    return json.dumps(raw).encode()


def objective_set(position: int, objective_id: str, title: str, **changes: Any) -> dict[str, Any]:
    payload = {
        "id": objective_id,
        "title": title,
        "owner": "dana.ceo",
        "org_unit": "company",
        "level": "company",
        "period": {
            "label": "2026",
            "cadence": "annual",
            "start": "2026-01-01",
            "end": "2026-12-31",
        },
        "key_results": [
            {
                "id": f"{objective_id}-kr",
                "title": f"Readings of {PROBE_KPI}",
                "kind": "kpi",
                "kpi": PROBE_KPI,
                "aggregation": "count",
                "baseline": 0,
                "target": 1000,
            }
        ],
    } | changes
    return envelope("ObjectiveSet", position, objective_id, payload)


def kpi_recorded(position: int, n: int, **changes: Any) -> dict[str, Any]:
    payload = {
        "kpi": PROBE_KPI,
        "value": float(n),
        "observed_at": (NOW + timedelta(minutes=n)).isoformat(),
        "source": "crm",
        "reading_id": f"recorded-{position}",
        "unit": None,
        "health": "healthy",
    } | changes
    return envelope("KPIRecorded", position, PROBE_KPI, payload)


def objective_scored(
    position: int, objective_id: str, score: float, **changes: Any
) -> dict[str, Any]:
    payload = {
        "objective_id": objective_id,
        "score": score,
        "expected": 0.75,
        "status": "on_track",
        "as_of": NOW.isoformat(),
    } | changes
    return envelope("ObjectiveScored", position, objective_id, payload)


def gap_detected(position: int, **changes: Any) -> dict[str, Any]:
    payload = {
        "gap_id": "gap-1",
        "kind": "stale_kpi",
        "subject": PROBE_KPI,
        "message": "no reading for two intervals",
    } | changes
    return envelope("GapDetected", position, "gap-1", payload)


def bytes_poison(valid: bytes, huge: tuple[str, str], top_level: tuple[str, str]) -> list[Poison]:
    """What is wrong before any field is read, the same on every topic; ``huge`` and
    ``top_level`` are the (kind, reason) of a huge message and of JSON that is no object."""
    return [
        Poison("not-json", b"not json at all", "not_json", "not JSON"),
        Poison("invalid-utf8", b'{"kpi": "\xff\xfe", "value": 1}', "not_json", "not JSON"),
        Poison("truncated", valid[: len(valid) // 2], "not_json", "not JSON"),
        Poison("empty", b"", "not_json", "empty"),
        Poison("tombstone", None, "not_json", "empty"),
        Poison("deeply-nested", b"[" * 10_000, "not_json", "not JSON"),
        Poison("endless-number", b'{"value": 1' + b"0" * 5000 + b"}", "not_json", "not JSON"),
        Poison("huge", b"[" + b" " * (HUGE - 3) + b"1]", *huge),
        Poison("list", b"[1, 2, 3]", *top_level),
        Poison("number", b"42", *top_level),
        Poison("null", b"null", *top_level),
        Poison("string", b'"objective"', *top_level),
    ]


REQUIRED_ENVELOPE_FIELDS = (
    "event_id",
    "event_type",
    "schema_version",
    "producer",
    "position",
    "aggregate_id",
    "aggregate_version",
    "occurred_at",
    "actor",
    "payload",
)
MISSING_KIND = {"event_type": "unknown_event_type", "schema_version": "bad_schema_version"}


def envelope_poison(
    make: Callable[[int], dict[str, Any]], positions: Iterator[int]
) -> list[Poison]:
    """What is wrong with the envelope; ``make(position)`` is a valid event of the topic."""

    def changed(**changes: Any) -> bytes:
        return encode(make(next(positions)) | changes)

    def without(name: str) -> bytes:
        raw = make(next(positions))
        del raw[name]
        return encode(raw)

    valid = make(next(positions))
    huge = changed(padding="")
    huge = changed(padding="x" * (HUGE - len(huge)))
    assert len(huge) == HUGE
    return [
        *bytes_poison(
            encode(valid),
            ("not_json", "expected a JSON object"),
            ("not_json", "expected a JSON object"),
        ),
        Poison("huge-envelope", huge, "invalid_fields", "padding"),
        Poison("extra-field", changed(colour="red"), "invalid_fields", "colour"),
        Poison(
            "unknown-event-type",
            changed(event_type="ObjectiveDeleted"),
            "unknown_event_type",
            "ObjectiveDeleted",
        ),
        Poison(
            "event-type-not-text", changed(event_type=["x"]), "unknown_event_type", "event_type"
        ),
        Poison(
            "future-schema-version",
            changed(schema_version=99),
            "future_schema_version",
            "schema_version 99 is newer",
        ),
        Poison(
            "schema-version-zero", changed(schema_version=0), "bad_schema_version", "schema_version"
        ),
        Poison(
            "schema-version-text",
            changed(schema_version="1"),
            "bad_schema_version",
            "schema_version",
        ),
        Poison("position-text", changed(position="five"), "invalid_fields", "position"),
        Poison("position-beyond-64-bits", changed(position=2**63), "invalid_fields", "position"),
        Poison(
            "version-negative", changed(aggregate_version=-1), "invalid_fields", "aggregate_version"
        ),
        Poison("event-id-not-uuid", changed(event_id="not-a-uuid"), "invalid_fields", "event_id"),
        Poison(
            "occurred-at-naive",
            changed(occurred_at="2026-10-01T00:00:00"),
            "invalid_fields",
            "occurred_at",
        ),
        Poison(
            "occurred-at-out-of-range",
            changed(occurred_at="0001-01-01T00:00:00+01:00"),
            "invalid_fields",
            "occurred_at",
        ),
        Poison("actor-number", changed(actor=42), "invalid_fields", "actor"),
        Poison("foreign-producer", changed(producer="nobody"), "invalid_fields", "producer"),
        Poison("payload-list", changed(payload=[1]), "invalid_fields", "payload"),
        *(
            Poison(f"missing-{name}", without(name), MISSING_KIND.get(name, "invalid_fields"), name)
            for name in REQUIRED_ENVELOPE_FIELDS
        ),
    ]


# -- kpi.readings, consumed by the metrics service ---------------------------------------------


def reading(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "kpi": PROBE_KPI,
        "value": float(n),
        "observed_at": (NOW + timedelta(minutes=n)).isoformat(),
        "source": "crm",
        "reading_id": f"reading-{n}",
        "unit": "USD",
    } | changes


def reading_poison() -> list[Poison]:
    def changed(**changes: Any) -> bytes:
        return encode(reading(0, **changes))

    def without(name: str) -> bytes:
        raw = reading(0)
        del raw[name]
        return encode(raw)

    large = encode(reading(0, source="x" * 100_000))
    return [
        *bytes_poison(
            encode(reading(0)),
            ("oversized", f"{HUGE} bytes exceeds"),
            ("invalid_fields", "Input should be an object"),
        ),
        Poison("oversized", large, "oversized", f"{len(large)} bytes exceeds"),
        Poison("missing-kpi", without("kpi"), "invalid_fields", "kpi: Field required"),
        Poison("missing-value", without("value"), "invalid_fields", "value: Field required"),
        Poison("missing-observed-at", without("observed_at"), "invalid_fields", "observed_at"),
        Poison("missing-source", without("source"), "invalid_fields", "source"),
        Poison("empty-kpi", changed(kpi=""), "invalid_fields", "kpi"),
        Poison("kpi-number", changed(kpi=7), "invalid_fields", "kpi"),
        Poison("nan", changed(value=float("nan")), "invalid_fields", "value"),
        Poison("infinity", changed(value=float("inf")), "invalid_fields", "value"),
        Poison("value-text", changed(value="42"), "invalid_fields", "value must be a JSON number"),
        Poison("value-bool", changed(value=True), "invalid_fields", "value must be a JSON number"),
        Poison(
            "observed-at-naive",
            changed(observed_at="2026-10-01T00:00:00"),
            "invalid_fields",
            "observed_at",
        ),
        Poison(
            "observed-at-number",
            changed(observed_at=1_790_000_000),
            "invalid_fields",
            "observed_at",
        ),
        Poison(
            "observed-at-out-of-range",
            changed(observed_at="0001-01-01T00:00:00+01:00"),
            "invalid_fields",
            "observed_at",
        ),
        Poison(
            "observed-at-no-reading-id",
            encode(
                {
                    k: v
                    for k, v in reading(0, observed_at="9999-12-31T23:59:59-01:00").items()
                    if k != "reading_id"
                }
            ),
            "invalid_fields",
            "observed_at",
        ),
        Poison("extra-field", changed(colour="red"), "invalid_fields", "colour"),
        Poison("unknown-kpi", changed(kpi="no_such_kpi"), "rejected", "no_such_kpi"),
        Poison("unit-mismatch", changed(unit="EUR"), "rejected", "EUR"),
    ]


# -- goal.events and metrics.events, consumed by the alignment service -------------------------

#: Positions of poison; valid events get their own range, so no poison takes a valid one's.
POSITIONS = itertools.count(1000)
VALID_POSITIONS = 1_000_000


def with_payload(raw: dict[str, Any], **changes: Any) -> bytes:
    return encode(raw | {"payload": raw["payload"] | changes})


def goal_poison() -> list[Poison]:
    def objective(n: int = 0) -> dict[str, Any]:
        return objective_set(next(POSITIONS), f"poison-{n}", "Poison")

    check_in = envelope(
        "KeyResultCheckedIn",
        next(POSITIONS),
        "poison-0",
        {"objective_id": "poison-0", "key_result_id": "poison-0-kr", "value": 3},
    )
    archived = envelope(
        "ObjectiveArchived", next(POSITIONS), "never-set", {"objective_id": "never-set"}
    )
    version_1 = objective() | {"schema_version": 1}
    backwards = {"label": "2026", "cadence": "annual", "start": "2026-12-31", "end": "2026-01-01"}
    return [
        *envelope_poison(lambda position: objective_set(position, "poison", "Poison"), POSITIONS),
        Poison(
            "period-backwards",
            with_payload(objective(), period=backwards),
            "invalid_fields",
            "period ends",
        ),
        Poison(
            "no-key-results",
            with_payload(objective(), key_results="none"),
            "invalid_fields",
            "key_results",
        ),
        Poison(
            "confidence-eleven",
            with_payload(check_in, confidence=11),
            "invalid_fields",
            "confidence",
        ),
        Poison(
            "version-1-bad-period",
            with_payload(version_1, period="2026-Q7"),
            "invalid_fields",
            "2026-Q7",
        ),
        Poison("lone-surrogate", with_payload(objective(), title="\ud800"), "not_json", "not JSON"),
        Poison("archive-never-set", encode(archived), "refused", "never-set was never set"),
        Poison(
            "alignment-event-here",
            encode(gap_detected(next(POSITIONS))),
            "unknown_event_type",
            "GapDetected",
        ),
        Poison(
            "metrics-event-here",
            encode(kpi_recorded(next(POSITIONS), 1)),
            "unknown_event_type",
            "KPIRecorded",
        ),
    ]


def metrics_poison() -> list[Poison]:
    def recorded() -> dict[str, Any]:
        return kpi_recorded(next(POSITIONS), 1)

    defined = envelope(
        "KPIDefined",
        next(POSITIONS),
        PROBE_KPI,
        {
            "key": PROBE_KPI,
            "name": "Poison probe",
            "direction": "higher_is_better",
            "target": 100,
            "interval": "P1D",
            "interval_seconds": 86400,
        },
    )
    return [
        *envelope_poison(lambda position: kpi_recorded(position, 1), POSITIONS),
        Poison(
            "value-nan", with_payload(recorded(), value=float("nan")), "invalid_fields", "value"
        ),
        Poison("value-text", with_payload(recorded(), value="high"), "invalid_fields", "value"),
        Poison(
            "health-unknown", with_payload(recorded(), health="great"), "invalid_fields", "health"
        ),
        Poison(
            "observed-at-out-of-range",
            with_payload(recorded(), observed_at="9999-12-31T23:59:59-01:00"),
            "invalid_fields",
            "observed_at",
        ),
        Poison("kpi-key-invalid", with_payload(defined, key="Bad Key"), "invalid_fields", "key"),
        Poison(
            "interval-zero",
            with_payload(defined, interval_seconds=0),
            "invalid_fields",
            "interval_seconds",
        ),
        Poison(
            "goal-event-here",
            encode(objective_set(next(POSITIONS), "stray", "Stray")),
            "unknown_event_type",
            "ObjectiveSet",
        ),
    ]


# -- alignment.events, consumed by the goal service (its score read model) --------------------


def alignment_poison() -> list[Poison]:
    def scored() -> dict[str, Any]:
        return objective_scored(next(POSITIONS), "poison", 0.5)

    key_result_scored = envelope(
        "KeyResultScored",
        next(POSITIONS),
        "poison",
        {
            "objective_id": "poison",
            "key_result_id": "poison-kr",
            "score": 0.5,
            "progress": 0.5,
            "value": 5,
            "expected": 0.5,
            "status": "on_track",
            "as_of": NOW.isoformat(),
        },
    )
    foreign = [{"producer": "alignment", "position": 1, "event_type": "KPIRecorded"}]
    return [
        *envelope_poison(lambda position: objective_scored(position, "poison", 0.5), POSITIONS),
        Poison("score-above-one", with_payload(scored(), score=1.5), "invalid_fields", "score"),
        Poison("status-unknown", with_payload(scored(), status="fine"), "invalid_fields", "status"),
        Poison(
            "as-of-out-of-range",
            with_payload(scored(), as_of="0001-01-01T00:00:00+01:00"),
            "invalid_fields",
            "as_of",
        ),
        Poison(
            "lineage-foreign",
            with_payload(key_result_scored, lineage=foreign),
            "invalid_fields",
            "lineage",
        ),
        Poison(
            "gap-kind-unknown",
            encode(
                gap_detected(next(POSITIONS))
                | {
                    "payload": {
                        "gap_id": "gap-1",
                        "kind": "nonsense",
                        "subject": "x",
                        "message": "m",
                    }
                }
            ),
            "invalid_fields",
            "kind",
        ),
        Poison(
            "goal-event-here",
            encode(objective_set(next(POSITIONS), "stray", "Stray")),
            "unknown_event_type",
            "ObjectiveSet",
        ),
    ]


TABLES: dict[str, list[Poison]] = {
    KPI_READINGS: reading_poison(),
    GOAL_EVENTS: goal_poison(),
    METRICS_EVENTS: metrics_poison(),
    ALIGNMENT_EVENTS: alignment_poison(),
}
#: The service that consumes each topic.
CONSUMER = {
    KPI_READINGS: "metrics",
    GOAL_EVENTS: "alignment",
    METRICS_EVENTS: "alignment",
    ALIGNMENT_EVENTS: "goal",
}
#: Small batches, so that poison meets batch boundaries at many places.
SMALL_BATCHES = {"OKR_CONSUMER_MAX_RECORDS": "7"}


# -- one run of each service -------------------------------------------------------------------


@contextmanager
def service_on_own_broker(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ApacheKafka, ServiceProcess]]:
    with contextmanager(kafka_for_test)(tmp_path_factory) as kafka:
        data_dir = tmp_path_factory.mktemp(name) / "data"
        data_dir.mkdir()
        service = ServiceProcess(name, data_dir, kafka.bootstrap_servers, extra_env=SMALL_BATCHES)
        service.start()
        try:
            yield kafka, service
        finally:
            service.stop()


def deliver(
    kafka: ApacheKafka, service: ServiceProcess, valid: dict[str, list[tuple[bytes, bytes]]]
) -> dict[str, Delivery]:
    """Write each topic's poison between its ``valid`` messages, wait until the service has
    committed every topic to its end, and collect what happened."""
    before = scrape(service.url)
    deliveries = {}
    for topic, messages in valid.items():
        delivery = Delivery(topic, TABLES[topic], before=before, valid=len(messages))
        landed = produce(kafka.bootstrap_servers, interleave(topic, delivery.poison, messages))
        record_written(delivery, landed)
        deliveries[topic] = delivery
    group = f"okr-{service.name}"
    wait_caught_up(kafka.bootstrap_servers, group, list(valid), within=30)
    after = scrape(service.url)
    for delivery in deliveries.values():
        delivery.after = after
        delivery.dead = read_topic(kafka.bootstrap_servers, dlq_topic(delivery.topic))
    return deliveries


@pytest.fixture(scope="module")
def metrics_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Delivery]:
    with service_on_own_broker("metrics", tmp_path_factory) as (kafka, service):
        httpx.put(
            f"{service.url}/kpis/{PROBE_KPI}",
            json={
                "name": "Poison probe",
                "unit": "USD",
                "direction": "higher_is_better",
                "target": 100,
            },
        ).raise_for_status()
        count = len(TABLES[KPI_READINGS]) + 1
        valid = [(PROBE_KPI.encode(), encode(reading(n))) for n in range(1, count + 1)]
        deliveries = deliver(kafka, service, {KPI_READINGS: valid})
        deliveries[KPI_READINGS].effect = httpx.get(f"{service.url}/kpis/{PROBE_KPI}").json()
    return deliveries


def tree_titles(nodes: list[dict[str, Any]]) -> list[str]:
    return [title for node in nodes for title in [node["title"], *tree_titles(node["children"])]]


@pytest.fixture(scope="module")
def alignment_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Delivery]:
    with service_on_own_broker("alignment", tmp_path_factory) as (kafka, service):
        # Counts the valid KPIRecorded events: its key result's value is their number.
        counter = objective_set(VALID_POSITIONS, "counter", "Counter")
        produce(kafka.bootstrap_servers, [(GOAL_EVENTS, b"counter", encode(counter))])
        wait_for(
            lambda: httpx.get(f"{service.url}/objectives/counter/score").status_code == 200,
            within=30,
            what="the counter objective",
        )
        objectives = [
            (
                f"sentinel-{n}".encode(),
                encode(objective_set(VALID_POSITIONS + n, f"sentinel-{n}", f"Sentinel {n}")),
            )
            for n in range(1, len(TABLES[GOAL_EVENTS]) + 2)
        ]
        recorded = [
            (PROBE_KPI.encode(), encode(kpi_recorded(VALID_POSITIONS + n, n)))
            for n in range(1, len(TABLES[METRICS_EVENTS]) + 2)
        ]
        deliveries = deliver(kafka, service, {GOAL_EVENTS: objectives, METRICS_EVENTS: recorded})
        deliveries[GOAL_EVENTS].effect = tree_titles(httpx.get(f"{service.url}/tree").json())
        deliveries[METRICS_EVENTS].effect = httpx.get(
            f"{service.url}/objectives/counter/score"
        ).json()
    return deliveries


@pytest.fixture(scope="module")
def goal_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Delivery]:
    with service_on_own_broker("goal", tmp_path_factory) as (kafka, service):
        created = httpx.post(f"{service.url}/objectives", json=objective_body("Scored"))
        created.raise_for_status()
        objective_id = created.json()["objective"]["id"]
        count = len(TABLES[ALIGNMENT_EVENTS]) + 1
        scores = [
            (
                objective_id.encode(),
                encode(objective_scored(VALID_POSITIONS + n, objective_id, n / 100)),
            )
            for n in range(1, count + 1)
        ]
        deliveries = deliver(kafka, service, {ALIGNMENT_EVENTS: scores})
        deliveries[ALIGNMENT_EVENTS].effect = httpx.get(
            f"{service.url}/objectives/{objective_id}"
        ).json()
    return deliveries


@pytest.fixture
def delivery(request: pytest.FixtureRequest, topic: str) -> Delivery:
    runs: dict[str, Delivery] = request.getfixturevalue(f"{CONSUMER[topic]}_run")
    return runs[topic]


# -- what must hold --------------------------------------------------------------------------


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


@pytest.mark.parametrize(
    ("topic", "poison"),
    [
        pytest.param(topic, case, id=f"{topic}:{case.name}")
        for topic, table in TABLES.items()
        for case in table
    ],
)
def test_poison_is_dead_lettered_once_with_its_bytes_and_reason(
    topic: str, poison: Poison, delivery: Delivery
) -> None:
    partition, offset = delivery.written[poison.name]
    copies = [
        record
        for record in delivery.dead
        if headers_of(record).get("dlq.offset") == str(offset)
        and headers_of(record).get("dlq.partition") == str(partition)
    ]
    assert len(copies) == 1
    dead = copies[0]
    headers = headers_of(dead)
    assert headers["dlq.topic"] == topic
    assert headers["dlq.kind"] == poison.kind
    assert poison.reason in headers["dlq.reason"]
    assert dead.key == POISON_KEY
    original = poison.value or b""
    if len(original) + len(POISON_KEY) > MAX_DLQ_BYTES:
        # Too big to copy with the headers: cut, said so, and the rest stays on the topic.
        assert dead.value == original[: len(dead.value)]
        assert len(dead.value) >= MAX_DLQ_BYTES // 2
        assert str(len(original) + len(POISON_KEY)) in headers["dlq.truncated"]
    else:
        assert dead.value == original
        assert "dlq.truncated" not in headers


@pytest.mark.parametrize("topic", list(TABLES))
def test_only_poison_is_dead_lettered(topic: str, delivery: Delivery) -> None:
    where = {
        (int(headers_of(r)["dlq.partition"]), int(headers_of(r)["dlq.offset"]))
        for r in delivery.dead
    }
    assert len(delivery.dead) == len(delivery.poison)
    assert where == set(delivery.written.values())


@pytest.mark.parametrize("topic", list(TABLES))
def test_dlq_counter_counts_each_reason(topic: str, delivery: Delivery) -> None:
    expected = Counter(case.kind for case in delivery.poison)
    counted = {
        reason: delivery.increase("okr_dlq_messages_total", topic=topic, reason=reason)
        for reason in DLQ_REASONS
    }
    assert counted == {reason: float(expected[reason]) for reason in DLQ_REASONS}


@pytest.mark.parametrize("topic", list(TABLES))
def test_outcomes_are_counted(topic: str, delivery: Delivery) -> None:
    if topic == KPI_READINGS:
        assert delivery.increase("okr_readings_total", outcome="rejected") == len(delivery.poison)
        assert delivery.increase("okr_readings_total", outcome="recorded") == delivery.valid
    else:
        outcome = {
            name: delivery.increase("okr_consumer_messages_total", topic=topic, outcome=name)
            for name in ("applied", "duplicate", "dead_lettered")
        }
        assert outcome == {
            "applied": delivery.valid,
            "duplicate": 0,
            "dead_lettered": len(delivery.poison),
        }


def test_readings_after_poison_are_recorded(metrics_run: dict[str, Delivery]) -> None:
    delivery = metrics_run[KPI_READINGS]
    status = delivery.effect
    assert status["readings"] == delivery.valid
    assert status["value"] == float(delivery.valid)  # the last valid reading is the latest


def test_objectives_after_poison_are_in_the_tree(alignment_run: dict[str, Delivery]) -> None:
    delivery = alignment_run[GOAL_EVENTS]
    titles = delivery.effect
    assert sorted(titles) == sorted(
        ["Counter", *(f"Sentinel {n}" for n in range(1, delivery.valid + 1))]
    )


def test_readings_after_poison_are_scored(alignment_run: dict[str, Delivery]) -> None:
    delivery = alignment_run[METRICS_EVENTS]
    score = delivery.effect
    assert score["key_results"][0]["value"] == delivery.valid


def test_scores_after_poison_are_shown(goal_run: dict[str, Delivery]) -> None:
    delivery = goal_run[ALIGNMENT_EVENTS]
    objective = delivery.effect
    assert objective["score"]["score"] == delivery.valid / 100


def test_the_broker_refuses_what_is_bigger_than_huge(kafka: ApacheKafka) -> None:
    """Why the huge poison is 1 MiB and not 2 MB: bigger never reaches a consumer."""
    with pytest.raises(MessageSizeTooLargeError):
        produce(kafka.bootstrap_servers, [(KPI_READINGS, None, b"x" * 2_000_000)])
