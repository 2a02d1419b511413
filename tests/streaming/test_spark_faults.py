"""At-least-once on Spark under faults (the guarantee the README states for it): a streaming query whose
broker goes away for 10 s mid-run resumes by itself and loses no record, and a query stopped mid-stream and
started again on its checkpoint loses none either; duplicates are allowed, and counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kernel.clock import SYSTEM_CLOCK
from streaming.engine import RunOptions
from streaming.engines.spark import SparkEngine
from tests.streaming.faults import Running, broker_outage, committed, expected, survives
from tests.streaming.kafka_records import example_plan, llm_requests, unique
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


def test_a_spark_query_stopped_mid_stream_and_started_on_its_checkpoint_loses_nothing(
    local_env: environment.Environment, kafka_io: Any, tmp_path: Path
) -> None:
    bootstrap = local_env.kafka_bootstrap
    plan = example_plan("llm-preprocessor", unique(), delivery={"checkpointInterval": "2s"})
    values, _ = llm_requests(1200)
    first, second = values[:600], values[600:]
    write = kafka_io[1]
    checkpoints = tmp_path / "checkpoints"

    # 1. Run, let the first half be written out, then write the second half and stop mid-stream.
    write(bootstrap, plan.source.topic, first)
    run = Running(SparkEngine(), plan, RunOptions(bootstrap, checkpoint_dir=checkpoints))
    try:
        before = committed(bootstrap, expected(plan, first), timeout=180, exactly=False)
        assert not expected(plan, first) - before, "the first half never arrived"
        write(bootstrap, plan.source.topic, second)
        SYSTEM_CLOCK.sleep(1)  # a micro-batch of the second half may be running: its offsets not committed
    finally:
        run.stop()

    # 2. The same query on the same checkpoint: it resumes from the offsets the checkpoint committed.
    again = Running(SparkEngine(), plan, RunOptions(bootstrap, checkpoint_dir=checkpoints))
    try:
        want = expected(plan, values)
        got = committed(bootstrap, want, timeout=180, exactly=False)
    finally:
        again.stop()
    missing = want - got
    assert not missing, f"{sum(missing.values())} records lost"
    assert set(got) == set(want)  # nothing that was not asked for
    duplicated = sum((got - want).values())
    # at-least-once: a batch written but not yet committed in its checkpoint is written again, never more
    assert duplicated <= len(second), duplicated
    print(f"spark restart from its checkpoint: 0 lost, {duplicated} duplicated of {sum(want.values())}")
