"""`tidescale bench streaming`: Kafka → the LLM preprocessor → Kafka, records per second, measured in
one run beside the broker's own produce and consume ceiling (Kafka's perf tools) and two plain
consume-transform-produce loops in this Python process (kafka-python and confluent-kafka).

Each pipeline run reads the same N input records (2 partitions) into its own output topics. Its rate is
N over the span between the first and the last record it wrote (Kafka CreateTime), so engine start-up
(a JVM, a mini-cluster, a group join) is reported apart as `*_wall_seconds`, not mixed in.

Shell: Kafka clients, subprocesses (the perf tools; `tidescale local up` when no broker is given), the
clock and /proc for the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from kernel import artefacts
from kernel.clock import SYSTEM_CLOCK
from streaming import spec
from streaming.engine import ENGINES, RunOptions, register_builtins
from streaming.plan import Plan, plan

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pipelines" / "llm-preprocessor.yaml"
PARTITIONS = 2
MODELS = ("llama-3-8b", "llama-3-70b", "mistral-7b", "mixtral-8x22b")
PROMPTS = (
    "  What is the   capital of France? Answer in one word.  ",
    "Wie spät ist es und wo ist der Bahnhof?",
    "Quelle est la meilleure façon de faire du pain ?",
    "東京で一番おいしいラーメンはどこですか",
    "Summarise\tthis\n\ndocument, please: the quarterly results were strong.",
)


def add_benchmark(bench_sub: Any) -> None:
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


class PeakRss:
    """Sums the RSS of this process and its descendants every half second; `peak_mib` is the max."""

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current_mib() -> float:
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        tree, grew = {os.getpid()}, True
        while grew:
            added = {p for p, parent in parents.items() if parent in tree and p not in tree}
            tree |= added
            grew = bool(added)
        pages = 0
        for pid in tree:
            try:
                pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, self.current_mib())
            self._stop.wait(0.5)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def requests(n: int, seed: int = 3) -> list[bytes]:
    rng = random.Random(seed)
    return [
        json.dumps(
            {
                "id": f"r{i}",
                "user": f"u{i % 1000}",
                "model": MODELS[i % 4],
                "prompt": f"{PROMPTS[rng.randrange(len(PROMPTS))]} #{i}",
                "ts": 1_700_000_000_000 + i,
            },
            ensure_ascii=False,
        ).encode()
        for i in range(n)
    ]


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
    java = [
        str(artefacts.java_binary()),
        "-Xmx512m",
        "-XX:+UseSerialGC",
        "-cp",
        os.pathsep.join(str(p) for p in artefacts.jars("kafka")),
    ]
    produced = subprocess.run(
        [
            *java,
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            str(records),
            "--record-size",
            str(record_size),
            "--throughput",
            "-1",
            "--producer-props",
            f"bootstrap.servers={bootstrap}",
            "acks=1",
            "linger.ms=5",
            "batch.size=262144",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    summary = [line for line in produced.splitlines() if "records sent" in line][-1]
    produce_rate = float(summary.split("records sent,")[1].split("records/sec")[0])
    consumed = subprocess.run(
        [
            *java,
            "org.apache.kafka.tools.ConsumerPerformance",
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--messages",
            str(records),
            "--group",
            f"perf-{uuid.uuid4().hex[:8]}",
            "--hide-header",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    cells = [c.strip() for c in consumed.strip().splitlines()[-1].split(",")]
    consume_rate = float(cells[5])
    # A pipeline consumes and produces every record on the same broker: the two costs add up.
    combined = 1 / (1 / produce_rate + 1 / consume_rate)
    return {"produce": produce_rate, "consume": consume_rate, "combined": combined}


def bench_plan(base: Plan, suffix: str, source: str, parallelism: int) -> Plan:
    pipeline = spec.load(EXAMPLE)
    data = pipeline.model_dump(by_alias=True, exclude_none=True)
    body = data["spec"]
    body["source"]["topic"] = source
    body["source"]["group"] = f"bench-{suffix}"
    body["sink"]["topic"] = f"bench-out-{suffix}"
    body["deadLetter"]["topic"] = f"bench-dlq-{suffix}"
    body["parallelism"] = parallelism
    return plan(spec.Pipeline.model_validate(data))


def measure(
    engine: str, base: Plan, bootstrap: str, source: str, parallelism: int, client: str | None = None
) -> dict[str, float]:
    suffix = f"{engine if client is None else client}-{uuid.uuid4().hex[:6]}"
    pipeline = bench_plan(base, suffix, source, parallelism)
    started = SYSTEM_CLOCK.monotonic()
    with tempfile.TemporaryDirectory(prefix="tidescale-bench-") as checkpoints:
        options = RunOptions(bootstrap, bounded=True, checkpoint_dir=Path(checkpoints), timeout_s=1800)
        if client is not None:
            from streaming.engines.python import PythonEngine

            PythonEngine(client).run(pipeline, options)
        else:
            ENGINES.get(engine).run(pipeline, options)
    wall = SYSTEM_CLOCK.monotonic() - started
    topics = [f"{pipeline.sink.topic}.{m}" for m in MODELS] + [pipeline.dead_letter.topic]
    count, span = output_span(bootstrap, topics)
    return {"records": count, "records_per_second": count / span, "wall_seconds": wall}


def _broker(args: argparse.Namespace) -> tuple[str, Path | None]:
    from streaming.cli import default_bootstrap

    bootstrap = args.bootstrap or default_bootstrap()
    if bootstrap:
        return bootstrap, None
    state = Path(tempfile.mkdtemp(prefix="tidescale-bench-streaming-"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tidescale",
            "local",
            "up",
            "--components",
            "kafka",
            "--state-dir",
            str(state),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["kafka_bootstrap"], state


def run(args: argparse.Namespace) -> int:
    register_builtins()
    bootstrap, started_state = _broker(args)
    try:
        values = requests(args.records)
        record_size = round(sum(map(len, values)) / len(values))
        source = f"bench-in-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, source)
        produce(bootstrap, source, values)
        base = plan(spec.load(EXAMPLE))
        with PeakRss() as rss:
            ceiling = perf_ceiling(bootstrap, args.records, record_size)
            kafka_python = measure("python", base, bootstrap, source, args.parallelism, "kafka-python")
            confluent = measure("python", base, bootstrap, source, args.parallelism, "confluent-kafka")
            engine = measure(args.engine, base, bootstrap, source, args.parallelism)
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
            subprocess.run(
                [sys.executable, "-m", "tidescale", "local", "down", "--state-dir", str(started_state)],
                capture_output=True,
                timeout=120,
                check=False,
            )
    if not args.json:
        for key, value in result.items():
            print(f"{key:40} {value}")
    print(json.dumps(result))
    return 0
