"""Scaling events as JSON records on a Kafka topic, and the reader that tails them (`tidescale events watch`).

`KafkaEventSink` produces one record per event: the decision's record (`core.events.record`, plus what
the shell added) with `"acted"`, keyed by the policy "namespace/name" so one policy's events stay in order on
one partition. The topic is created when missing (`ensure_topic`). Production is asynchronous
(confluent-kafka's producer, a few milliseconds of linger); delivery reports are served on every `emit` and by
`flush`, failures are counted in `failed` and logged, never raised. `close()` flushes and stops.

`tail` reads the topic from its current end (or its beginning) without a consumer group: it assigns every
partition at the offsets it looked up itself, so no record written after it said "ready" is missed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from autoscaler.controller.ports import ScalingEvent
from kernel.clock import SYSTEM_CLOCK, Clock, Deadline
from kernel.errors import TemporaryError

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "tidescale.scaling-events"
PARTITIONS = 3


def ensure_topic(bootstrap: str, topic: str, timeout: float = 10.0, partitions: int = PARTITIONS) -> None:
    """Create `topic` unless it exists; raises `TemporaryError` when the broker does not answer."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        if topic in admin.list_topics(timeout=timeout).topics:
            return
        futures = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=timeout)
        futures[topic].result(timeout)
    except KafkaException as e:
        err = e.args[0] if e.args else None
        if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise TemporaryError(f"Kafka at {bootstrap}: cannot create topic {topic}: {e}") from e
    _wait_for_leaders(admin, topic, timeout)


def _wait_for_leaders(admin: AdminClient, topic: str, timeout: float) -> None:
    deadline = Deadline(timeout)
    while not deadline.expired():
        meta = admin.list_topics(topic, timeout=max(deadline.remaining(), 0.5)).topics.get(topic)
        parts = meta.partitions if meta is not None and meta.error is None else {}
        if parts and all(p.leader >= 0 for p in parts.values()):
            return
        SYSTEM_CLOCK.sleep(0.1)


class KafkaEventSink:
    """An `EventSink` producing one JSON record per event to `topic`."""

    def __init__(
        self,
        bootstrap: str,
        topic: str = DEFAULT_TOPIC,
        *,
        linger_ms: int = 5,
        clock: Clock = SYSTEM_CLOCK,
        topic_retry_seconds: float = 30.0,
    ) -> None:
        self.bootstrap = bootstrap
        self._clock = clock
        self._topic_retry = topic_retry_seconds
        self._topic_tried: float | None = None
        self.topic = topic
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": linger_ms,
                "message.timeout.ms": 30000,
                "client.id": "tidescale-controller",
                "logger": log,  # librdkafka's connection errors go to logging, not straight to stderr
            }
        )
        self._lock = threading.Lock()
        self._topic_ready = False
        self.sent = 0
        self.delivered = 0
        self.failed = 0

    def emit(self, event: ScalingEvent) -> None:
        try:
            self._ensure_topic()
            record = {**event.record, "acted": event.acted}
            value = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
            self._producer.produce(
                self.topic, value, key=event.decision.policy.encode(), on_delivery=self._delivered
            )
            self.sent += 1
            self._producer.poll(0)  # serve delivery reports of earlier records
        except (BufferError, KafkaException) as e:
            with self._lock:
                self.failed += 1
            log.warning("kafka event for %s not sent to %s: %s", event.decision.policy, self.topic, e)
        except Exception:
            with self._lock:
                self.failed += 1
            log.warning("kafka event for %s not sent", event.decision.policy, exc_info=True)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to `timeout` s for outstanding records; returns how many are still undelivered."""
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 10.0) -> None:
        left = self.flush(timeout)
        if left:
            with self._lock:
                self.failed += left
            log.warning("kafka event sink closed with %d records undelivered to %s", left, self.topic)

    def _ensure_topic(self) -> None:
        """Create the topic on first use; while the broker is away, try again at most every
        `topic_retry_seconds` with a short timeout, so a reconcile loop is never held up for long. The record
        is produced either way: the producer keeps it until the broker answers or `message.timeout.ms`."""
        if self._topic_ready:
            return
        now = self._clock.monotonic()
        if self._topic_tried is not None and now - self._topic_tried < self._topic_retry:
            return
        self._topic_tried = now
        try:
            ensure_topic(self.bootstrap, self.topic, timeout=2.0)
            self._topic_ready = True
        except TemporaryError as e:
            log.warning("kafka event sink: %s (retrying in %.0f s)", e, self._topic_retry)

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        with self._lock:
            if err is None:
                self.delivered += 1
                return
            self.failed += 1
        log.warning("kafka event not delivered to %s: %s", self.topic, err)


def _watermarks(consumer: Consumer, partition: TopicPartition, timeout: float) -> tuple[int, int]:
    """The partition's (low, high) offsets; a topic created a moment ago answers "not leader" for a while."""
    deadline = Deadline(timeout)
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=max(deadline.remaining(), 1.0))
            return int(low), int(high)
        except KafkaException as e:
            err = e.args[0] if e.args else None
            retriable = isinstance(err, KafkaError) and err.code() in _NOT_YET
            if not retriable or deadline.expired():
                raise
        SYSTEM_CLOCK.sleep(0.2)


_NOT_YET = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
    }
)


def tail(
    bootstrap: str,
    topic: str = DEFAULT_TOPIC,
    *,
    from_beginning: bool = False,
    on_ready: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[dict[str, Any]]:
    """The topic's records as dicts, live, until `should_stop()`; a record that is not JSON is skipped."""
    ensure_topic(bootstrap, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tidescale-events-watch",  # required by the client; no offsets are committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        assignment = []
        for p in sorted(meta.partitions):
            low, high = _watermarks(consumer, TopicPartition(topic, p), 15.0)
            assignment.append(TopicPartition(topic, p, low if from_beginning else high))
        consumer.assign(assignment)
        if on_ready is not None:
            on_ready()
        while not should_stop():
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka %s: %s", topic, error)
                continue
            try:
                value = json.loads(message.value() or b"")
            except ValueError:
                log.warning("kafka %s: skipping a record that is not JSON", topic)
                continue
            if isinstance(value, dict):
                yield value
    except KafkaException as e:
        raise TemporaryError(f"Kafka at {bootstrap}: cannot read {topic}: {e}") from e
    finally:
        consumer.close()
