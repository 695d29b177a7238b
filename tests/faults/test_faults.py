"""The fault suite, short: 3,000 readings and 30 objective changes through Apache Kafka
while three services are SIGKILLed, and the broker is restarted, crashes and loses its whole
data directory. ``make faults`` runs the long version. Set ``FAULTS_SEED`` to replay a run."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from services.shared.local_broker import BrokerUnavailable, kafka_jars
from tests.faults.driver import Options, run
from tests.faults.journal import Journal
from tests.support import unavailable

pytestmark = pytest.mark.e2e


def test_no_reading_or_change_is_lost_or_doubled_under_faults(tmp_path: Path) -> None:
    try:
        kafka_jars()
    except BrokerUnavailable as missing:
        unavailable(str(missing))
    options = Options(
        readings=3_000,
        objective_changes=30,
        kills=3,
        broker_restarts=1,
        broker_crashes=1,
        wipe=True,
        seed=int(os.environ.get("FAULTS_SEED", "11")),
        rate=120.0,
        settle_within=120.0,
        work_dir=tmp_path,
    )
    report = io.StringIO()
    journal = run(options, Journal(report))
    print(report.getvalue())  # pytest shows it when the test fails
    failed = [finding.check for finding in journal.findings if not finding.passed]
    assert not failed, report.getvalue()
    assert len(journal.findings) == 10, "a check did not run"
