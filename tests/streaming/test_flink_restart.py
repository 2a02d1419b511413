"""Exactly-once on Flink under faults (`tidescale.local.faults`): a job cancelled mid-stream and restarted
from its last retained checkpoint, a job whose broker goes away for 10 s mid-run, one whose Python workers are
killed, and poison and oversized records mid-stream: no record lost or duplicated (readers see committed
transactions only), first arrivals in order within their input key, every record committed in time."""

from __future__ import annotations

from pathlib import Path

import pytest

from streaming.engines.flink import FlinkEngine
from tests.streaming.faults import fault_plan, kept
from tidescale.local import environment
from tidescale.local.faults import RECOVERY_S, RESTART_RECOVERY_S, survive

pytestmark = pytest.mark.integration
EXACTLY_ONCE = "exactly-once"


def test_a_flink_job_restarted_from_its_checkpoint_neither_loses_nor_duplicates_under_exactly_once(
    local_env: environment.Environment, tmp_path: Path
) -> None:
    plan = fault_plan(guarantee=EXACTLY_ONCE)
    outcome = survive("restart", FlinkEngine, plan, local_env.kafka_bootstrap, tmp_path)
    kept(outcome, RESTART_RECOVERY_S, exactly=True)


def test_a_flink_job_rides_out_a_broker_outage_and_neither_loses_nor_duplicates(tmp_path: Path) -> None:
    state = tmp_path / "broker"  # a broker of its own: the session's keeps serving the other tests
    env = environment.up(["kafka"], state)
    try:
        plan = fault_plan(guarantee=EXACTLY_ONCE)
        outcome = survive("broker", FlinkEngine, plan, env.kafka_bootstrap, tmp_path, broker_state=state)
    finally:
        environment.down(state)
    kept(outcome, RECOVERY_S, exactly=True)


def test_a_flink_job_whose_python_workers_are_killed_restarts_them_and_neither_loses_nor_duplicates(
    local_env: environment.Environment, tmp_path: Path
) -> None:
    plan = fault_plan(guarantee=EXACTLY_ONCE)
    outcome = survive("worker", FlinkEngine, plan, local_env.kafka_bootstrap, tmp_path)
    assert outcome.killed, "no Python worker was killed"
    kept(outcome, RECOVERY_S, exactly=True)


@pytest.mark.parametrize("fault", ["poison", "oversize"])
def test_a_flink_job_sends_poison_and_oversized_records_mid_stream_to_the_dead_letters_once(
    fault: str, local_env: environment.Environment, tmp_path: Path
) -> None:
    plan = fault_plan(guarantee=EXACTLY_ONCE)
    outcome = survive(fault, FlinkEngine, plan, local_env.kafka_bootstrap, tmp_path)
    kept(outcome, RECOVERY_S, exactly=True)
