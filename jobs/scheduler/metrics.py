"""The scheduler's Prometheus metrics (served by the kernel's `HttpEndpoint`: `/metrics`, `/healthz`,
`/readyz` while this replica leads)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# why a bind fails (the loop's `_failed` and `Gone`), exported at 0 from the start so that a rate over them
# is 0, not "no data", until the first failure
BIND_ERROR_REASONS = ("Gone", "NodeGone", "Conflict", "TemporaryError", "PermanentError", "Unexpected")


class SchedulerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.cycles = Counter("tidescale_scheduler_cycles", "Scheduling cycles run", registry=r)
        self.bound = Counter("tidescale_scheduler_pods_bound", "Pods bound", registry=r)
        self.bind_errors = Counter(
            "tidescale_scheduler_bind_errors", "Bindings that failed (pod requeued)", ["reason"], registry=r
        )
        for reason in BIND_ERROR_REASONS:
            self.bind_errors.labels(reason)
        self.unschedulable = Counter(
            "tidescale_scheduler_unschedulable", "Pods found unschedulable by a cycle", registry=r
        )
        self.reclaims = Counter(
            "tidescale_scheduler_reclaim_evictions", "Pods evicted to reclaim", registry=r
        )
        self.cycle_seconds = Histogram(
            "tidescale_scheduler_cycle_seconds", "Duration of one cycle", buckets=_LATENCY, registry=r
        )
        self.bind_seconds = Histogram(
            "tidescale_scheduler_bind_seconds",
            "From a cycle's decision to the bind's return",
            buckets=_LATENCY,
            registry=r,
        )
        self.pending = Gauge(
            "tidescale_scheduler_pending_pods",
            "Pods waiting, per queue (also those backing off or parked until capacity frees)",
            ["queue"],
            registry=r,
        )
        self.pending_gang_since = Gauge(
            "tidescale_scheduler_pending_gang_since_seconds",
            "When each gang still waiting (podgroup: namespace/name) began to wait: the creation of its "
            "oldest waiting pod (Unix s); time() minus it is the gang's wait. Gone once it runs or goes",
            ["podgroup", "queue"],
            registry=r,
        )
        self._queues: set[str] = set()
        self._gangs: set[tuple[str, str]] = set()
        self.leader = Gauge("tidescale_scheduler_leader", "1 while this replica binds", registry=r)
        self.double_booked = Gauge(
            "tidescale_scheduler_double_booked_annotations",
            "Pods whose device annotations would book a device twice (refused)",
            registry=r,
        )

    def set_pending(self, per_queue: Mapping[str, int]) -> None:
        """Pods waiting per queue after a cycle; a queue that had some and has none now reads 0."""
        for queue in self._queues - per_queue.keys():
            self.pending.labels(queue).set(0)
        for queue, count in per_queue.items():
            self.pending.labels(queue).set(count)
        self._queues |= per_queue.keys()

    def set_pending_gangs(self, since: Mapping[tuple[str, str], float]) -> None:
        """(PodGroup as namespace/name, queue) → when it began to wait, for every gang waiting after a cycle;
        the series of a gang no longer waiting is removed."""
        for gang in self._gangs - since.keys():
            with contextlib.suppress(KeyError):
                self.pending_gang_since.remove(*gang)
        for gang, at in since.items():
            self.pending_gang_since.labels(*gang).set(at)
        self._gangs = set(since)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
