"""The in-process profile of the hot paths (``python -m tests.bench.inprocess``) keeps working:
it is how changes to those paths are measured before and after."""

import gc
from collections.abc import Iterator

import pytest

from tests.bench import inprocess


@pytest.fixture
def collector_as_it_was() -> Iterator[None]:
    """The profile tunes the collector as a service does (settle_heap): undone after."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector_as_it_was")
def test_every_stage_is_measured(capsys: pytest.CaptureFixture[str]) -> None:
    inprocess.main(["--readings", "1500", "--batch", "500"])

    table = capsys.readouterr().out
    for stage in ("metrics parse", "metrics record", "metrics relay", "alignment apply"):
        assert f"| {stage} |" in table
    assert "1,500 readings" in table
