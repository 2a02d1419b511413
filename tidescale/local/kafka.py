"""Apache Kafka 4.x, one KRaft node (broker and controller in one JVM), from the Maven Central jars.

Storage is formatted, then the server started; also the broker's own perf tools (kafka-tools) as the
throughput ceiling that streaming benchmarks are quoted against, and what `tidescale local topic|produce|
consume` do to a topic: create it, produce records onto it, and read and commit it as a consumer group does.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from kernel import artefacts
from kernel.clock import Deadline
from kernel.errors import PermanentError
from tidescale.local.process import (
    ComponentError,
    Spawned,
    SpawnHook,
    ensure_port_free,
    free_port,
    port_open,
    spawn,
    wait_until,
)

P = ParamSpec("P")
R = TypeVar("R")

COMPONENT = "kafka"
HEAP = ["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k"]
LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


def _kafka_errors_as_ours(function: Callable[P, R]) -> Callable[P, R]:
    """`function` with the Kafka client's exceptions turned into PermanentError naming the Kafka (its first
    argument, the bootstrap address) and what it did (its name)."""

    @functools.wraps(function)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        from confluent_kafka import KafkaException

        try:
            return function(*args, **kwargs)
        except KafkaException as e:
            error = e.args[0] if e.args else e
            text = error.str() if hasattr(error, "str") else str(error)
            what = function.__name__.replace("_", " ")
            raise PermanentError(f"Kafka at {args[0] if args else '?'}: {what}: {text}") from e

    return wrapped


@dataclass(frozen=True)
class KafkaPorts:
    broker: int
    controller: int


def cluster_id() -> str:
    """A KRaft cluster id as `StorageTool random-uuid` prints it: 22 chars of URL-safe base64."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def server_properties(ports: KafkaPorts, log_dir: Path, partitions: int = 1) -> str:
    return f"""\
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:{ports.broker},CONTROLLER://127.0.0.1:{ports.controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{ports.broker}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:{ports.controller}
inter.broker.listener.name=PLAINTEXT
log.dirs={log_dir}
num.partitions={partitions}
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.segment.bytes=67108864
num.network.threads=2
num.io.threads=2
"""


def java_command(
    main_class: str, *args: str, heap: list[str] | None = None, log4j: Path | None = None
) -> list[str]:
    classpath = os.pathsep.join(str(p) for p in artefacts.jars("kafka"))
    command = [str(artefacts.java_binary()), *(heap or HEAP), "-cp", classpath]
    if log4j is not None:
        command.append(f"-Dlog4j2.configurationFile=file:{log4j}")
    return [*command, main_class, *args]


def start(
    state_dir: Path,
    ports: KafkaPorts | None = None,
    timeout: float = 90,
    on_spawn: SpawnHook | None = None,
) -> tuple[Spawned, str]:
    """Format storage and start the broker; returns the process and `127.0.0.1:<port>` once it serves."""
    home = state_dir / COMPONENT
    home.mkdir(parents=True, exist_ok=True)
    log_file = state_dir / "logs" / "kafka.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        jars_ok = artefacts.jars("kafka")
        artefacts.java_binary()
    except PermanentError as exc:
        raise ComponentError(COMPONENT, str(exc)) from exc
    del jars_ok
    ports = ports or KafkaPorts(free_port(), free_port())
    ensure_port_free(COMPONENT, ports.broker)
    ensure_port_free(COMPONENT, ports.controller)

    config = home / "server.properties"
    config.write_text(server_properties(ports, home / "data"))
    log4j = home / "log4j2.properties"
    log4j.write_text(LOG4J2)

    # 1. Format the storage (once per state directory; a restart keeps its topics).
    if not (home / "data" / "meta.properties").exists():
        fmt = java_command(
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id(),
            "-c",
            str(config),
            heap=["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"],
            log4j=log4j,
        )
        with log_file.open("ab") as log:
            try:
                done = subprocess.run(fmt, stdout=log, stderr=subprocess.STDOUT, timeout=120, check=False)
            except subprocess.TimeoutExpired as exc:
                raise ComponentError(COMPONENT, "formatting storage timed out after 120 s", log_file) from exc
        if done.returncode != 0:
            raise ComponentError(
                COMPONENT, f"formatting storage failed with code {done.returncode}", log_file
            )

    # 2. Start the server and wait until a client gets metadata from it.
    process = spawn(
        COMPONENT, java_command("kafka.Kafka", str(config), log4j=log4j), log_file, on_spawn=on_spawn
    )
    bootstrap = f"127.0.0.1:{ports.broker}"
    wait_until(process, lambda: broker_ready(bootstrap), timeout, f"serving on {bootstrap}")
    return process, bootstrap


