"""Exactly-once on Flink under faults: a job cancelled mid-stream and restarted from its last retained
checkpoint, a job whose broker goes away for 10 s mid-run, and one whose Python workers are killed, neither
lose nor duplicate a record (readers see committed transactions only)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from kernel.clock import SYSTEM_CLOCK
from streaming.engine import RunOptions
from streaming.engines.flink import FlinkEngine
from tests.streaming.faults import Running, broker_outage, committed, expected, survives
from tests.streaming.kafka_records import example_plan, llm_requests, unique
from tidescale.local import environment

pytestmark = pytest.mark.integration
EXACTLY_ONCE = {"guarantee": "exactly-once", "checkpointInterval": "2s"}


def latest_checkpoint(root: Path) -> Path:
    done = [p for p in root.glob("*/chk-*") if (p / "_metadata").exists()]
    assert done, f"no completed checkpoint under {root}"
    return max(done, key=lambda p: int(p.name.split("-")[1]))


def test_a_flink_job_restarted_from_its_checkpoint_neither_loses_nor_duplicates_under_exactly_once(
    local_env: environment.Environment, kafka_io: Any, tmp_path: Path
) -> None:
    bootstrap = local_env.kafka_bootstrap
    plan = example_plan("llm-preprocessor", unique(), delivery=EXACTLY_ONCE)
    values, _ = llm_requests(1200)
    first, second = values[:600], values[600:]
    write = kafka_io[1]
    checkpoints = tmp_path / "checkpoints"

    # 1. Run, let the first half be committed, then write the second half and cancel mid-stream.
    write(bootstrap, plan.source.topic, first)
    run = Running(FlinkEngine(), plan, RunOptions(bootstrap, checkpoint_dir=checkpoints))
    try:
        assert committed(bootstrap, expected(plan, first), timeout=180) == expected(plan, first)
        write(bootstrap, plan.source.topic, second)
        SYSTEM_CLOCK.sleep(1)  # some of the second half is processed, not yet committed
    finally:
        run.stop()
    restore = latest_checkpoint(checkpoints)

    # 2. Restart from the last retained checkpoint; every record arrives exactly once.
    again = Running(
        FlinkEngine(),
        plan,
        RunOptions(bootstrap, checkpoint_dir=tmp_path / "checkpoints-2", restore_from=restore),
    )
    try:
        want = expected(plan, values)
        got = committed(bootstrap, want, timeout=180)
    finally:
        again.stop()
    assert sum(got.values()) == sum(want.values()) == 1200
    assert got == want  # no record lost, none twice


def test_a_flink_job_rides_out_a_broker_outage_and_neither_loses_nor_duplicates(
    kafka_io: Any, tmp_path: Path
) -> None:
    state = tmp_path / "broker"  # a broker of its own: the session's keeps serving the other tests
    env = environment.up(["kafka"], state)
    try:
        plan = example_plan("llm-preprocessor", unique(), delivery=EXACTLY_ONCE)
        got, want = survives(
            FlinkEngine(), plan, env.kafka_bootstrap, kafka_io[1], tmp_path / "cp", broker_outage(state), True
        )
    finally:
        environment.down(state)
    assert sum(got.values()) == sum(want.values()) == 1200
    assert got == want  # no record lost, none twice


def python_workers() -> list[int]:
    """The Beam Python worker processes PyFlink's TaskManager started (process mode), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"pyflink" in command and b"beam" in command:
            found.append(int(entry.name))
    return found


def test_a_flink_job_whose_python_worker_is_killed_restarts_it_and_neither_loses_nor_duplicates(
    local_env: environment.Environment, kafka_io: Any, tmp_path: Path
) -> None:
    killed: list[int] = []

    def kill_the_workers() -> None:
        killed.extend(python_workers())
        assert killed, "no Python worker found to kill"
        for pid in killed:
            os.kill(pid, signal.SIGKILL)

    plan = example_plan("llm-preprocessor", unique(), delivery=EXACTLY_ONCE)
    got, want = survives(
        FlinkEngine(), plan, local_env.kafka_bootstrap, kafka_io[1], tmp_path / "cp", kill_the_workers, True
    )
    assert sum(got.values()) == sum(want.values()) == 1200
    assert got == want
    assert not set(killed) & set(python_workers())  # new workers did the rest
