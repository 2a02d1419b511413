"""Exactly-once on Flink under faults: a job cancelled mid-stream and restarted from its last retained
checkpoint, and a job whose broker goes away for 10 s mid-run, neither lose nor duplicate a record (readers
see committed transactions only)."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kernel.clock import SYSTEM_CLOCK, Deadline
from streaming.engine import RunOptions
from streaming.engines.flink import FlinkEngine
from streaming.plan import Plan
from streaming.stateless import Processor
from tests.streaming.kafka_records import example_plan, llm_requests, read_to_end, unique
from tidescale.local import environment
from tidescale.local.process import stop

pytestmark = pytest.mark.integration
Triple = tuple[str, str | None, str]


class Running:
    """An unbounded Flink run in a thread, cancelled on demand."""

    def __init__(self, plan: Plan, options: RunOptions) -> None:
        self.engine = FlinkEngine()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(plan, options), daemon=True)
        self.thread.start()

    def _run(self, plan: Plan, options: RunOptions) -> None:
        try:
            self.engine.run(plan, options)
        except BaseException as exc:  # a cancelled job ends its wait() with an exception
            self.error = exc

    def cancel(self) -> None:
        deadline = Deadline(60)
        while getattr(self.engine, "last_job", None) is None and not deadline.expired():
            SYSTEM_CLOCK.sleep(0.5)
        job = getattr(self.engine, "last_job", None)
        assert job is not None, f"the job never started: {self.error}"
        job.cancel().result()
        self.thread.join(timeout=60)


def expected(plan: Plan, values: list[bytes]) -> Counter[Triple]:
    processor = Processor(plan)
    return Counter((r.topic, r.key, r.value) for r in map(processor.process, values) if r.topic is not None)


def committed(bootstrap: str, plan: Plan, want: Counter[Triple], timeout: float) -> Counter[Triple]:
    """Poll the sink and dead-letter topics until `want` is there (or the deadline passes)."""
    topics = sorted({t for t, _, _ in want})
    deadline = Deadline(timeout)
    seen: Counter[Triple] = Counter()
    while not deadline.expired():
        seen = Counter(read_to_end(bootstrap, topics))
        if seen == want:
            break
        SYSTEM_CLOCK.sleep(2)
    return seen


def latest_checkpoint(root: Path) -> Path:
    done = [p for p in root.glob("*/chk-*") if (p / "_metadata").exists()]
    assert done, f"no completed checkpoint under {root}"
    return max(done, key=lambda p: int(p.name.split("-")[1]))


def test_a_flink_job_restarted_from_its_checkpoint_neither_loses_nor_duplicates_under_exactly_once(
    local_env: environment.Environment, kafka_io: Any, tmp_path: Path
) -> None:
    bootstrap = local_env.kafka_bootstrap
    plan = example_plan(
        "llm-preprocessor", unique(), delivery={"guarantee": "exactly-once", "checkpointInterval": "2s"}
    )
    values, _ = llm_requests(1200)
    first, second = values[:600], values[600:]
    write = kafka_io[1]
    checkpoints = tmp_path / "checkpoints"

    # 1. Run, let the first half be committed, then write the second half and cancel mid-stream.
    write(bootstrap, plan.source.topic, first)
    run = Running(plan, RunOptions(bootstrap, checkpoint_dir=checkpoints))
    try:
        assert committed(bootstrap, plan, expected(plan, first), timeout=180) == expected(plan, first)
        write(bootstrap, plan.source.topic, second)
        SYSTEM_CLOCK.sleep(1)  # some of the second half is processed, not yet committed
    finally:
        run.cancel()
    restore = latest_checkpoint(checkpoints)

    # 2. Restart from the last retained checkpoint; every record arrives exactly once.
    again = Running(
        plan, RunOptions(bootstrap, checkpoint_dir=tmp_path / "checkpoints-2", restore_from=restore)
    )
    try:
        want = expected(plan, values)
        got = committed(bootstrap, plan, want, timeout=180)
    finally:
        again.cancel()
    assert sum(got.values()) == sum(want.values()) == 1200
    assert got == want  # no record lost, none twice


OUTAGE_S = 10  # the broker is away this long
RECOVERY_S = 30  # every record is committed within this long after the broker is back (README, Reliability)


def test_a_flink_job_rides_out_a_broker_outage_and_neither_loses_nor_duplicates(
    kafka_io: Any, tmp_path: Path
) -> None:
    state = tmp_path / "broker"  # a broker of its own: the session's keeps serving the other tests
    env = environment.up(["kafka"], state)
    try:
        bootstrap = env.kafka_bootstrap
        plan = example_plan(
            "llm-preprocessor", unique(), delivery={"guarantee": "exactly-once", "checkpointInterval": "2s"}
        )
        values, _ = llm_requests(1200)
        first, second = values[:600], values[600:]
        kafka_io[1](bootstrap, plan.source.topic, first)
        run = Running(plan, RunOptions(bootstrap, checkpoint_dir=tmp_path / "checkpoints"))
        try:
            assert committed(bootstrap, plan, expected(plan, first), timeout=180) == expected(plan, first)
            # 1. the broker goes away mid-run (SIGTERM, then SIGKILL if it lingers) and comes back on its port
            for process in env.components["kafka"].processes:
                stop(process.pid, process.name)
            SYSTEM_CLOCK.sleep(OUTAGE_S)
            environment.up(["kafka"], state)
            # 2. more input; the job resumes by itself, from where it was
            kafka_io[1](bootstrap, plan.source.topic, second)
            want = expected(plan, values)
            got = committed(bootstrap, plan, want, timeout=RECOVERY_S)
            assert run.error is None, f"the job ended: {run.error}"
        finally:
            run.cancel()
        assert sum(got.values()) == sum(want.values()) == 1200
        assert got == want  # no record lost, none twice
    finally:
        environment.down(state)


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
    bootstrap = local_env.kafka_bootstrap
    plan = example_plan(
        "llm-preprocessor", unique(), delivery={"guarantee": "exactly-once", "checkpointInterval": "2s"}
    )
    values, _ = llm_requests(1200)
    first, second = values[:600], values[600:]
    kafka_io[1](bootstrap, plan.source.topic, first)
    run = Running(plan, RunOptions(bootstrap, checkpoint_dir=tmp_path / "checkpoints"))
    try:
        assert committed(bootstrap, plan, expected(plan, first), timeout=180) == expected(plan, first)
        workers = python_workers()
        assert workers, "no Python worker found to kill"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        kafka_io[1](bootstrap, plan.source.topic, second)
        want = expected(plan, values)
        got = committed(bootstrap, plan, want, timeout=RECOVERY_S)
        assert run.error is None, f"the job ended: {run.error}"
        assert not set(workers) & set(python_workers())  # new workers did the rest
    finally:
        run.cancel()
    assert sum(got.values()) == sum(want.values()) == 1200
    assert got == want
