"""Fault injection for the streaming integration tests: an unbounded engine run in a thread that can be
stopped, a broker outage on a broker of the test's own, and one scenario every fault test follows (half the
input committed, the fault, the other half, then every record counted on the real broker)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernel.clock import SYSTEM_CLOCK, Deadline
from streaming.engine import RunOptions
from streaming.plan import Plan
from streaming.stateless import Processor
from tests.streaming.kafka_records import llm_requests, read_to_end
from tidescale.local import environment
from tidescale.local.process import stop

Triple = tuple[str, str | None, str]
OUTAGE_S = 10  # a broker outage lasts this long
RECOVERY_S = 30  # every record is committed within this long after the fault is over (README, Reliability)


class Running:
    """An unbounded run of `engine` in a thread; `stop()` cancels its Flink job or stops its Spark queries,
    which ends the run."""

    def __init__(self, engine: Any, plan: Plan, options: RunOptions) -> None:
        self.engine = engine
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(plan, options), daemon=True)
        self.thread.start()

    def _run(self, plan: Plan, options: RunOptions) -> None:
        try:
            self.engine.run(plan, options)
        except BaseException as exc:  # a cancelled job ends its wait() with an exception
            self.error = exc

    def _started(self) -> bool:
        return any(getattr(self.engine, a, None) is not None for a in ("last_job", "last_queries"))

    def stop(self) -> None:
        deadline = Deadline(60)
        while not self._started() and self.thread.is_alive():
            assert not deadline.expired(), f"the run never started: {self.error}"
            SYSTEM_CLOCK.sleep(0.5)
        if not self.thread.is_alive():
            return  # it ended by itself (`error` says why): nothing left to stop
        job = getattr(self.engine, "last_job", None)
        if job is not None:
            job.cancel().result()
        for query in getattr(self.engine, "last_queries", None) or []:
            query.stop()
        self.thread.join(timeout=60)


def expected(plan: Plan, values: list[bytes]) -> Counter[Triple]:
    processor = Processor(plan)
    results = [processor.process(v) for v in values]
    return Counter((r.topic, r.key, r.value) for r in results if r.topic is not None and r.value is not None)


def committed(bootstrap: str, want: Counter[Triple], timeout: float, exactly: bool = True) -> Counter[Triple]:
    """Poll the topics of `want` until exactly `want` is there (`exactly`), or at least each of its records
    (at-least-once), or the deadline passes; returns what was there last."""
    topics = sorted({t for t, _, _ in want})
    deadline = Deadline(timeout)
    seen: Counter[Triple] = Counter()
    while not deadline.expired():
        seen = Counter(read_to_end(bootstrap, topics))
        if seen == want if exactly else not want - seen:
            break
        SYSTEM_CLOCK.sleep(1)
    return seen


def broker_outage(state: Path) -> Callable[[], None]:
    """The broker of the environment in `state` stopped (SIGTERM, SIGKILL if it lingers) for `OUTAGE_S`, then
    started again on its port."""

    def fault() -> None:
        for process in environment.Environment.load(state).components["kafka"].processes:
            stop(process.pid, process.name)
        SYSTEM_CLOCK.sleep(OUTAGE_S)
        environment.up(["kafka"], state)

    return fault


def survives(
    engine: Any,
    plan: Plan,
    bootstrap: str,
    write: Callable[[str, str, list[bytes]], None],
    checkpoints: Path,
    fault: Callable[[], None],
    exactly: bool,
) -> tuple[Counter[Triple], Counter[Triple]]:
    """Half of 1,200 requests in and committed, `fault()`, the other half in; (got, want) once every record is
    committed (or `RECOVERY_S` after the fault). The run must still be running when it ends."""
    values, _ = llm_requests(1200)
    first, second = values[:600], values[600:]
    write(bootstrap, plan.source.topic, first)
    run = Running(engine, plan, RunOptions(bootstrap, checkpoint_dir=checkpoints))
    try:
        before = committed(bootstrap, expected(plan, first), timeout=180, exactly=exactly)
        assert not expected(plan, first) - before, "the first half never arrived"
        fault()
        write(bootstrap, plan.source.topic, second)
        want = expected(plan, values)
        got = committed(bootstrap, want, timeout=RECOVERY_S, exactly=exactly)
        assert run.error is None, f"the run ended: {run.error}"
    finally:
        run.stop()
    return got, want