def broker_ready(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    if not port_open(int(bootstrap.rsplit(":", 1)[1])):
        return False
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
    metadata = admin.list_topics(timeout=2)
    return len(metadata.brokers) > 0


def create_topic(bootstrap: str, name: str, partitions: int = 1, timeout: float = 30) -> bool:
    """Create topic `name` with `partitions` partitions (replication 1: one broker); False when it already
    exists (its partitions are left as they are). PermanentError naming the topic when Kafka refuses."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    future = admin.create_topics([NewTopic(name, partitions, 1)], request_timeout=timeout)[name]
    try:
        future.result(timeout=timeout)
    except KafkaException as e:
        error = e.args[0]
        if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise PermanentError(f"topic {name}: {error.str()}") from None
    return True


Record = tuple[str, bytes | None, bytes]  # topic, key, value


def read_to_end(bootstrap: str, topics: list[str], timeout: float = 60) -> list[Record]:
    """Every committed record of `topics` as they stand now: each partition read from its start to its end
    (the last stable offset, read_committed), so no time is spent waiting for records that will not come.
    A topic that does not exist holds nothing; TimeoutError naming the partitions not read to the end."""
    return [(str(m.topic()), m.key(), m.value() or b"") for m in messages_to_end(bootstrap, topics, timeout)]


def messages_to_end(bootstrap: str, topics: list[str], timeout: float = 60) -> Iterator[Any]:
    """The confluent-kafka messages `read_to_end` reads (with their timestamps, partitions, offsets)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-to-end-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "log_level": 0,
        }
    )
    try:
        existing = consumer.list_topics(timeout=10).topics
        partitions = [
            TopicPartition(topic, partition, OFFSET_BEGINNING)
            for topic in topics
            if topic in existing and existing[topic].error is None
            for partition in existing[topic].partitions
        ]
        if not partitions:
            return
        consumer.assign(partitions)
        pending = {(p.topic, p.partition) for p in partitions}
        deadline = Deadline(timeout)
        while pending:
            if deadline.expired():
                unread = sorted(pending)
                raise TimeoutError(f"Kafka {bootstrap}: {unread} not read to their end in {timeout:.0f} s")
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                error = message.error()
                if error is None:
                    yield message
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard((str(message.topic()), int(message.partition() or 0)))
    finally:
        consumer.close()


