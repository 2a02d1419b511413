"""Faults injected into a pipeline run on a local broker, for the fault tests and `tidescale bench streaming
--fault`: the broker of a local environment stopped and started again on its port, the engine's Python
workers killed (or Spark's executor JVM, on a `local-cluster` master), the run stopped and started again on
its checkpoint, poison records (valid JSON, impossible values) and records over the size limit written
mid-stream.

`survive` runs one: half the input written and committed, the fault, the other half; then every record
counted (`streaming.tally`) as a reader with `isolation.level=read_committed` sees it, and the seconds from
the fault's end (the broker back, the workers killed, the restart issued, the bad records written) until all
of it was committed.

Shell: runs engines in threads, stops and starts the broker, signals this process's descendants, reads and
writes topics. The counting is `streaming.tally`'s (pure).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel.clock import SYSTEM_CLOCK, Clock, Deadline
from kernel.errors import TidescaleError
from streaming.engine import RunOptions, StreamEngine
from streaming.plan import Plan
from streaming.tally import Placed, Tally, Triple, expected, positions
from tidescale.local import environment, kafka
from tidescale.local.process import stop
from tidescale.memory import parents
from tidescale.traffic import llm_requests

FAULTS = ("broker", "worker", "restart", "poison", "oversize")
# Spark only, on a `local-cluster` master (`spark_cluster()`): the executor JVM killed; local mode runs the
# executor inside the driver's JVM, where killing it would kill the driver too.
EXECUTOR = "executor"
OUTAGE_S = 10  # a broker outage lasts this long
RECOVERY_S = 30  # every record committed within this long after the fault's end (README, Reliability)
# … after a restart is issued or an executor JVM killed: a new JVM (an engine, an executor) starts first
RESTART_RECOVERY_S = 90
# … after Spark's executor JVM is killed: the Worker starts a new one (C1 only, the serial collector:
# `streaming.engines.spark`), 7–17 s on this 2-core machine at load 3–7 (docs/benchmarks.md, "Faults,
# counted"); 45 s leaves a CI machine busier than that 2.5 times the slowest run
EXECUTOR_RECOVERY_S = 45
PATIENCE_S = 180  # how long a run waits for its records before counting the rest as lost
INPUT_KEYS = 8  # input records are keyed k0…k7: records of one key share an input partition
INPUT_PARTITIONS = 2
BAD_RECORDS = 10  # poison or oversized records written in the middle of the second half
MAX_RECORD_BYTES = 20_000  # the fault runs' `delivery.maxRecordBytes`: an oversized record stays small
# Which of this process's descendants are the engine's Python workers: every marker in the command line.
WORKER_MARKERS = {
    "flink": ((b"pyflink", b"beam"),),  # Beam's Python SDK harness, started by the TaskManager
    "spark": ((b"pyspark.daemon",), (b"pyspark.worker",)),  # the daemon and the workers it forks
    EXECUTOR: ((b"java", b"CoarseGrainedExecutorBackend"),),  # a Spark executor JVM (standalone)
}
SPARK_MASTER_ENV = "TIDESCALE_SPARK_MASTER"  # read by `streaming.engines.spark.session`
SPARK_CLUSTER = "local-cluster[1,1,1024]"  # one Worker, 1 core, 1024 MiB: one executor JVM


class FaultError(TidescaleError):
    """A fault run that could not be carried out (no worker to kill, no checkpoint, the run never started)."""


def keys(n: int) -> list[str]:
    return [f"k{i % INPUT_KEYS}" for i in range(n)]


def poison(n: int) -> list[bytes]:
    """Valid JSON with impossible values: a long past 64 bits, or a model whose topic name Kafka refuses."""
    return [
        json.dumps(
            {"id": f"p{i}", "user": "u", "model": "m" * 300, "prompt": "hi", "ts": 1}
            if i % 2
            else {"id": f"p{i}", "user": "u", "model": "mistral-7b", "prompt": "hi", "ts": 2**63 + i}
        ).encode()
        for i in range(n)
    ]


def oversize(n: int, limit: int = MAX_RECORD_BYTES) -> list[bytes]:
    """Valid requests whose result is over `limit` bytes (to the dead letters, prefix, size and SHA-256)."""
    words = limit // 5 + 100
    return [
        json.dumps(
            {"id": f"o{i}", "user": "u", "model": "mistral-7b", "prompt": "word " * words, "ts": i}
        ).encode()
        for i in range(n)
    ]


def write(bootstrap: str, topic: str, values: Sequence[bytes], keyed: Sequence[str]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 0})
    for value, key in zip(values, keyed, strict=True):
        producer.produce(topic, value, key.encode())
        producer.poll(0)
    left = producer.flush(60)
    if left:
        raise FaultError(f"{left} of {len(values)} records not delivered to {topic} on {bootstrap}")


def delivered(bootstrap: str, topics: list[str]) -> list[Placed]:
    """Every committed record of `topics` (read_committed, each partition to its end), with its partition."""
    return [
        (
            str(m.topic()),
            int(m.partition() or 0),
            (str(m.topic()), m.key().decode() if m.key() else None, (m.value() or b"").decode()),
        )
        for m in kafka.messages_to_end(bootstrap, topics, timeout=60)
    ]


class Running:
    """An unbounded run of `engine` in a thread; `stop()` cancels its Flink job or stops its Spark queries,
    which ends the run."""

    def __init__(self, engine: StreamEngine, plan: Plan, options: RunOptions) -> None:
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

    def stop(self, clock: Clock = SYSTEM_CLOCK) -> None:
        deadline = Deadline(60, clock)
        while not self._started() and self.thread.is_alive():
            if deadline.expired():
                raise FaultError(f"the {self.engine.name} run never started")
            clock.sleep(0.5)
        if not self.thread.is_alive():
            return  # it ended by itself (`error` says why): nothing left to stop
        job: Any = getattr(self.engine, "last_job", None)
        if job is not None:
            job.cancel().result()
        for query in getattr(self.engine, "last_queries", None) or []:
            try:
                query.stop()
            except Exception:
                # Spark's stop() cancels the query's jobs twice, the second time after the query ended; by
                # then the run, seeing it end, may have stopped the session: "Cannot call methods on a
                # stopped SparkContext". The query is stopped all the same once the run is over.
                self.thread.join(timeout=60)
                if self.thread.is_alive():
                    raise
        self.thread.join(timeout=60)


def children(proc: Path = Path("/proc")) -> dict[int, list[int]]:
    """Each process's children."""
    found: dict[int, list[int]] = {}
    for pid, parent in parents(proc).items():
        found.setdefault(parent, []).append(pid)
    return found


