"""The in-process reference engine: one consume → `stateless.Processor` → produce loop in this Python
process, with confluent-kafka (librdkafka) or kafka-python. The benchmark's two baselines, and the
simplest way to run a stateless pipeline.

Shell: Kafka clients, the clock. At-least-once: the producer is flushed before offsets are committed.
Stateful steps (Dedupe, Window) are for the JVM engines; this engine refuses them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kernel.clock import SYSTEM_CLOCK, Clock, Deadline
from kernel.errors import PermanentError
from streaming.engine import PRODUCER_BATCH_BYTES, PRODUCER_LINGER_MS, Rendered, RunOptions, RunReport
from streaming.plan import Plan
from streaming.stateless import Processor

BATCH = 2000
SESSION_TIMEOUT_MS = 6000  # group join takes about half of it (reference §5.1)


@dataclass
class Progress:
    """Counts a loop keeps; `on_batch` (if set) sees them after every batch (the metrics exporter)."""

    records_in: int = 0
    records_out: int = 0
    dead_letters: int = 0
    on_batch: Callable[[Progress], None] | None = field(default=None, repr=False)


def _done(positions: dict[int, int], ends: dict[int, int]) -> bool:
    return all(positions.get(p, 0) >= end for p, end in ends.items())


def run_confluent(plan: Plan, options: RunOptions, progress: Progress, clock: Clock = SYSTEM_CLOCK) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    processor = Processor(plan)
    consumer = Consumer(
        {
            "bootstrap.servers": options.bootstrap,
            "group.id": plan.source.group,
            "auto.offset.reset": plan.source.start_from,
            "enable.auto.commit": False,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "isolation.level": "read_committed",
            "fetch.min.bytes": 65536,
            "fetch.wait.max.ms": 50,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": options.bootstrap,
            "linger.ms": PRODUCER_LINGER_MS,
            "batch.size": PRODUCER_BATCH_BYTES,
            "acks": 1,
        }
    )
    bounded = options.bounded or options.max_records is not None
    ends: dict[int, int] = {}
    if bounded:
        metadata = consumer.list_topics(plan.source.topic, timeout=10).topics[plan.source.topic]
        for partition in metadata.partitions:
            ends[partition] = consumer.get_watermark_offsets(
                TopicPartition(plan.source.topic, partition), timeout=10
            )[1]
    positions: dict[int, int] = {}
    consumer.subscribe([plan.source.topic])
    deadline = Deadline(options.timeout_s or float("inf"), clock)
    last_commit = clock.monotonic()
    try:
        while not deadline.expired():
            if bounded and _done(positions, ends):
                break
            if options.max_records is not None and progress.records_in >= options.max_records:
                break
            messages = consumer.consume(num_messages=BATCH, timeout=0.2)
            for message in messages:
                if message.error() is not None:
                    continue
                positions[int(message.partition() or 0)] = int(message.offset() or 0) + 1
                result = processor.process(message.value())
                progress.records_in += 1
                if result.kind is None:
                    continue
                producer.produce(str(result.topic), result.value, result.key)
                if result.kind == "out":
                    progress.records_out += 1
                else:
                    progress.dead_letters += 1
            producer.poll(0)
            if clock.monotonic() - last_commit >= plan.delivery.checkpoint_interval / 1000:
                producer.flush()
                _commit(consumer, plan.source.topic, positions)
                last_commit = clock.monotonic()
            if progress.on_batch is not None:
                progress.on_batch(progress)
        remaining = producer.flush(30)
        if remaining:
            raise PermanentError(f"{remaining} records not delivered by {plan.name}")
        _commit(consumer, plan.source.topic, positions)
    finally:
        consumer.close()


def _commit(consumer: Any, topic: str, positions: dict[int, int]) -> None:
    """Commit the positions explicitly: a bare `commit()` raises `_NO_OFFSET` when nothing was
    consumed since the last one (the final commit right after a periodic one)."""
    from confluent_kafka import TopicPartition

    if positions:
        offsets = [TopicPartition(topic, partition, offset) for partition, offset in positions.items()]
        consumer.commit(offsets=offsets, asynchronous=False)


def run_kafka_python(
    plan: Plan, options: RunOptions, progress: Progress, clock: Clock = SYSTEM_CLOCK
) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    processor = Processor(plan)
    consumer = KafkaConsumer(
        bootstrap_servers=options.bootstrap,
        group_id=plan.source.group,
        auto_offset_reset=plan.source.start_from,
        enable_auto_commit=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=2000,
        isolation_level="read_committed",
        max_poll_records=BATCH,
    )
    producer = KafkaProducer(
        bootstrap_servers=options.bootstrap,
        linger_ms=PRODUCER_LINGER_MS,
        batch_size=PRODUCER_BATCH_BYTES,
        acks=1,
    )
    bounded = options.bounded or options.max_records is not None
    ends: dict[int, int] = {}
    if bounded:
        partitions = consumer.partitions_for_topic(plan.source.topic) or set()
        offsets = consumer.end_offsets([TopicPartition(plan.source.topic, p) for p in partitions])
        ends = {tp.partition: end for tp, end in offsets.items()}
    positions: dict[int, int] = {}
    consumer.subscribe([plan.source.topic])
    deadline = Deadline(options.timeout_s or float("inf"), clock)
    try:
        while not deadline.expired():
            if bounded and _done(positions, ends):
                break
            if options.max_records is not None and progress.records_in >= options.max_records:
                break
            batches = consumer.poll(timeout_ms=200)
            for tp, records in batches.items():
                for message in records:
                    positions[tp.partition] = message.offset + 1
                    result = processor.process(message.value)
                    progress.records_in += 1
                    if result.kind is None:
                        continue
                    producer.send(
                        result.topic,
                        value=result.value.encode() if result.value is not None else None,
                        key=result.key.encode() if result.key is not None else None,
                    )
                    if result.kind == "out":
                        progress.records_out += 1
                    else:
                        progress.dead_letters += 1
            if progress.on_batch is not None:
                progress.on_batch(progress)
        producer.flush(30)
        if positions:
            consumer.commit()
    finally:
        producer.close()
        consumer.close()


LOOPS = {"confluent-kafka": run_confluent, "kafka-python": run_kafka_python}


class PythonEngine:
    """One Python process, no JVM: the reference executor and the benchmark's baselines."""

    name: str = "python"
    delivery: tuple[str, ...] = ("at-least-once",)

    def __init__(self, client: str = "confluent-kafka") -> None:
        self.loop = LOOPS[client]
        self.progress = Progress()

    def run(self, plan: Plan, options: RunOptions) -> RunReport:
        if plan.stateful:
            raise PermanentError(
                f"the python engine runs stateless pipelines only; {plan.name} has a "
                f"{'Window' if plan.window else 'Dedupe'} (use --engine flink or spark)"
            )
        started = SYSTEM_CLOCK.monotonic()
        self.loop(plan, options, self.progress)
        return RunReport(
            self.name,
            SYSTEM_CLOCK.monotonic() - started,
            self.progress.records_in,
            self.progress.records_out,
            self.progress.dead_letters,
        )

    def render(self, plan: Plan, target: str = "kubernetes", *, spark_submit: bool = False) -> Rendered:
        raise PermanentError("the python engine runs locally only; render with --engine flink or spark")
