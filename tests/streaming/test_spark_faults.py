"""At-least-once on Spark under faults (the guarantee the README states for it): a streaming query whose
broker goes away for 10 s mid-run resumes by itself and loses no record; duplicates are counted, allowed."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kernel.clock import SYSTEM_CLOCK, Deadline
from streaming.engine import RunOptions
from streaming.engines.spark import SparkEngine
from streaming.plan import Plan
from streaming.stateless import Processor
from tests.streaming.kafka_records import example_plan, llm_requests, read_to_end, unique
from tidescale.local import environment
from tidescale.local.process import stop

pytestmark = pytest.mark.integration
Triple = tuple[str, str | None, str]

OUTAGE_S = 10
RECOVERY_S = 30  # every record is committed within this long after the broker is back (README, Reliability)


class RunningSpark:
    """An unbounded Spark run in a thread; `stop()` stops its streaming queries, which ends the run."""

    def __init__(self, plan: Plan, options: RunOptions) -> None:
        self.engine = SparkEngine()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(plan, options), daemon=True)
        self.thread.start()

    def _run(self, plan: Plan, options: RunOptions) -> None:
        try:
            self.engine.run(plan, options)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        deadline = Deadline(60)
        while getattr(self.engine, "last_queries", None) is None and self.thread.is_alive():
            assert not deadline.expired(), "the queries never started"
            SYSTEM_CLOCK.sleep(0.5)
        for query in getattr(self.engine, "last_queries", []):
            query.stop()
        self.thread.join(timeout=60)


def expected(plan: Plan, values: list[bytes]) -> Counter[Triple]:
    processor = Processor(plan)
    results = [processor.process(v) for v in values]
    return Counter((r.topic, r.key, r.value) for r in results if r.topic is not None and r.value is not None)


def all_there(bootstrap: str, want: Counter[Triple], timeout: float) -> Counter[Triple]:
    """Poll the output until every wanted record is there at least once (or the deadline passes)."""
    topics = sorted({t for t, _, _ in want})
    deadline = Deadline(timeout)
    seen: Counter[Triple] = Counter()
    while not deadline.expired():
        seen = Counter(read_to_end(bootstrap, topics))
        if not want - seen:
            break
        SYSTEM_CLOCK.sleep(1)
    return seen


def test_a_spark_query_rides_out_a_broker_outage_and_loses_nothing(kafka_io: Any, tmp_path: Path) -> None:
    state = tmp_path / "broker"  # a broker of its own: the session's keeps serving the other tests
    env = environment.up(["kafka"], state)
    try:
        bootstrap = env.kafka_bootstrap
        plan = example_plan("llm-preprocessor", unique(), delivery={"checkpointInterval": "2s"})
        values, _ = llm_requests(1200)
        first, second = values[:600], values[600:]
        kafka_io[1](bootstrap, plan.source.topic, first)
        run = RunningSpark(plan, RunOptions(bootstrap, checkpoint_dir=tmp_path / "checkpoints"))
        try:
            assert not expected(plan, first) - all_there(bootstrap, expected(plan, first), timeout=180)
            for process in env.components["kafka"].processes:
                stop(process.pid, process.name)
            SYSTEM_CLOCK.sleep(OUTAGE_S)
            environment.up(["kafka"], state)
            kafka_io[1](bootstrap, plan.source.topic, second)
            want = expected(plan, values)
            got = all_there(bootstrap, want, timeout=RECOVERY_S)
            assert run.error is None, f"the query ended: {run.error}"
        finally:
            run.stop()
        missing = want - got
        assert not missing, f"{sum(missing.values())} records lost"
        assert set(got) == set(want)  # nothing that was not asked for
    finally:
        environment.down(state)
