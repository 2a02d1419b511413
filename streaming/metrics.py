"""Prometheus metrics of a running pipeline, the same for every engine: records in and out, dead letters,
throughput and consumer lag, read from the broker's offsets (what the autoscaler's KafkaLag and
Prometheus triggers scale on).

Shell: a prometheus_client HTTP server bound to 127.0.0.1 and a thread that polls Kafka offsets with
confluent-kafka every `interval_s`. The engines need no hook: a JVM engine's Python workers are other
processes, so counting at the broker is the one view all engines share.
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from kernel.clock import SYSTEM_CLOCK, Clock
from streaming.plan import Plan

PREFIX = "tidescale_pipeline"


class PipelineMetrics:
    """The pipeline's gauges and counters in their own registry (one per run)."""

    def __init__(self, plan: Plan, engine: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["pipeline", "engine"]
        self.values = (plan.name, engine)
        self.records_out = Counter(
            f"{PREFIX}_records_out", "Records written to the sink topics", labels, registry=self.registry
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters",
            "Records written to the dead-letter topic",
            labels,
            registry=self.registry,
        )
        self.throughput = Gauge(
            f"{PREFIX}_records_per_second",
            "Sink records per second over the last poll",
            labels,
            registry=self.registry,
        )
        self.lag = Gauge(
            f"{PREFIX}_consumer_lag",
            "Source records not yet committed by the pipeline's group",
            labels,
            registry=self.registry,
        )
        self.source_end = Gauge(
            f"{PREFIX}_source_end_offset",
            "Sum of the source partitions' end offsets",
            labels,
            registry=self.registry,
        )

    def serve(self, port: int) -> Any:
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return server


class OffsetMonitor:
    """Polls the broker: sink and dead-letter end offsets (growth since start) and the group's lag."""

    def __init__(
        self,
        plan: Plan,
        bootstrap: str,
        metrics: PipelineMetrics,
        interval_s: float = 2.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        from confluent_kafka import Consumer

        self.plan = plan
        self.metrics = metrics
        self.interval_s = interval_s
        self.clock = clock
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"tidescale-monitor-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )
        self._group = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": plan.source.group, "enable.auto.commit": False}
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"metrics-{plan.name}", daemon=True)
        self._baseline: dict[str, int] = {}
        self._last: tuple[float, int] | None = None
        self.counted_out = 0
        self.counted_dead = 0
        self._sink = re.compile(rf"^{re.escape(plan.sink.topic)}(\..+)?$")

    def _ends(self, topic: str) -> tuple[int, list[Any]]:
        from confluent_kafka import TopicPartition

        metadata = self._consumer.list_topics(topic, timeout=5).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0, []
        partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        total = sum(self._consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in partitions)
        return total, partitions

    def poll_once(self) -> None:
        topics = self._consumer.list_topics(timeout=5).topics
        sink_total = 0
        for name in topics:
            if self._sink.match(name):
                end = self._ends(name)[0]
                sink_total += end - self._baseline.setdefault(name, end)
        dead_end = self._ends(self.plan.dead_letter.topic)[0]
        dead = dead_end - self._baseline.setdefault(self.plan.dead_letter.topic, dead_end)
        source_end, partitions = self._ends(self.plan.source.topic)
        labels = self.metrics.values
        if sink_total > self.counted_out:
            self.metrics.records_out.labels(*labels).inc(sink_total - self.counted_out)
            self.counted_out = sink_total
        if dead > self.counted_dead:
            self.metrics.dead_letters.labels(*labels).inc(dead - self.counted_dead)
            self.counted_dead = dead
        now = self.clock.monotonic()
        if self._last is not None and now > self._last[0]:
            self.metrics.throughput.labels(*labels).set((sink_total - self._last[1]) / (now - self._last[0]))
        self._last = (now, sink_total)
        self.metrics.source_end.labels(*labels).set(source_end)
        if partitions:
            committed = self._group.committed(partitions, timeout=5)
            lag = sum(
                max(0, self._consumer.get_watermark_offsets(tp, timeout=5)[1] - max(0, c.offset))
                for tp, c in zip(partitions, committed, strict=True)
            )
            self.metrics.lag.labels(*labels).set(lag)

    def _run(self) -> None:
        while not self._stop.is_set():
            # A broker hiccup must not kill the pipeline; the next poll retries.
            with contextlib.suppress(Exception):
                self.poll_once()
            self._stop.wait(self.interval_s)

    def start(self) -> OffsetMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self.poll_once()
        finally:
            self._consumer.close()
            self._group.close()
