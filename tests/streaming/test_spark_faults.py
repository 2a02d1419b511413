"""At-least-once on Spark under faults (the guarantee the README states for it): a streaming query whose
broker goes away for 10 s mid-run resumes by itself and loses no record; duplicates are allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streaming.engines.spark import SparkEngine
from tests.streaming.faults import broker_outage, survives
from tests.streaming.kafka_records import example_plan, unique
from tidescale.local import environment

pytestmark = pytest.mark.integration


def test_a_spark_query_rides_out_a_broker_outage_and_loses_nothing(kafka_io: Any, tmp_path: Path) -> None:
    state = tmp_path / "broker"  # a broker of its own: the session's keeps serving the other tests
    env = environment.up(["kafka"], state)
    try:
        plan = example_plan("llm-preprocessor", unique(), delivery={"checkpointInterval": "2s"})
        outage = broker_outage(state)
        bootstrap = env.kafka_bootstrap
        got, want = survives(SparkEngine(), plan, bootstrap, kafka_io[1], tmp_path / "cp", outage, False)
    finally:
        environment.down(state)
    missing = want - got
    assert not missing, f"{sum(missing.values())} records lost"
    assert set(got) == set(want)  # nothing that was not asked for
