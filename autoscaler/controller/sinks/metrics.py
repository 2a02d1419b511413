"""The controller's Prometheus metrics, in a registry of their own, and the event sink that feeds them.

`ControllerMetrics` owns a `CollectorRegistry` (never the process-global one, so two controllers in one test
process do not collide) with the series operators alert on: decisions and scale events per policy, metric
errors per source, failed act steps by kind, desired/current replicas, readiness and fallback per policy,
the misconfigurations that hold a condition of a policy False (metrics unavailable, node pool at max, …),
leadership, and the reconcile and reaction (signal → /scale patch) latencies. `render()` is the text
exposition the controller's HTTP server returns on /metrics; serving it is not this module's job.
`MetricsEventSink` is an `EventSink` that turns each `ScalingEvent` into metric updates.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from autoscaler.controller.ports import ScalingEvent
from autoscaler.core.decide import Decision

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# reconcile of one cycle: milliseconds for a few policies, seconds for a thousand
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60)
# signal → patch: the goal is p50 ≤ 1 s, p99 ≤ 3 s
REACTION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60)
# the kinds of a failed act step (`CycleReport.failures`), exported at 0 from the start so that a rate over
# them is 0, not "no data", until the first failure
FAILURE_KINDS = ("NotFound", "Conflict", "Temporary", "Permanent", "Unexpected", "DeletionCost")


def direction(decision: Decision) -> str:
    """ "up", "down" or "none" (replicas unchanged; node-pool changes alone are not a scale event)."""
    if decision.desired > decision.current:
        return "up"
    if decision.desired < decision.current:
        return "down"
    return "none"


class ControllerMetrics:
    """The controller's metrics; every method is safe to call from any thread."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            "tidescale_decisions",
            "Decisions recorded, by policy and the rule that limited them.",
            ["policy", "rule"],
            registry=r,
        )
        self.scale_events = Counter(
            "tidescale_scale_events",
            "Replica changes made through /scale, by policy and direction (up, down).",
            ["policy", "direction"],
            registry=r,
        )
        self.metric_errors = Counter(
            "tidescale_metric_errors",
            "Failed metric reads, by source (prometheus, kafka, pods, …).",
            ["source"],
            registry=r,
        )
        self.scale_failures = Counter(
            "tidescale_scale_failures",
            "Failed act steps, by kind: NotFound (target gone), Conflict, Temporary (server error, no "
            "answer), Permanent (refused: forbidden, invalid), Unexpected (an exception the loop did not "
            "expect), DeletionCost (a pod-deletion-cost annotation not set before a scale-down, which went "
            "ahead).",
            ["reason"],
            registry=r,
        )
        for kind in FAILURE_KINDS:
            self.scale_failures.labels(kind)
        self.desired = Gauge(
            "tidescale_desired_replicas", "Replicas the last decision asked for.", ["policy"], registry=r
        )
        self.current = Gauge(
            "tidescale_current_replicas",
            "Replicas the target had at the last decision.",
            ["policy"],
            registry=r,
        )
        self.ready = Gauge(
            "tidescale_policy_ready",
            "1 when the policy is valid and reconciled (Ready=True).",
            ["policy"],
            registry=r,
        )
        self.fallback = Gauge(
            "tidescale_fallback_active",
            "1 while the policy's replicas come from its fallback (metrics failing).",
            ["policy"],
            registry=r,
        )
        self.problem = Gauge(
            "tidescale_policy_problem",
            "1 while a misconfiguration holds a condition of the policy False, by the condition and its "
            "reason (MetricsAvailable: MetricsUnavailable; PodsScheduled: NodePoolAtMax, PodsPending; "
            "NodePoolReady: NodePoolNotFound, NodePoolProviderNotFound); gone once the problem clears.",
            ["policy", "condition", "reason"],
            registry=r,
        )
        self.leader = Gauge("tidescale_is_leader", "1 while this replica holds the leader lease.", registry=r)
        self.reconcile = Histogram(
            "tidescale_reconcile_seconds",
            "Seconds one reconcile cycle took (observe, decide, act, record).",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.sweep = Histogram(
            "tidescale_sweep_seconds",
            "Seconds one sweep over every policy took (the safety-net period's full reconcile).",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.reaction = Histogram(
            "tidescale_reaction_seconds",
            "Seconds from a signal change (or its arrival) to the /scale patch.",
            buckets=REACTION_BUCKETS,
            registry=r,
        )
        self._lock = threading.Lock()
        self._policies: set[str] = set()
        self._rules: dict[str, set[str]] = {}
        self._problems: dict[str, dict[str, str]] = {}  # policy → condition → the reason exported

    def observe_decision(self, decision: Decision, acted: bool) -> None:
        """One decision: its rule counted, the replica gauges and the fallback flag set, and a scale event
        counted when the replicas were changed."""
        policy = decision.policy
        with self._lock:
            self._policies.add(policy)
            self._rules.setdefault(policy, set()).add(decision.rule)
        self.decisions.labels(policy, decision.rule).inc()
        self.desired.labels(policy).set(decision.desired)
        self.current.labels(policy).set(decision.desired if acted else decision.current)
        self.fallback.labels(policy).set(1 if decision.fallback else 0)
        way = direction(decision)
        if acted and way != "none":
            self.scale_events.labels(policy, way).inc()

    def set_ready(self, policy: str, ready: bool) -> None:
        with self._lock:
            self._policies.add(policy)
        self.ready.labels(policy).set(1 if ready else 0)

    def set_problem(self, policy: str, condition: str, reason: str | None) -> None:
        """The problem holding `condition` False for `policy` (None: it cleared). One series per policy and
        condition: a new reason for the same condition replaces the old one."""
        with self._lock:
            problems = self._problems.setdefault(policy, {})
            previous = problems.pop(condition, None)
            if reason is not None:
                problems[condition] = reason
        if previous is not None and previous != reason:
            with contextlib.suppress(KeyError):
                self.problem.remove(policy, condition, previous)
        if reason is not None:
            self.problem.labels(policy, condition, reason).set(1)

    def metric_error(self, source: str, count: int = 1) -> None:
        self.metric_errors.labels(source).inc(count)

    def scale_failure(self, reason: str, count: int = 1) -> None:
        self.scale_failures.labels(reason).inc(count)

    def set_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    def observe_reconcile(self, seconds: float) -> None:
        self.reconcile.observe(seconds)

    def observe_sweep(self, seconds: float) -> None:
        self.sweep.observe(seconds)

    def observe_reaction(self, seconds: float) -> None:
        self.reaction.observe(seconds)

    def forget(self, policy: str) -> None:
        """Drop a deleted policy's series, so /metrics does not keep reporting it."""
        with self._lock:
            self._policies.discard(policy)
            rules = self._rules.pop(policy, set())
            problems = self._problems.pop(policy, {})
        for gauge in (self.desired, self.current, self.ready, self.fallback):
            with contextlib.suppress(KeyError):
                gauge.remove(policy)
        for rule in rules:
            with contextlib.suppress(KeyError):
                self.decisions.remove(policy, rule)
        for way in ("up", "down"):
            with contextlib.suppress(KeyError):
                self.scale_events.remove(policy, way)
        for condition, reason in problems.items():
            with contextlib.suppress(KeyError):
                self.problem.remove(policy, condition, reason)

    def render(self) -> bytes:
        """The Prometheus text exposition of every series (content type `CONTENT_TYPE`)."""
        return bytes(generate_latest(self.registry))


class MetricsEventSink:
    """An `EventSink` that updates `ControllerMetrics` from each event; a reaction time travels in
    `event.extra["reactionSeconds"]` when the shell measured one. A misconfiguration that starts or clears
    (a `ScalingProblem` record naming its `condition`) sets or removes the policy's problem series."""

    def __init__(self, metrics: ControllerMetrics) -> None:
        self.metrics = metrics
        self.errors = 0

    def emit(self, event: ScalingEvent) -> None:
        if event.failure is not None or event.recovery is not None:
            # not a decision applied: failed act steps are counted per cycle (`scale_failure`)
            self._problem(event)
            return
        try:
            self.metrics.observe_decision(event.decision, event.acted)
            reaction = event.extra.get("reactionSeconds")
            if reaction is not None and event.acted:
                self.metrics.observe_reaction(float(reaction))
        except Exception:
            self.errors += 1
            log.warning("metrics: cannot record the event of %s", event.decision.policy, exc_info=True)

    def _problem(self, event: ScalingEvent) -> None:
        condition = event.record.get("condition")
        if not isinstance(condition, str):
            return  # an act step's failure or recovery, not a misconfiguration of the policy
        reason = event.failure.reason if event.failure is not None else None
        try:
            self.metrics.set_problem(event.decision.policy, condition, reason)
        except Exception:
            self.errors += 1
            log.warning("metrics: cannot record the problem of %s", event.decision.policy, exc_info=True)