def python_workers(engine: str, root: int | None = None, proc: Path = Path("/proc")) -> list[int]:
    """The Python worker processes of `engine` among the descendants of `root` (this process): another
    run's workers on the same machine are not ours to kill."""
    tree = children(proc)
    pending, found = list(tree.get(root or os.getpid(), [])), []
    while pending:
        pid = pending.pop()
        pending.extend(tree.get(pid, []))
        try:
            command = (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if any(all(m in command for m in markers) for markers in WORKER_MARKERS[engine]):
            found.append(pid)
    return sorted(found)


def kill_workers(engine: str) -> list[int]:
    """SIGKILL every Python worker of `engine` (or, `EXECUTOR`, every Spark executor JVM) this process
    started; their pids."""
    killed = python_workers(engine)
    if not killed:
        raise FaultError(f"no {engine} process of this process found to kill")
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):  # ended on its own meanwhile
            os.kill(pid, signal.SIGKILL)
    return killed


def stop_broker(state_dir: Path) -> None:
    """The broker of the environment in `state_dir` stopped (SIGTERM, SIGKILL if it lingers)."""
    for process in environment.Environment.load(state_dir).components["kafka"].processes:
        stop(process.pid, process.name)


def latest_checkpoint(root: Path) -> Path:
    """Flink's last completed checkpoint under `root` (`<job>/chk-<n>` with its `_metadata`)."""
    done = [p for p in root.glob("*/chk-*") if (p / "_metadata").exists()]
    if not done:
        raise FaultError(f"no completed checkpoint under {root}")
    return max(done, key=lambda p: int(p.name.split("-")[1]))


def guarantee(engine: StreamEngine, plan: Plan) -> str:
    """What `engine` keeps for `plan`: the spec's guarantee, or the strongest it has (Spark's: at least
    once)."""
    return plan.delivery.guarantee if plan.delivery.guarantee in engine.delivery else engine.delivery[-1]


@dataclass
class Outcome:
    """One fault run, counted. `recovery_s`: from the fault's end until every record was committed (None:
    not within `PATIENCE_S`); `pending`: how many were not committed yet just after the fault's end;
    `error`: why the run ended by itself, if it did."""

    engine: str
    fault: str
    guarantee: str
    records: int
    tally: Tally
    recovery_s: float | None
    pending: int  # records not yet committed just after the fault's end: what the recovery was for
    error: str | None = None
    killed: list[int] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "fault": self.fault,
            "records": self.records,
            "lost": self.tally.lost,
            "duplicated": self.tally.duplicated,
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 1),
            "guarantee": self.guarantee,
            "pending_after_fault": self.pending,
            "unexpected": self.tally.unexpected,
            "reordered": self.tally.reordered,
            "error": self.error,
        }


def wait_committed(
    bootstrap: str, topics: list[str], want: Counter[Triple], exactly: bool, timeout: float, clock: Clock
) -> tuple[int, float | None]:
    """Poll until every record of `want` is committed (exactly `want` when `exactly`): how many were missing
    at the first look, and the monotonic time of the look that found them all (None: not within
    `timeout`)."""
    deadline = Deadline(timeout, clock)
    first: int | None = None
    while not deadline.expired():
        got = Counter(record for _, _, record in delivered(bootstrap, topics))
        missing = sum((want - got).values())
        first = missing if first is None else first
        if missing == 0 and (got == want or not exactly):
            return first, clock.monotonic()
        clock.sleep(0.2)
    return sum(want.values()) if first is None else first, None


