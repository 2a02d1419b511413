"""`tidescale bench streaming`: Kafka → the LLM preprocessor → Kafka, records per second, measured in
one run beside the broker's own produce and consume ceiling (Kafka's perf tools) and two plain
consume-transform-produce loops in this Python process (kafka-python and confluent-kafka).

Each pipeline run reads the same N input records (2 partitions) into its own output topics. Its rate is
N over the span between the first and the last record it wrote (Kafka CreateTime), so engine start-up
(a JVM, a mini-cluster, a group join) is reported apart as `*_wall_seconds`, not mixed in.

Lives in the composition root because it orchestrates the local environment (a broker when none is
given), Kafka's perf tools from the harness and the RSS sampler, around the streaming engines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import uuid
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from kernel.clock import SYSTEM_CLOCK
from streaming import pipeline_file, spec
from streaming.cli import default_bootstrap
from streaming.engine import EngineRegistry, RunOptions
from streaming.engines import register_builtins
from streaming.plan import Plan, plan
from tidescale.local import environment, kafka
from tidescale.memory import PeakSampler
from tidescale.traffic import MODELS, llm_requests

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipelines" / "llm-preprocessor.yaml"
PARTITIONS = 2


def add_benchmarks(bench_sub: Any) -> None:
    bench = bench_sub.add_parser(
        "streaming", help="pipeline records/s vs the broker ceiling and two Python loops"
    )
    bench.add_argument("--engine", choices=("flink", "spark", "python"), default="flink")
    bench.add_argument("--records", type=int, default=200_000)
    bench.add_argument(
        "--bootstrap", default=None, help="default: the local environment, else one started for the run"
    )
    bench.add_argument("--parallelism", type=int, default=2)
    bench.add_argument(
        "--runs", type=int, default=1, help="engine and confluent-kafka loop runs, alternating (default 1)"
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

    @classmethod
    def of(cls, stamps_ms: list[int]) -> OutputTiming:
        ordered = sorted(stamps_ms)
        if not ordered:
            return cls(0, 1e-3, 0.0)
        gaps = (b - a for a, b in pairwise(ordered))
        return cls(len(ordered), max((ordered[-1] - ordered[0]) / 1000, 1e-3), max(gaps, default=0) / 1000)


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
        "longest_pause_s": timing.longest_pause_s,
        "wall_seconds": wall,
    }


def run_row(engine: dict[str, float], loop: dict[str, float], ceiling: dict[str, float]) -> dict[str, float]:
    """One run: the engine, the confluent-kafka loop and the broker ceiling, measured one after another."""
    return {
        "records_out": engine["records"],
        "records_per_second": round(engine["records_per_second"]),
        "longest_pause_s": round(engine["longest_pause_s"], 3),
        "engine_wall_seconds": round(engine["wall_seconds"], 1),
        "confluent_kafka_records_per_second": round(loop["records_per_second"]),
        "confluent_kafka_longest_pause_s": round(loop["longest_pause_s"], 3),
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
    }


def _broker(args: argparse.Namespace) -> tuple[str, Path | None]:
    """The given broker, the local environment's, or one started for this run (then stopped)."""
    bootstrap = args.bootstrap or default_bootstrap()
    if bootstrap:
        return bootstrap, None
    state = Path(tempfile.mkdtemp(prefix="tidescale-bench-streaming-"))
    return environment.up(["kafka"], state).kafka_bootstrap, state


def run(args: argparse.Namespace) -> int:
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
