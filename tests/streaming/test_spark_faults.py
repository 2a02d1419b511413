"""At-least-once on Spark under faults (the guarantee the README states for it; `tidescale.local.faults`): a
query whose broker goes away for 10 s mid-run, one stopped mid-stream and started again on its checkpoint,
one whose Python workers are killed (local[N,4]: a failed task is tried again), one on a `local-cluster`
master whose executor JVM is killed, and poison and oversized records mid-stream: no record lost, duplicates
counted, first arrivals in order within their input key, every record committed in time."""

from __future__ import annotations

from pathlib import Path

import pytest

from streaming.engines.spark import SparkEngine
from tests.streaming.faults import fault_plan, kept
from tidescale.local import environment
from tidescale.local.faults import (
    EXECUTOR,
    EXECUTOR_RECOVERY_S,
    RECOVERY_S,
    RESTART_RECOVERY_S,
    spark_cluster,
    survive,
)

pytestmark = pytest.mark.integration


def test_a_spark_query_rides_out_a_broker_outage_and_loses_nothing(tmp_path: Path) -> None:
    state = tmp_path / "broker"  # a broker of its own: the session's keeps serving the other tests
    env = environment.up(["kafka"], state)
    try:
        outcome = survive(
            "broker", SparkEngine, fault_plan(), env.kafka_bootstrap, tmp_path, broker_state=state
        )
    finally:
        environment.down(state)
    kept(outcome, RECOVERY_S, exactly=False)


def test_a_spark_query_stopped_mid_stream_and_started_on_its_checkpoint_loses_nothing(
    local_env: environment.Environment, tmp_path: Path
) -> None:
    outcome = survive("restart", SparkEngine, fault_plan(), local_env.kafka_bootstrap, tmp_path)
    kept(outcome, RESTART_RECOVERY_S, exactly=False)
    # a batch written but not yet committed in its checkpoint is written again, never more
    assert outcome.tally.duplicated <= outcome.records // 2, outcome.row()


def test_a_spark_query_whose_python_workers_are_killed_retries_its_tasks_and_loses_nothing(
    local_env: environment.Environment, tmp_path: Path
) -> None:
    outcome = survive("worker", SparkEngine, fault_plan(), local_env.kafka_bootstrap, tmp_path)
    assert outcome.killed, "no Python worker was killed"
    kept(outcome, RECOVERY_S, exactly=False)


def test_a_spark_query_whose_executor_jvm_is_killed_gets_a_new_executor_and_loses_nothing(
    local_env: environment.Environment, tmp_path: Path
) -> None:
    with spark_cluster():  # a standalone Master and Worker in the driver's JVM, the executor in its own
        outcome = survive(EXECUTOR, SparkEngine, fault_plan(), local_env.kafka_bootstrap, tmp_path)
    assert outcome.killed, "no executor JVM was killed"
    kept(outcome, EXECUTOR_RECOVERY_S, exactly=False)  # the Worker starts a new executor JVM first


@pytest.mark.parametrize("fault", ["poison", "oversize"])
def test_a_spark_query_sends_poison_and_oversized_records_mid_stream_to_the_dead_letters(
    fault: str, local_env: environment.Environment, tmp_path: Path
) -> None:
    outcome = survive(fault, SparkEngine, fault_plan(), local_env.kafka_bootstrap, tmp_path)
    kept(outcome, RECOVERY_S, exactly=False)