def survive(
    fault: str,
    make_engine: Callable[[], StreamEngine],
    plan: Plan,
    bootstrap: str,
    checkpoints: Path,
    *,
    broker_state: Path | None = None,
    records: int = 1200,
    clock: Clock = SYSTEM_CLOCK,
) -> Outcome:
    """Run `plan` unbounded on `bootstrap`, write half of `records` requests (every 100th malformed) and wait
    until they are committed, inject `fault` (one of `FAULTS`; `broker` needs the environment's
    `broker_state`), write the other half, and count what was committed. The run is stopped at the end."""
    if fault not in (*FAULTS, EXECUTOR):
        raise FaultError(f"no fault {fault!r} (known: {', '.join((*FAULTS, EXECUTOR))})")
    if fault == "broker" and broker_state is None:
        raise FaultError("a broker fault needs the state directory of the broker's local environment")
    engine = make_engine()
    exactly = guarantee(engine, plan) == "exactly-once"
    # 1. The input: half now, half after the fault (with the bad records in its middle).
    values = llm_requests(records, malformed_every=100)
    first, second = values[: records // 2], values[records // 2 :]
    bad = {"poison": poison, "oversize": oversize}.get(fault)
    if bad is not None:
        middle = len(second) // 2
        second = [*second[:middle], *bad(BAD_RECORDS), *second[middle:]]
    everything = [*first, *second]
    keyed = keys(len(everything))
    want = expected(plan, everything)
    topics = sorted({t for t, _, _ in want} | {plan.dead_letter.topic})
    kafka.create_topic(bootstrap, plan.source.topic, INPUT_PARTITIONS)
    write(bootstrap, plan.source.topic, first, keyed[: len(first)])

    # 2. Run until the first half is committed.
    run = Running(engine, plan, RunOptions(bootstrap, checkpoint_dir=checkpoints / "1"))
    killed: list[int] = []
    try:
        if wait_committed(bootstrap, topics, expected(plan, first), exactly, PATIENCE_S, clock)[1] is None:
            raise FaultError(f"the first half never arrived on {engine.name}: {run.error}")
        # 3. The fault; `ended` is when it is over.
        rest = keyed[len(first) :]
        if fault == "broker":
            assert broker_state is not None
            stop_broker(broker_state)
            clock.sleep(OUTAGE_S)
            environment.up(["kafka"], broker_state)
            ended = clock.monotonic()
            write(bootstrap, plan.source.topic, second, rest)
        elif fault in ("worker", EXECUTOR):
            write(bootstrap, plan.source.topic, second, rest)  # the kill lands while they are processed
            killed = kill_workers(engine.name if fault == "worker" else EXECUTOR)
            ended = clock.monotonic()
        elif fault == "restart":
            write(bootstrap, plan.source.topic, second, rest)
            # At once, mid-stream: the second half is in flight (processed in part, its output uncommitted).
            run.stop(clock)
            # Flink resumes from its last retained checkpoint (a new directory for the new job's); Spark's
            # queries from the offsets their checkpoint directory committed.
            restore = latest_checkpoint(checkpoints / "1") if engine.name == "flink" else None
            again = checkpoints / ("2" if restore is not None else "1")
            engine = make_engine()
            run = Running(engine, plan, RunOptions(bootstrap, checkpoint_dir=again, restore_from=restore))
            ended = clock.monotonic()
        else:
            write(bootstrap, plan.source.topic, second, rest)
            ended = clock.monotonic()
        # 4. Wait for every record; how long that took from the fault's end.
        pending, done = wait_committed(bootstrap, topics, want, exactly, PATIENCE_S, clock)
        # The first line: Spark's carries the whole Java stack trace and the query's plan after it.
        error = None if run.error is None else f"{type(run.error).__name__}: {run.error}".splitlines()[0]
    finally:
        run.stop(clock)
    # 5. Count once the run is stopped: duplicates written late count too.
    got = delivered(bootstrap, topics)
    tally = Tally.of(want, got, positions(plan, everything, keyed))
    recovery = None if done is None else done - ended
    kept = guarantee(engine, plan)
    return Outcome(engine.name, fault, kept, len(everything), tally, recovery, pending, error, killed)


@contextlib.contextmanager
def spark_cluster(master: str = SPARK_CLUSTER) -> Iterator[None]:
    """Spark sessions started inside run on `master` (`TIDESCALE_SPARK_MASTER`); the standalone Worker's
    directories this made under `$SPARK_HOME/work` (pyspark's own, inside the venv) are removed after."""
    import pyspark

    work = Path(pyspark.__file__).parent / "work"
    before = set(work.iterdir()) if work.exists() else set()
    previous = os.environ.get(SPARK_MASTER_ENV)
    os.environ[SPARK_MASTER_ENV] = master
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SPARK_MASTER_ENV, None)
        else:
            os.environ[SPARK_MASTER_ENV] = previous
        made = (set(work.iterdir()) if work.exists() else set()) - before
        for path in made:
            shutil.rmtree(path, ignore_errors=True)
        if work.exists() and not before and not any(work.iterdir()):
            work.rmdir()