@_kafka_errors_as_ours
def commit_to_end(bootstrap: str, topic: str, group: str) -> int:
    """Commit consumer group `group` at the end of every partition of `topic` (its lag becomes 0), as a
    consumer that has read everything would; returns the records skipped over."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = []
        skipped = 0
        committed = {
            p.partition: p.offset
            for p in consumer.committed([TopicPartition(topic, i) for i in metadata.partitions], timeout=10)
        }
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            ends.append(TopicPartition(topic, partition, high))
            skipped += high - max(low, committed.get(partition, low))
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()
    return skipped


def partition_count(bootstrap: str, topic: str, timeout: float = 10) -> int:
    """The partitions of `topic`; PermanentError naming the topic when it does not exist (asked through the
    admin client, which never creates a topic by asking for it)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    metadata = admin.list_topics(timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise PermanentError(
            f"topic {topic} does not exist on {bootstrap} (create it: tidescale local topic {topic})"
        )
    return len(metadata.partitions)


@dataclass(frozen=True)
class Produced:
    records: int
    partitions: int
    seconds: float


@_kafka_errors_as_ours
def produce(bootstrap: str, topic: str, records: int, size: int = 512, timeout: float = 120) -> Produced:
    """`records` records of `size` bytes onto `topic`, spread evenly over its partitions (record i on
    partition i mod n), in batches; returns once every record is acknowledged. PermanentError when the topic
    does not exist or a record is refused."""
    from confluent_kafka import KafkaError, Producer

    partitions = partition_count(bootstrap, topic)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 200_000,
            "log_level": 0,
        }
    )
    errors: list[KafkaError] = []

    def delivered(error: KafkaError | None, message: Any) -> None:
        if error is not None:
            errors.append(error)

    deadline = Deadline(timeout)
    for i in range(records):
        value = (f"chunk {i} ".encode() + b"x" * size)[:size]
        while True:
            try:
                producer.produce(topic, value, partition=i % partitions, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                if deadline.expired():
                    raise PermanentError(
                        f"topic {topic}: {i} of {records} records sent in {timeout:.0f} s"
                    ) from None
                producer.poll(0.1)
    left = producer.flush(deadline.remaining())
    if errors:
        raise PermanentError(f"topic {topic}: {len(errors)} records refused, first: {errors[0].str()}")
    if left:
        raise PermanentError(f"topic {topic}: {left} records not acknowledged within {timeout:.0f} s")
    return Produced(records, partitions, timeout - deadline.remaining())


@_kafka_errors_as_ours
def register_group(bootstrap: str, topic: str, group: str) -> int:
    """Commit consumer group `group` at the start of every partition of `topic` it has no offset for, as a
    worker that joined before anything was produced and has read nothing (from then on every record produced
    is the group's lag); returns the partitions registered."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        tps = [TopicPartition(topic, i) for i in metadata.partitions]
        starts = []
        for tp in consumer.committed(tps, timeout=10):
            if tp.offset < 0:  # nothing committed
                low, _ = consumer.get_watermark_offsets(tp, timeout=10)
                starts.append(TopicPartition(topic, tp.partition, low))
        if starts:
            consumer.commit(offsets=starts, asynchronous=False)
    finally:
        consumer.close()
    return len(starts)


@_kafka_errors_as_ours
def consume(bootstrap: str, topic: str, group: str, records: int, timeout: float = 60) -> int:
    """Read up to `records` records of `topic` as consumer group `group` from its committed offsets (the
    start of a partition it has none for) and commit what was read, as a worker does; stops early at the
    end of every partition. Returns the records read."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "log_level": 0,
        }
    )
    read = 0
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        committed = consumer.committed([TopicPartition(topic, i) for i in metadata.partitions], timeout=10)
        # assigned, not subscribed: no group rebalance to wait for; the commits are the group's all the same
        consumer.assign(
            [
                TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                for tp in committed
            ]
        )
        pending = {tp.partition for tp in committed}
        positions: dict[int, int] = {}
        deadline = Deadline(timeout)
        while read < records and pending and not deadline.expired():
            for message in consumer.consume(num_messages=min(1000, records - read), timeout=0.5):
                error = message.error()
                partition = int(message.partition() or 0)
                if error is None:
                    positions[partition] = int(message.offset() or 0) + 1
                    read += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(partition)
        if positions:
            consumer.commit(
                offsets=[TopicPartition(topic, p, o) for p, o in sorted(positions.items())],
                asynchronous=False,
            )
    finally:
        consumer.close()
    return read


@_kafka_errors_as_ours
def group_lag(bootstrap: str, topic: str, group: str) -> tuple[int, int]:
    """(records of `topic` the group has not committed past, partitions it has no offset for) — the lag
    the KafkaLag trigger reads, before its count of 1 for each uncommitted partition."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        lag = uncommitted = 0
        for tp in consumer.committed([TopicPartition(topic, i) for i in metadata.partitions], timeout=10):
            if tp.offset < 0:
                uncommitted += 1
                continue
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += max(0, high - tp.offset)
    finally:
        consumer.close()
    return lag, uncommitted


@dataclass(frozen=True)
class PerfResult:
    records: int
    records_per_second: float
    mib_per_second: float


_PRODUCER_LINE = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)")


def producer_perf(
    bootstrap: str, topic: str, records: int, record_size: int = 100, timeout: float = 300
) -> PerfResult:
    """Kafka's own `ProducerPerformance`, unthrottled: the broker's produce ceiling on this machine."""
    command = java_command(
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
    )
    out = _run_tool(command, timeout)
    matches = _PRODUCER_LINE.findall(out)
    if not matches:
        raise ComponentError(COMPONENT, f"ProducerPerformance printed no summary:\n{out[-2000:]}")
    sent, rate, mib = matches[-1]
    return PerfResult(int(sent), float(rate), float(mib))


def consumer_perf(bootstrap: str, topic: str, records: int, timeout: float = 300) -> PerfResult:
    """Kafka's own `ConsumerPerformance`: the broker's consume ceiling on this machine."""
    command = java_command(
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
    )
    out = _run_tool(command, timeout)
    # CSV: start, end, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, ...
    for line in reversed(out.strip().splitlines()):
        cells = [c.strip() for c in line.split(",")]
        if len(cells) >= 6:
            try:
                return PerfResult(int(cells[4]), float(cells[5]), float(cells[3]))
            except ValueError:
                continue
    raise ComponentError(COMPONENT, f"ConsumerPerformance printed no summary:\n{out[-2000:]}")


def _run_tool(command: list[str], timeout: float) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ComponentError(COMPONENT, f"{command[-1]} timed out after {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise ComponentError(COMPONENT, f"perf tool failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout
