"""The scheduler's Prometheus metrics (served by the kernel's `HttpEndpoint`: `/metrics`, `/healthz`,
`/readyz` while this replica leads)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class SchedulerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.cycles = Counter("tidescale_scheduler_cycles", "Scheduling cycles run", registry=r)
        self.bound = Counter("tidescale_scheduler_pods_bound", "Pods bound", registry=r)
        self.bind_errors = Counter(
            "tidescale_scheduler_bind_errors", "Bindings that failed (pod requeued)", ["reason"], registry=r
        )
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
            "tidescale_scheduler_pending_pods", "Pods waiting, per queue", ["queue"], registry=r
        )
        self.leader = Gauge("tidescale_scheduler_leader", "1 while this replica binds", registry=r)
        self.double_booked = Gauge(
            "tidescale_scheduler_double_booked_annotations",
            "Pods whose device annotations would book a device twice (refused)",
            registry=r,
        )

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
