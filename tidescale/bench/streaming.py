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
import tempfile
import uuid
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


def output_span(bootstrap: str, topics: list[str]) -> tuple[int, float]:
    """(records in `topics`, seconds between the first and the last record's timestamp)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"span-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    count, first, last = 0, float("inf"), 0.0
    try:
        metadata = consumer.list_topics(timeout=10).topics
        for topic in topics:
            if topic not in metadata:
                continue
            for partition in metadata[topic].partitions:
                tp = TopicPartition(topic, partition)
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                if high <= low:
                    continue
                count += high - low
                for offset, is_first in ((low, True), (high - 1, False)):
                    consumer.assign([TopicPartition(topic, partition, offset)])
                    message = None
                    deadline = SYSTEM_CLOCK.monotonic() + 10
                    while SYSTEM_CLOCK.monotonic() < deadline:
                        message = consumer.poll(0.5)
                        if message is not None and message.error() is None:
                            break
                    if message is None or message.error() is not None:
                        continue
                    stamp = message.timestamp()[1] / 1000
                    first, last = (min(first, stamp), last) if is_first else (first, max(last, stamp))
    finally:
        consumer.close()
    return count, max(last - first, 1e-3)


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
    count, span = output_span(bootstrap, topics)
    return {"records": count, "records_per_second": count / span, "wall_seconds": wall}


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
            ceiling = perf_ceiling(bootstrap, args.records, record_size)
            kafka_python = measure(
                "python", base, bootstrap, source, args.parallelism, "kafka-python", engines=engines
            )
            confluent = measure(
                "python", base, bootstrap, source, args.parallelism, "confluent-kafka", engines=engines
            )
            engine = measure(args.engine, base, bootstrap, source, args.parallelism, engines=engines)
        result = {
            "benchmark": "streaming",
            "pipeline": base.name,
            "engine": args.engine,
            "parallelism": args.parallelism,
            "records": args.records,
            "record_bytes": record_size,
            "records_out": engine["records"],
            "records_per_second": round(engine["records_per_second"]),
            "engine_wall_seconds": round(engine["wall_seconds"], 1),
            "broker_ceiling_records_per_second": round(ceiling["combined"]),
            "broker_produce_records_per_second": round(ceiling["produce"]),
            "broker_consume_records_per_second": round(ceiling["consume"]),
            "kafka_python_records_per_second": round(kafka_python["records_per_second"]),
            "kafka_python_wall_seconds": round(kafka_python["wall_seconds"], 1),
            "confluent_kafka_records_per_second": round(confluent["records_per_second"]),
            "confluent_kafka_wall_seconds": round(confluent["wall_seconds"], 1),
            "fraction_of_ceiling": round(engine["records_per_second"] / ceiling["combined"], 3),
            "vs_confluent_kafka": round(engine["records_per_second"] / confluent["records_per_second"], 2),
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
