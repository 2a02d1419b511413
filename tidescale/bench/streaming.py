"""`tidescale bench streaming`: Kafka → the LLM preprocessor → Kafka, records per second, measured in
one run beside the broker's own produce and consume ceiling (Kafka's perf tools) and two plain
consume-transform-produce loops in this Python process (kafka-python and confluent-kafka).

Each pipeline run reads the same N input records (2 partitions) into its own output topics. Its rate is
N over the span between the first and the last record it wrote (Kafka CreateTime), so engine start-up
(a JVM, a mini-cluster, a group join) is reported apart as `*_wall_seconds`, not mixed in; beside it,
`steady_records_per_second` counts only what was written between the 20 % and the 80 % marks of the output,
once the run flows (see `OutputTiming`). `--warmup N` unmeasured engine runs of the same records come first,
in the same process, so that the measured runs find the JVM started and its code compiled as a long-running
job would (the local Flink JVM compiles a record's path with C2 only once it is that hot); they are
reported under `warmup`, outside the medians. Every engine and loop run carries the 1-minute load average
taken just before it.

`--fault broker|worker|restart|poison|oversize|executor|all` runs the pipeline on a broker of its own
instead, injects the fault mid-run (`tidescale.local.faults`) and counts, as a read_committed reader sees
the output and dead-letter topics, what was lost and duplicated and how long after the fault's end every
record was committed: one JSON object per fault (a list for `all`).

Lives in the composition root because it orchestrates the local environment (a broker when none is
given), Kafka's perf tools from the harness and the RSS sampler, around the streaming engines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import uuid
from bisect import bisect_right
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from kernel.clock import SYSTEM_CLOCK
from kernel.errors import PermanentError
from streaming import pipeline_file, spec
from streaming.cli import default_bootstrap
from streaming.engine import EngineRegistry, RunOptions
from streaming.engines import register_builtins
from streaming.plan import Plan, plan
from tidescale.local import environment, faults, kafka
from tidescale.memory import PeakSampler
from tidescale.traffic import MODELS, llm_requests

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipelines" / "llm-preprocessor.yaml"
PARTITIONS = 2


def add_benchmarks(bench_sub: Any) -> None:
    bench = bench_sub.add_parser(
        "streaming", help="pipeline records/s vs the broker ceiling and two Python loops"
    )
    bench.add_argument("--engine", choices=("flink", "spark", "python"), default="flink")
    bench.add_argument(
        "--records", type=int, default=None, help="default: 200,000; with --fault 1,200 (half before it)"
    )
    bench.add_argument(
        "--bootstrap", default=None, help="default: the local environment, else one started for the run"
    )
    bench.add_argument("--parallelism", type=int, default=2)
    bench.add_argument(
        "--runs", type=int, default=1, help="engine and confluent-kafka loop runs, alternating (default 1)"
    )
    bench.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="unmeasured engine runs of the same records before the measured ones, in the same process (JVM "
        "start, JIT); reported under `warmup`, not in the medians (default 1; not with --fault)",
    )
    bench.add_argument(
        "--fault",
        choices=(*faults.FAULTS, faults.EXECUTOR, "all"),
        default=None,
        help="count lost and duplicated records and the recovery time under this fault (flink, spark); "
        f"`{faults.EXECUTOR}`: spark on {faults.SPARK_CLUSTER}; `all`: every fault of the engine",
    )
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=run)


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 262144})
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60):
        raise RuntimeError(f"input not fully written to {topic}")


@dataclass(frozen=True)
class OutputTiming:
    """What a run wrote, seen from its records' timestamps (Kafka CreateTime, ms)."""

    records: int
    span_s: float  # first to last record
    longest_pause_s: float  # the largest gap between consecutive records (all output topics together)
    # Records written after the 20 % mark up to the 80 % mark, over the time between them: the rate once a run
    # is flowing. The span's rate also counts what an engine emits in its first step, whose work came before
    # the span (a Flink subtask's first bundle): the larger that step, the higher the span's rate alone.
    steady_per_second: float

    @classmethod
    def of(cls, stamps_ms: list[int]) -> OutputTiming:
        ordered = sorted(stamps_ms)
        if not ordered:
            return cls(0, 1e-3, 0.0, 0.0)
        span = max((ordered[-1] - ordered[0]) / 1000, 1e-3)
        gaps = (b - a for a, b in pairwise(ordered))
        low, high = ordered[len(ordered) // 5], ordered[len(ordered) * 4 // 5]
        if high > low:
            # Counted by time, not by position: output that comes in blocks is one step at each mark.
            steady = (bisect_right(ordered, high) - bisect_right(ordered, low)) / ((high - low) / 1000)
        else:
            steady = len(ordered) / span
        return cls(len(ordered), span, max(gaps, default=0) / 1000, steady)


def output_timing(bootstrap: str, topics: list[str]) -> OutputTiming:
    """Every committed record of `topics`, read to the end, by its timestamp."""
    return OutputTiming.of([m.timestamp()[1] for m in kafka.messages_to_end(bootstrap, topics, timeout=600)])


def perf_ceiling(bootstrap: str, records: int, record_size: int) -> dict[str, float]:
    """Kafka's ProducerPerformance then ConsumerPerformance on a fresh topic of `PARTITIONS`."""
    topic = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    produce_rate = kafka.producer_perf(bootstrap, topic, records, record_size).records_per_second
    consume_rate = kafka.consumer_perf(bootstrap, topic, records).records_per_second
    # A pipeline consumes and produces every record on the same broker: the two costs add up.
    combined = 1 / (1 / produce_rate + 1 / consume_rate)
    return {"produce": produce_rate, "consume": consume_rate, "combined": combined}


def bench_plan(suffix: str, source: str, parallelism: int) -> Plan:
    pipeline = spec.retarget(
        pipeline_file.load(EXAMPLE),
        source=source,
        group=f"bench-{suffix}",
        sink=f"bench-out-{suffix}",
        dead_letter=f"bench-dlq-{suffix}",
        parallelism=parallelism,
    )
    return plan(pipeline)


def measure(
    engine: str,
    base: Plan,
    bootstrap: str,
    source: str,
    parallelism: int,
    client: str | None = None,
    *,
    engines: EngineRegistry,
) -> dict[str, float]:
    suffix = f"{engine if client is None else client}-{uuid.uuid4().hex[:6]}"
    pipeline = bench_plan(suffix, source, parallelism)
    load = load_average()
    started = SYSTEM_CLOCK.monotonic()
    with tempfile.TemporaryDirectory(prefix="tidescale-bench-") as checkpoints:
        options = RunOptions(bootstrap, bounded=True, checkpoint_dir=Path(checkpoints), timeout_s=1800)
        if client is not None:
            from streaming.engines.python import PythonEngine

            PythonEngine(client).run(pipeline, options)
        else:
            engines.get(engine).run(pipeline, options)
    wall = SYSTEM_CLOCK.monotonic() - started
    topics = [f"{pipeline.sink.topic}.{m}" for m in MODELS] + [pipeline.dead_letter.topic]
    timing = output_timing(bootstrap, topics)
    return {
        "records": timing.records,
        "records_per_second": timing.records / timing.span_s,
        "steady_records_per_second": timing.steady_per_second,
        "longest_pause_s": timing.longest_pause_s,
        "wall_seconds": wall,
        "load_average": load,
    }


def load_average() -> float:
    """The 1-minute load average of the machine, as a run starts (how busy it was around the run)."""
    return round(os.getloadavg()[0], 2)


def engine_row(engine: dict[str, float]) -> dict[str, float]:
    """The engine's side of a run (all of a warm-up run)."""
    return {
        "records_out": engine["records"],
        "records_per_second": round(engine["records_per_second"]),
        "steady_records_per_second": round(engine["steady_records_per_second"]),
        "longest_pause_s": round(engine["longest_pause_s"], 3),
        "engine_wall_seconds": round(engine["wall_seconds"], 1),
        "load_average": engine["load_average"],
    }


def run_row(engine: dict[str, float], loop: dict[str, float], ceiling: dict[str, float]) -> dict[str, float]:
    """One run: the engine, the confluent-kafka loop and the broker ceiling, measured one after another."""
    return {
        **engine_row(engine),
        "confluent_kafka_records_per_second": round(loop["records_per_second"]),
        "confluent_kafka_steady_records_per_second": round(loop["steady_records_per_second"]),
        "confluent_kafka_longest_pause_s": round(loop["longest_pause_s"], 3),
        "confluent_kafka_load_average": loop["load_average"],
        "broker_ceiling_records_per_second": round(ceiling["combined"]),
        "broker_produce_records_per_second": round(ceiling["produce"]),
        "broker_consume_records_per_second": round(ceiling["consume"]),
    }


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians over the runs, the engine's minimum beside its median, the longest pause of any run, and the
    ratios of every run (the goals hold for each run, not only the median)."""

    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    fractions = [r["records_per_second"] / r["broker_ceiling_records_per_second"] for r in runs]
    versus = [r["records_per_second"] / r["confluent_kafka_records_per_second"] for r in runs]
    steady = [r["steady_records_per_second"] / r["confluent_kafka_steady_records_per_second"] for r in runs]
    return {
        "records_out": min(r["records_out"] for r in runs),
        "records_per_second": round(median("records_per_second")),
        "records_per_second_min": min(r["records_per_second"] for r in runs),
        "longest_pause_s": max(r["longest_pause_s"] for r in runs),
        "engine_wall_seconds": round(median("engine_wall_seconds"), 1),
        "broker_ceiling_records_per_second": round(median("broker_ceiling_records_per_second")),
        "broker_produce_records_per_second": round(median("broker_produce_records_per_second")),
        "broker_consume_records_per_second": round(median("broker_consume_records_per_second")),
        "confluent_kafka_records_per_second": round(median("confluent_kafka_records_per_second")),
        "fraction_of_ceiling": round(statistics.median(fractions), 3),
        "fraction_of_ceiling_min": round(min(fractions), 3),
        "vs_confluent_kafka": round(statistics.median(versus), 2),
        "vs_confluent_kafka_min": round(min(versus), 2),
        "steady_records_per_second": round(median("steady_records_per_second")),
        "confluent_kafka_steady_records_per_second": round(
            median("confluent_kafka_steady_records_per_second")
        ),
        "steady_vs_confluent_kafka": round(statistics.median(steady), 2),
        "steady_vs_confluent_kafka_min": round(min(steady), 2),
    }


def _broker(args: argparse.Namespace) -> tuple[str, Path | None]:
    """The given broker, the local environment's, or one started for this run (then stopped)."""
    bootstrap = args.bootstrap or default_bootstrap()
    if bootstrap:
        return bootstrap, None
    state = Path(tempfile.mkdtemp(prefix="tidescale-bench-streaming-"))
    return environment.up(["kafka"], state).kafka_bootstrap, state


def fault_names(fault: str, engine: str) -> list[str]:
    """The faults `--fault` names for `engine`: the executor fault is Spark's alone."""
    if engine not in ("flink", "spark"):
        raise PermanentError(
            f"--fault runs flink or spark, not {engine!r}: the python loop has no checkpoint"
        )
    if fault == "all":
        return [*faults.FAULTS, *([faults.EXECUTOR] if engine == "spark" else [])]
    if fault == faults.EXECUTOR and engine != "spark":
        raise PermanentError(f"--fault {faults.EXECUTOR} is Spark's (its executor JVM), not {engine}'s")
    return [fault]


def fault_plan(engine: str, parallelism: int) -> Plan:
    """The example on topics of its own; Flink exactly-once, Spark at-least-once (all its sink keeps),
    checkpoints every 2 s, results over `faults.MAX_RECORD_BYTES` to the dead letters."""
    suffix = f"{engine}-{uuid.uuid4().hex[:6]}"
    pipeline = spec.retarget(
        pipeline_file.load(EXAMPLE),
        source=f"fault-in-{suffix}",
        group=f"fault-{suffix}",
        sink=f"fault-out-{suffix}",
        dead_letter=f"fault-dlq-{suffix}",
        parallelism=parallelism,
    )
    data = pipeline.model_dump(by_alias=True, exclude_none=True)
    data["spec"]["delivery"] = {
        "guarantee": "exactly-once" if engine == "flink" else "at-least-once",
        "checkpointInterval": "2s",
        "maxRecordBytes": faults.MAX_RECORD_BYTES,
    }
    return plan(spec.Pipeline.model_validate(data))


def run_faults(args: argparse.Namespace) -> int:
    """Every fault named on a broker started for the run (the broker fault stops it), one after another."""
    names = fault_names(args.fault, args.engine)
    state = Path(tempfile.mkdtemp(prefix="tidescale-bench-faults-"))
    rows = []
    try:
        bootstrap = environment.up(["kafka"], state).kafka_bootstrap
        for name in names:
            cluster: AbstractContextManager[None] = (
                faults.spark_cluster() if name == faults.EXECUTOR else nullcontext()
            )
            with tempfile.TemporaryDirectory(prefix="tidescale-bench-fault-") as checkpoints, cluster:
                outcome = faults.survive(
                    name,
                    lambda: register_builtins(EngineRegistry()).get(args.engine),
                    fault_plan(args.engine, args.parallelism),
                    bootstrap,
                    Path(checkpoints),
                    broker_state=state,
                    records=args.records or 1200,
                )
            rows.append(outcome.row())
            if not args.json:
                print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    finally:
        environment.down(state)
        shutil.rmtree(state, ignore_errors=True)
    print(json.dumps(rows if args.fault == "all" else rows[0]))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.fault is not None:
        return run_faults(args)
    args.records = args.records or 200_000
    if args.warmup < 0:
        raise PermanentError(f"--warmup is a number of runs, not {args.warmup}")
    engines = register_builtins(EngineRegistry())
    bootstrap, started_state = _broker(args)
    try:
        values = llm_requests(args.records)
        record_size = round(sum(map(len, values)) / len(values))
        source = f"bench-in-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, source)
        produce(bootstrap, source, values)
        base = plan(pipeline_file.load(EXAMPLE))
        with PeakSampler([os.getpid()]) as rss:
            # Unmeasured: the first engine run of a process pays for the JVM's start and its JIT.
            warmup = [
                engine_row(measure(args.engine, base, bootstrap, source, args.parallelism, engines=engines))
                for _ in range(args.warmup)
            ]
            kafka_python = measure(
                "python", base, bootstrap, source, args.parallelism, "kafka-python", engines=engines
            )
            runs = []
            for k in range(args.runs):
                # Alternating order, so that neither side always runs on a warmer (or busier) machine.
                ceiling = perf_ceiling(bootstrap, args.records, record_size)
                order = ("loop", "engine") if k % 2 == 0 else ("engine", "loop")
                measured = {
                    side: measure(
                        "python" if side == "loop" else args.engine,
                        base,
                        bootstrap,
                        source,
                        args.parallelism,
                        "confluent-kafka" if side == "loop" else None,
                        engines=engines,
                    )
                    for side in order
                }
                runs.append(run_row(measured["engine"], measured["loop"], ceiling))
        result = {
            "benchmark": "streaming",
            "pipeline": base.name,
            "engine": args.engine,
            "parallelism": args.parallelism,
            "records": args.records,
            "record_bytes": record_size,
            **summary(runs),
            "kafka_python_records_per_second": round(kafka_python["records_per_second"]),
            "kafka_python_wall_seconds": round(kafka_python["wall_seconds"], 1),
            "runs": runs,
            "warmup": warmup,
            "peak_rss_mib": round(rss.peak_mib, 1),
            "cpus": os.cpu_count(),
        }
    finally:
        if started_state is not None:
            environment.down(started_state)
    if not args.json:
        for key, value in result.items():
            print(f"{key:40} {value}")
    print(json.dumps(result))
    return 0
