"""The metrics application on a temporary SQLite store: the KPI catalogue, recording readings
exactly once per KPI, late readings, restart and snapshots; raw readings from Kafka; and the
integration events the outbox publishes from the stored log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from contracts import (
    Direction,
    Envelope,
    Health,
    KPIDefined,
    KPIReading,
    KPIRecorded,
    OutcomeView,
    derive_reading_id,
    parse_event,
    stable_event_id,
)
from services.metrics.application import MetricsApplication
from services.metrics.commands import KPICommand
from services.metrics.domain import KPI
from services.metrics.policy import MAX_READING_BYTES, InvalidReading
from services.metrics.policy import parse_reading as parse_raw_reading
from services.metrics.publishing import integration_event
from services.metrics.telemetry import KPICollector
from services.shared.errors import NotFound, RuleViolation
from services.shared.settings import Settings
from services.shared.store import store_environment
from tests.support import sent_envelope

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NPS = "net_promoter_score"
CAC = "customer_acquisition_cost"

# -- fixtures and builders --------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return store_environment(Settings(service="metrics", data_dir=tmp_path))


@pytest.fixture
def app(env: dict[str, str]) -> Iterator[MetricsApplication]:
    application = MetricsApplication(env=env)
    yield application
    application.close()


def nps_command(**fields: Any) -> KPICommand:
    """Seed KPI: net promoter score, higher is better, target 45, warning 30, weekly."""
    values: dict[str, Any] = {
        "name": "Net promoter score",
        "unit": "points",
        "direction": Direction.higher_is_better,
        "target": 45.0,
        "warning": 30.0,
        "interval": "P7D",
        "owner": "head-of-cx",
    }
    values.update(fields)
    return KPICommand(**values)


def cac_command(**fields: Any) -> KPICommand:
    """Seed KPI: customer acquisition cost, lower is better, target 200, warning 300."""
    values: dict[str, Any] = {
        "name": "Customer acquisition cost",
        "unit": "USD",
        "direction": Direction.lower_is_better,
        "target": 200.0,
        "warning": 300.0,
        "interval": "P1D",
    }
    values.update(fields)
    return KPICommand(**values)


def reading(
    kpi: str = NPS,
    value: float = 50.0,
    observed_at: datetime = T0,
    reading_id: str | None = None,
    unit: str | None = None,
    source: str = "survey-tool",
) -> KPIReading:
    return KPIReading(
        kpi=kpi,
        value=value,
        observed_at=observed_at,
        source=source,
        reading_id=reading_id,
        unit=unit,
    )


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def statuses(outcomes: list[OutcomeView]) -> list[str]:
    return [outcome.status for outcome in outcomes]


def stored_readings(app: MetricsApplication, key: str) -> list[KPI.Recorded]:
    return [e for e in app.events.get(KPI.create_id(key)) if isinstance(e, KPI.Recorded)]


def violated_rules(error: pytest.ExceptionInfo[RuleViolation]) -> list[tuple[Any, str]]:
    return [(v.field, v.rule) for v in error.value.violations]


# -- the KPI catalogue ------------------------------------------------------------------------


def test_define_then_status(app: MetricsApplication) -> None:
    kpi, created = app.define_kpi(NPS, nps_command(), actor="alice")
    assert created
    assert kpi.key == NPS
    assert app.get_kpi(NPS) is kpi

    status = app.status(NPS, now=kpi.created_on)
    assert status.definition.key == NPS
    assert status.definition.direction is Direction.higher_is_better
    assert (status.definition.target, status.definition.warning) == (45.0, 30.0)
    assert status.definition.interval == "P7D"
    assert status.definition.interval_seconds == 7 * 86400
    assert status.definition.owner == "head-of-cx"
    assert (status.value, status.observed_at, status.health) == (None, None, None)
    assert (status.readings, status.version) == (0, 1)
    assert not status.stale
    assert not status.stagnant
    assert status.last_arrival == kpi.created_on


def test_unknown_kpi_is_not_found(app: MetricsApplication) -> None:
    with pytest.raises(NotFound, match="ghost"):
        app.get_kpi("ghost")
    with pytest.raises(NotFound, match="ghost"):
        app.status("ghost", now=T0)
    with pytest.raises(NotFound, match="ghost"):
        app.readings("ghost")


def test_redefinition_changes_the_health_of_the_current_value(app: MetricsApplication) -> None:
    app.define_kpi(NPS, nps_command(), actor="alice")
    app.record([reading(value=40.0, observed_at=day(1), reading_id="w1")])
    assert app.status(NPS, now=day(1)).health is Health.warning

    kpi, created = app.define_kpi(NPS, nps_command(target=35.0, warning=20.0), actor="bob")
    assert not created
    assert kpi is app.get_kpi(NPS)
    status = app.status(NPS, now=day(1))
    assert status.health is Health.healthy
    assert status.definition.target == 35.0
    assert (status.value, status.readings, status.version) == (40.0, 1, 3)

    app.define_kpi(NPS, nps_command(target=60.0, warning=50.0), actor="bob")
    assert app.status(NPS, now=day(1)).health is Health.unhealthy
    assert app.get_kpi(NPS).version == 4


@pytest.mark.parametrize("interval", ["P0D", "-P1D", "soon", "", "P"])
def test_invalid_interval_is_a_rule_violation(app: MetricsApplication, interval: str) -> None:
    with pytest.raises(RuleViolation) as error:
        app.define_kpi(NPS, nps_command(interval=interval), actor="alice")
    assert violated_rules(error) == [(("interval",), "interval_invalid")]
    assert error.value.violations[0].message
    with pytest.raises(NotFound):
        app.get_kpi(NPS)


def test_non_iso_interval_is_a_rule_violation(app: MetricsApplication) -> None:
    with pytest.raises(RuleViolation) as error:
        app.define_kpi(NPS, nps_command(interval="1 day"), actor="alice")
    assert violated_rules(error) == [(("interval",), "interval_invalid")]


@pytest.mark.parametrize(
    ("key", "command"),
    [
        (NPS, nps_command(warning=50.0)),  # higher is better: warning above target
        (CAC, cac_command(warning=150.0)),  # lower is better: warning below target
    ],
)
def test_warning_beyond_target_is_a_rule_violation(
    app: MetricsApplication, key: str, command: KPICommand
) -> None:
    with pytest.raises(RuleViolation) as error:
        app.define_kpi(key, command, actor="alice")
    assert violated_rules(error) == [(("warning",), "warning_beyond_target")]
    with pytest.raises(NotFound):
        app.get_kpi(key)


def test_warning_equal_to_target_is_allowed(app: MetricsApplication) -> None:
    _, created = app.define_kpi(CAC, cac_command(warning=200.0), actor="alice")
    assert created
    assert app.status(CAC, now=T0).definition.warning == 200.0


def test_all_violations_are_reported_together(app: MetricsApplication) -> None:
    with pytest.raises(RuleViolation) as error:
        app.define_kpi("Bad Key", nps_command(interval="P0D", warning=99.0), actor="alice")
    assert sorted(rule for _, rule in violated_rules(error)) == [
        "interval_invalid",
        "key_invalid",
        "warning_beyond_target",
    ]


@pytest.mark.parametrize("key", ["Net Promoter", "1nps", "", "nps-score", "a" * 129, "NPS"])
def test_bad_key_is_a_rule_violation(app: MetricsApplication, key: str) -> None:
    with pytest.raises(RuleViolation) as error:
        app.define_kpi(key, nps_command(), actor="alice")
    assert violated_rules(error) == [(("key",), "key_invalid")]
    assert app.kpis == {}
    assert app.recorder.max_notification_id() in (None, 0)


# -- recording readings -----------------------------------------------------------------------


def test_record_returns_one_outcome_per_reading_in_order(app: MetricsApplication) -> None:
    app.define_kpi(NPS, nps_command(), actor="alice")
    outcomes = app.record(
        [
            reading(value=50.0, observed_at=day(1), reading_id="a"),
            reading(kpi="ghost", value=1.0, reading_id="b"),
            reading(value=50.0, observed_at=day(1), reading_id="a"),
        ],
        actor="importer",
    )
    assert [(o.index, o.kpi, o.reading_id, o.status) for o in outcomes] == [
        (0, NPS, "a", "recorded"),
        (1, "ghost", "b", "rejected"),
        (2, NPS, "a", "duplicate"),
    ]
    assert outcomes[0].reason is None
    assert stored_readings(app, NPS)[0].actor == "importer"


def test_reading_for_an_unknown_kpi_is_rejected_naming_it(app: MetricsApplication) -> None:
    app.define_kpi(NPS, nps_command(), actor="alice")
    outcomes = app.record([reading(kpi="employee_turnover_rate", value=12.0)])
    assert statuses(outcomes) == ["rejected"]
    assert outcomes[0].reason is not None
    assert "employee_turnover_rate" in outcomes[0].reason
    assert app.status(NPS, now=T0).readings == 0
    assert app.recorder.max_notification_id() == 1  # only the definition


def test_reading_whose_unit_contradicts_the_kpi_is_rejected(app: MetricsApplication) -> None:
    app.define_kpi(CAC, cac_command(), actor="alice")
    outcomes = app.record(
        [
            reading(kpi=CAC, value=150.0, unit="EUR", reading_id="eur"),
            reading(kpi=CAC, value=250.0, unit="usd", reading_id="usd", observed_at=day(1)),
            reading(kpi=CAC, value=260.0, unit=None, reading_id="none", observed_at=day(2)),
        ]
    )
    assert statuses(outcomes) == ["rejected", "recorded", "recorded"]
    assert outcomes[0].reason is not None
    assert "EUR" in outcomes[0].reason
    assert "USD" in outcomes[0].reason
    status = app.status(CAC, now=day(2))
    assert (status.value, status.health, status.readings) == (260.0, Health.warning, 2)
    # A rejected reading leaves no idempotency key: once corrected, it is recorded.
    retried = app.record([reading(kpi=CAC, value=150.0, unit="USD", reading_id="eur")])
    assert statuses(retried) == ["recorded"]


def test_duplicate_reading_ids_are_recorded_once(app: MetricsApplication) -> None:
    app.define_kpi(NPS, nps_command(), actor="alice")
    first = app.record(
        [
            reading(value=50.0, observed_at=day(1), reading_id="survey-1"),
            reading(value=10.0, observed_at=day(2), reading_id="survey-1"),  # same id, same batch
            reading(value=35.0, observed_at=day(1), reading_id="survey-2"),
        ]
    )
    assert statuses(first) == ["recorded", "duplicate", "recorded"]
    later = app.record(
        [
            reading(value=10.0, observed_at=day(3), reading_id="survey-1"),
            reading(value=35.0, observed_at=day(1), reading_id="survey-2"),
        ]
    )
    assert statuses(later) == ["duplicate", "duplicate"]

    status = app.status(NPS, now=day(3))
    assert status.readings == 2
    assert status.value == 35.0  # the later arrival at the same observed time
    assert sorted(e.reading_id for e in stored_readings(app, NPS)) == ["survey-1", "survey-2"]
    assert [r.reading_id for r in app.readings(NPS)] == ["survey-1", "survey-2"]
    assert app.recorder.max_notification_id() == 3


def test_idempotency_is_per_kpi(app: MetricsApplication) -> None:
    app.define_kpi(NPS, nps_command(), actor="alice")
    app.define_kpi(CAC, cac_command(), actor="alice")
    outcomes = app.record(
        [
            reading(kpi=NPS, value=50.0, reading_id="2026-01-01"),
            reading(kpi=CAC, value=180.0, reading_id="2026-01-01"),
        ]
    )
    assert statuses(outcomes) == ["recorded", "recorded"]
    assert app.status(NPS, now=T0).readings == 1
    assert app.status(CAC, now=T0).readings == 1
    assert app.status(CAC, now=T0).value == 180.0
    again = app.record([reading(kpi=CAC, value=180.0, reading_id="2026-01-01")])
    assert statuses(again) == ["duplicate"]


def test_derived_reading_ids_dedupe_the_same_observation(app: MetricsApplication) -> None:
    app.define_kpi(NPS, nps_command(), actor="alice")
    observation = reading(value=42.0, observed_at=day(1))
    assert observation.reading_id == derive_reading_id(NPS, "survey-tool", day(1), 42.0)
    same_instant_other_zone = reading(
        value=42.0, observed_at=day(1).astimezone(timezone(timedelta(hours=2)))
    )
    outcomes = app.record([observation, same_instant_other_zone])
    assert statuses(outcomes) == ["recorded", "duplicate"]
    assert statuses(app.record([reading(value=42.0, observed_at=day(1))])) == ["duplicate"]
    others = app.record(
        [
            reading(value=43.0, observed_at=day(1)),  # another value
            reading(value=42.0, observed_at=day(2)),  # another time
            reading(value=42.0, observed_at=day(1), source="crm"),  # another source
        ]
    )
    assert statuses(others) == ["recorded", "recorded", "recorded"]
    assert app.status(NPS, now=day(2)).readings == 4


def test_late_reading_keeps_current_value_and_joins_history_in_observed_order(
    app: MetricsApplication,
) -> None:
    app.define_kpi(NPS, nps_command(), actor="alice")
    app.record([reading(value=50.0, observed_at=day(10), reading_id="d10")])
    app.record([reading(value=20.0, observed_at=day(3), reading_id="d3")])
    app.record([reading(value=35.0, observed_at=day(7), reading_id="d7")])

    status = app.status(NPS, now=day(10))
    assert (status.value, status.observed_at, status.health) == (50.0, day(10), Health.healthy)
    assert status.readings == 3
    assert status.unhealthy_since is None

    history = app.readings(NPS)
    assert [(r.reading_id, r.value, r.observed_at) for r in history] == [
        ("d3", 20.0, day(3)),
        ("d7", 35.0, day(7)),
        ("d10", 50.0, day(10)),
    ]
    # Each reading's own health, though the KPI stayed healthy as they arrived late.
    assert [r.health for r in history] == [Health.unhealthy, Health.warning, Health.healthy]
    assert {e.health for e in stored_readings(app, NPS)} == {Health.healthy.value}
    arrivals = [r.recorded_at for r in sorted(history, key=lambda r: r.recorded_at)]
    assert [r.reading_id for r in sorted(history, key=lambda r: r.recorded_at)] == [
        "d10",
        "d3",
        "d7",
    ]
    assert arrivals == sorted(arrivals)


def test_each_reading_is_judged_by_the_definition_in_force_when_it_was_observed(
    app: MetricsApplication,
) -> None:
    app.define_kpi(NPS, nps_command(), actor="alice")  # target 45, warning 30
    app.define_kpi(NPS, nps_command(target=30.0, warning=20.0), actor="alice")
    first, second = (entry.occurred_at for entry in app.definition_history(NPS))
    app.record([reading(value=40.0, observed_at=second + timedelta(days=1), reading_id="after")])
    app.record(
        [
            reading(value=35.0, observed_at=first - timedelta(days=1), reading_id="before"),
            reading(value=35.0, observed_at=first, reading_id="at-first"),
            reading(value=35.0, observed_at=second, reading_id="at-second"),
        ]
    )

    assert [(r.reading_id, r.health) for r in app.readings(NPS)] == [
        ("before", Health.warning),  # observed before the KPI was defined: its first definition
        ("at-first", Health.warning),
        ("at-second", Health.healthy),
        ("after", Health.healthy),
    ]


def test_readings_since_until_and_limit(app: MetricsApplication) -> None:
    app.define_kpi(NPS, nps_command(), actor="alice")
    app.record(
        [
            reading(value=float(40 + n), observed_at=day(n), reading_id=f"d{n}")
            for n in (4, 0, 2, 1, 3)
        ]
    )

    def ids(found: list[Any]) -> list[str]:
        return [r.reading_id for r in found]

    assert ids(app.readings(NPS)) == ["d0", "d1", "d2", "d3", "d4"]
    assert ids(app.readings(NPS, since=day(1), until=day(3))) == ["d1", "d2"]  # [since, until)
    assert ids(app.readings(NPS, since=day(3))) == ["d3", "d4"]
    assert ids(app.readings(NPS, until=day(1))) == ["d0"]
    assert ids(app.readings(NPS, since=day(1) + timedelta(seconds=1))) == ["d2", "d3", "d4"]
    assert ids(app.readings(NPS, since=day(5))) == []
    assert ids(app.readings(NPS, limit=2)) == ["d0", "d1"]


def test_scrapes_show_each_kpis_latest_value_and_health(app: MetricsApplication) -> None:
    registry = CollectorRegistry()
    registry.register(KPICollector(app))
    app.define_kpi(NPS, nps_command(), actor="alice")
    app.define_kpi(CAC, cac_command(), actor="alice")
    app.record([reading(value=40.0, observed_at=day(2)), reading(value=60.0, observed_at=day(1))])

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("okr_kpi_value", kpi=NPS) == 40.0, "latest by observed time"
    assert sample("okr_kpi_value", kpi=CAC) is None, "no reading yet: no value"
    assert [sample("okr_kpi_health", kpi=NPS, health=h.value) for h in Health] == [
        1.0 if h is Health.warning else 0.0 for h in Health
    ]
    assert {sample("okr_kpi_health", kpi=CAC, health=h.value) for h in Health} == {0.0}
    app.record([reading(value=50.0, observed_at=day(3))])
    assert sample("okr_kpi_value", kpi=NPS) == 50.0
    assert sample("okr_kpi_health", kpi=NPS, health="healthy") == 1.0


def test_staleness_at_twice_the_interval(app: MetricsApplication) -> None:
    kpi, _ = app.define_kpi(CAC, cac_command(interval="PT15M"), actor="alice")
    # Without readings, staleness counts from the definition.
    assert not app.status(CAC, now=kpi.created_on + timedelta(minutes=30)).stale
    assert app.status(CAC, now=kpi.created_on + timedelta(minutes=30, microseconds=1)).stale

    app.record([reading(kpi=CAC, value=180.0, observed_at=day(-30))])  # observed long ago
    arrival = app.get_kpi(CAC).last_arrival
    assert arrival == stored_readings(app, CAC)[0].timestamp  # arrival, not observation
    assert not app.status(CAC, now=arrival + timedelta(minutes=30)).stale
    assert app.status(CAC, now=arrival + timedelta(minutes=30, microseconds=1)).stale


def test_unhealthy_without_meaningful_change_over_the_window_is_stagnant(
    app: MetricsApplication,
) -> None:
    app.define_kpi(NPS, nps_command(), actor="alice")
    app.record(
        [
            reading(value=20.0 + (n % 3) * 0.2, observed_at=day(n), reading_id=f"d{n}")
            for n in range(20)
        ]
    )
    assert app.status(NPS, now=day(13)).unhealthy_since == day(0)
    assert not app.status(NPS, now=day(13)).stagnant
    assert app.status(NPS, now=day(14)).stagnant
    app.record([reading(value=21.0, observed_at=day(20), reading_id="move")])  # >= 0.75 points
    assert not app.status(NPS, now=day(21)).stagnant
    app.record([reading(value=46.0, observed_at=day(21), reading_id="healthy")])
    status = app.status(NPS, now=day(40))
    assert (status.health, status.stagnant, status.unhealthy_since) == (Health.healthy, False, None)


def test_flat_for_longer_than_the_window_after_an_old_move_is_stagnant(
    app: MetricsApplication,
) -> None:
    app.define_kpi(NPS, nps_command(), actor="alice")
    app.record(
        [reading(value=0.0, observed_at=day(0), reading_id="d0")]
        + [reading(value=20.0, observed_at=day(n), reading_id=f"d{n}") for n in range(1, 61)]
    )
    status = app.status(NPS, now=day(60))
    assert status.health is Health.unhealthy
    assert status.stagnant  # flat at 20 for 59 days, window 14 days


def test_redefining_only_the_description_keeps_stagnation(app: MetricsApplication) -> None:
    app.define_kpi(NPS, nps_command(), actor="alice")
    app.record([reading(value=20.0, observed_at=day(n), reading_id=f"d{n}") for n in range(21)])
    assert app.status(NPS, now=day(21)).stagnant
    app.define_kpi(NPS, nps_command(description="Measured quarterly by survey"), actor="alice")
    status = app.status(NPS, now=day(21))
    assert status.unhealthy_since == day(0)
    assert status.stagnant


# -- restart and snapshots --------------------------------------------------------------------


def test_restart_keeps_kpis_values_counts_and_refuses_old_duplicates(
    env: dict[str, str],
) -> None:
    first = MetricsApplication(env=env)
    try:
        first.define_kpi(NPS, nps_command(), actor="alice")
        first.define_kpi(CAC, cac_command(), actor="alice")
        first.record(
            [
                reading(value=50.0, observed_at=day(2), reading_id="n2"),
                reading(value=20.0, observed_at=day(1), reading_id="n1"),
                reading(kpi=CAC, value=250.0, observed_at=day(1), reading_id="c1"),
                reading(kpi=CAC, value=420.0, observed_at=day(2)),
            ]
        )
        before = {key: first.status(key, now=day(3)) for key in (NPS, CAC)}
    finally:
        first.close()

    restarted = MetricsApplication(env=env)
    try:
        assert sorted(restarted.kpis) == sorted([CAC, NPS])
        after = {key: restarted.status(key, now=day(3)) for key in (NPS, CAC)}
        assert after == before
        assert (after[NPS].value, after[NPS].readings, after[NPS].health) == (
            50.0,
            2,
            Health.healthy,
        )
        assert (after[CAC].value, after[CAC].readings, after[CAC].health) == (
            420.0,
            2,
            Health.unhealthy,
        )
        outcomes = restarted.record(
            [
                reading(value=20.0, observed_at=day(1), reading_id="n1"),
                reading(kpi=CAC, value=420.0, observed_at=day(2)),  # derived id
                reading(kpi=CAC, value=190.0, observed_at=day(3), reading_id="c3"),
            ]
        )
        assert statuses(outcomes) == ["duplicate", "duplicate", "recorded"]
        assert restarted.status(NPS, now=day(3)).readings == 2
        assert restarted.status(CAC, now=day(3)).readings == 3
        assert restarted.status(CAC, now=day(3)).health is Health.healthy
    finally:
        restarted.close()


def test_a_long_kpi_is_snapshotted_and_reloads_with_the_same_state(env: dict[str, str]) -> None:
    first = MetricsApplication(env=env)
    try:
        kpi, _ = first.define_kpi(NPS, nps_command(), actor="alice")
        total = 1100
        for start in range(0, total, 500):
            batch = [
                reading(
                    value=float(n % 50),
                    observed_at=T0 + timedelta(minutes=n),
                    reading_id=f"r{n}",
                )
                for n in range(start, min(start + 500, total))
            ]
            assert set(statuses(first.record(batch))) == {"recorded"}
        assert first.snapshots is not None
        snapshots = list(first.snapshots.get(kpi.id))
        assert snapshots
        assert all(s.originator_version >= 1000 for s in snapshots)
        before = first.status(NPS, now=day(1))
        state = {name: value for name, value in vars(kpi).items() if name != "_pending_events"}
    finally:
        first.close()

    assert before.readings == total
    assert before.version == total + 1
    assert before.value == float((total - 1) % 50)

    restarted = MetricsApplication(env=env)
    try:
        reloaded = restarted.get_kpi(NPS)
        assert {n: v for n, v in vars(reloaded).items() if n != "_pending_events"} == state
        assert restarted.status(NPS, now=day(1)) == before
        outcomes = restarted.record(
            [
                reading(value=1.0, observed_at=T0, reading_id="r0"),
                reading(value=48.0, observed_at=day(2), reading_id="r-next"),
            ]
        )
        assert statuses(outcomes) == ["duplicate", "recorded"]
        assert restarted.status(NPS, now=day(2)).readings == total + 1
        assert restarted.status(NPS, now=day(2)).health is Health.healthy
    finally:
        restarted.close()


# -- raw readings from kpi.readings -----------------------------------------------------------


def raw(**fields: Any) -> bytes:
    values: dict[str, Any] = {
        "kpi": NPS,
        "value": 42.0,
        "observed_at": "2026-01-01T09:00:00Z",
        "source": "survey-tool",
    }
    values.update(fields)
    return json.dumps({k: v for k, v in values.items() if v is not ...}).encode()


def test_parse_reading_accepts_a_valid_reading() -> None:
    parsed = parse_raw_reading(raw(unit="points"))
    assert parsed.kpi == NPS
    assert parsed.value == 42.0
    assert parsed.observed_at == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert parsed.unit == "points"
    assert parsed.reading_id == derive_reading_id(NPS, "survey-tool", parsed.observed_at, 42.0)
    assert parse_raw_reading(raw(reading_id="abc")).reading_id == "abc"


@pytest.mark.parametrize("message", [None, b"", b"   \n"])
def test_parse_reading_refuses_empty_messages(message: bytes | None) -> None:
    with pytest.raises(InvalidReading, match="empty") as error:
        parse_raw_reading(message)
    assert error.value.kind == "not_json"


@pytest.mark.parametrize("message", [b"not json", b'{"kpi": ', b"\xff\xfe\x00garbage"])
def test_parse_reading_refuses_non_json(message: bytes) -> None:
    with pytest.raises(InvalidReading, match="not JSON") as error:
        parse_raw_reading(message)
    assert error.value.kind == "not_json"


def test_parse_reading_refuses_oversized_messages() -> None:
    message = raw(source="x" * (MAX_READING_BYTES + 1))
    assert len(message) > 64 * 1024
    with pytest.raises(InvalidReading, match="exceeds") as error:
        parse_raw_reading(message)
    assert error.value.kind == "oversized"
    assert str(len(message)) in error.value.reason


NAN_VALUE = (
    b'{"kpi": "net_promoter_score", "value": NaN, "observed_at": "2026-01-01T09:00:00Z", '
    b'"source": "survey-tool"}'
)
INFINITE_VALUE = NAN_VALUE.replace(b"NaN", b"Infinity")


@pytest.mark.parametrize(
    ("message", "field"),
    [
        pytest.param(raw(value="high"), "value", id="value-text"),
        pytest.param(raw(value=[1, 2]), "value", id="value-list"),
        pytest.param(NAN_VALUE, "value", id="value-NaN-literal"),
        pytest.param(INFINITE_VALUE, "value", id="value-Infinity-literal"),
        pytest.param(raw(kpi=7), "kpi", id="kpi-number"),
        pytest.param(raw(kpi=""), "kpi", id="kpi-empty"),
        pytest.param(raw(source=None), "source", id="source-null"),
        pytest.param(raw(observed_at=...), "observed_at", id="observed_at-missing"),
        pytest.param(raw(observed_at="yesterday"), "observed_at", id="observed_at-text"),
        pytest.param(raw(observed_at="2026-01-01T09:00:00"), "observed_at", id="observed_at-naive"),
        pytest.param(raw(unit="u" * 33), "unit", id="unit-too-long"),
        pytest.param(raw(extra="field"), "extra", id="unknown-field"),
    ],
)
def test_parse_reading_names_the_wrong_field(message: bytes, field: str) -> None:
    with pytest.raises(InvalidReading) as error:
        parse_raw_reading(message)
    assert error.value.kind == "invalid_fields"
    assert error.value.reason.startswith(f"{field}:") or f"; {field}:" in error.value.reason
    assert str(error.value) == error.value.reason


@pytest.mark.parametrize(
    ("message", "field"),
    [
        pytest.param(raw(value=True), "value", id="value-true"),
        pytest.param(raw(value="42"), "value", id="value-numeric-text"),
        pytest.param(raw(observed_at=1767258000), "observed_at", id="observed_at-unix-number"),
    ],
)
def test_parse_reading_refuses_values_of_the_wrong_json_type(message: bytes, field: str) -> None:
    with pytest.raises(InvalidReading) as error:
        parse_raw_reading(message)
    assert error.value.kind == "invalid_fields"
    assert field in error.value.reason


def test_parse_reading_refuses_json_that_is_not_an_object() -> None:
    with pytest.raises(InvalidReading) as error:
        parse_raw_reading(b"[1, 2, 3]")
    assert error.value.kind == "invalid_fields"


# -- integration events (outbox) --------------------------------------------------------------


def published(app: MetricsApplication) -> list[tuple[int, Envelope]]:
    notifications = app.recorder.select_notifications(1, 1000)
    return [
        (n.id, sent_envelope(integration_event(app.mapper.to_domain_event(n), n.id)))
        for n in notifications
    ]


def populate(app: MetricsApplication) -> None:
    app.define_kpi(NPS, nps_command(), actor="alice", correlation_id="req-1")
    app.define_kpi(CAC, cac_command(), actor="bob")
    app.record(
        [
            reading(value=50.0, observed_at=day(2), reading_id="n2"),
            reading(kpi=CAC, value=250.0, observed_at=day(1), reading_id="c1", unit="USD"),
            reading(value=20.0, observed_at=day(1), reading_id="n1"),
        ],
        correlation_id="batch-1",
    )
    app.define_kpi(NPS, nps_command(target=60.0, warning=55.0), actor="carol")


def test_integration_events_map_each_stored_event_to_its_contract(
    app: MetricsApplication,
) -> None:
    populate(app)
    events = published(app)
    assert [position for position, _ in events] == [1, 2, 3, 4, 5, 6]
    for position, envelope in events:
        assert envelope.position == position
        assert envelope.producer == "metrics"
        assert envelope.key() == envelope.aggregate_id.encode()
        assert envelope.event_id == stable_event_id(
            "metrics", envelope.aggregate_id, envelope.aggregate_version
        )
        assert parse_event(envelope.to_json()) == envelope
    assert len({e.event_id for _, e in events}) == 6

    by_kpi: dict[str, list[Envelope]] = {}
    for _, envelope in events:
        by_kpi.setdefault(envelope.aggregate_id, []).append(envelope)
    assert sorted(by_kpi) == sorted([CAC, NPS])
    nps, cac = by_kpi[NPS], by_kpi[CAC]
    assert [type(e) for e in nps] == [KPIDefined, KPIRecorded, KPIRecorded, KPIDefined]
    assert [type(e) for e in cac] == [KPIDefined, KPIRecorded]
    assert [e.aggregate_version for e in nps] == [1, 2, 3, 4]
    assert [e.aggregate_version for e in cac] == [1, 2]
    assert [e.actor for e in nps] == ["alice", "survey-tool", "survey-tool", "carol"]
    assert [e.correlation_id for e in nps] == ["req-1", "batch-1", "batch-1", None]
    assert [(e.actor, e.correlation_id) for e in cac] == [("bob", None), ("survey-tool", "batch-1")]

    nps_defined, n2, n1, nps_redefined = nps
    assert isinstance(nps_defined, KPIDefined)
    assert nps_defined.payload.key == NPS
    assert (nps_defined.payload.target, nps_defined.payload.warning) == (45.0, 30.0)
    assert nps_defined.payload.interval_seconds == 7 * 86400
    assert isinstance(nps_redefined, KPIDefined)
    assert (nps_redefined.payload.target, nps_redefined.payload.warning) == (60.0, 55.0)
    assert nps_redefined.payload == app.get_kpi(NPS).definition
    assert isinstance(cac[0], KPIDefined)
    assert cac[0].payload.direction is Direction.lower_is_better

    assert isinstance(n2, KPIRecorded)
    assert isinstance(n1, KPIRecorded)
    assert isinstance(cac[1], KPIRecorded)
    assert (n2.payload.kpi, n2.payload.reading_id, n2.payload.value) == (NPS, "n2", 50.0)
    assert (n2.payload.observed_at, n2.payload.health) == (day(2), Health.healthy)
    # The late reading carries the health of the KPI's current value (50), not its own (20).
    assert (n1.payload.reading_id, n1.payload.value, n1.payload.health) == (
        "n1",
        20.0,
        Health.healthy,
    )
    c1 = cac[1].payload
    assert (c1.kpi, c1.reading_id, c1.unit, c1.health) == (CAC, "c1", "USD", Health.warning)


def test_integration_event_ids_are_stable_across_republishing(env: dict[str, str]) -> None:
    first = MetricsApplication(env=env)
    try:
        populate(first)
        once = published(first)
        twice = published(first)
    finally:
        first.close()
    assert once == twice

    restarted = MetricsApplication(env=env)
    try:
        after_restart = published(restarted)
    finally:
        restarted.close()
    assert [(p, e.event_id) for p, e in after_restart] == [(p, e.event_id) for p, e in once]
    assert after_restart == once


# -- instances sharing one store (scale-out) --------------------------------------------------


def test_instances_sharing_a_store_follow_each_others_kpis(env: dict[str, str]) -> None:
    """Two instances on one store: each sees what the other defined and recorded, and a
    reading recorded by one is a duplicate for the other."""
    first, second = MetricsApplication(env=env), MetricsApplication(env=env)
    try:
        first.define_kpi(NPS, nps_command(), "cx")
        assert second.status(NPS).definition.target == 45.0  # defined elsewhere, found

        assert [o.status for o in second.record([reading(NPS, 50, T0, "r1")])] == ["recorded"]
        # The first instance's KPI is one version behind: it follows before recording.
        outcomes = first.record([reading(NPS, 20, T0 + timedelta(hours=1), "r2")])
        assert [o.status for o in outcomes] == ["recorded"]
        assert [o.status for o in first.record([reading(NPS, 50, T0, "r1")])] == ["duplicate"]

        first.define_kpi(NPS, nps_command(target=60.0), "cx")
        assert second.status(NPS).definition.target == 45.0  # reads do not hit the store...
        second.record([])
        assert second.status(NPS).definition.target == 60.0  # ...commands catch up first
        assert second.status(NPS).readings == first.status(NPS).readings == 2
        assert second.status(NPS).value == 20
    finally:
        first.close()
        second.close()
