"""Kubernetes HPA v2, as the controller computes it (../shared/reference/autoscaling.md §1).

One sync every 15 s: per-metric proposals (`Pods` metrics with pod grouping and the missing/unready fill-in
of `replica_calculator.go`, `External` metrics with `Value` or `AverageValue` targets), the max over
metrics, no scale-down on partial data, then normalization — the behavior path (`autoscaler.core.behavior`,
API defaults: scale-up max(+4 pods, +100 %) per 15 s, scale-down 300 s window, −100 % per 15 s) or the
legacy path without `behavior` (5-min max, `max(2 × current, 4)` per sync); the first sync records the current
count as a recommendation (`recordInitialRecommendation` in `horizontal.go`). Values are milli-units with
integer truncation, as the controller does; tolerance 10 %.

Pure: no I/O, no clock; time comes from the view.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autoscaler.api.policy import (
    UTILIZATION_FIELDS,
    GPUUtilizationTrigger,
    PrometheusTrigger,
    QueueDepthTrigger,
    ScalingPolicy,
)
from autoscaler.core.behavior import History, ResolvedBehavior, normalize, normalize_legacy, resolve
from autoscaler.replay.environment import PROMETHEUS, ClusterView, PodInfo
from autoscaler.replay.service_model import ServiceModel

SYNC_PERIOD_S = 15.0
TOLERANCE = 0.1


class MetricError(Exception):
    """A metric gave no usable proposal this sync."""


@dataclass(frozen=True, slots=True)
class PodsMetric:
    """A `Pods` metric with an `AverageValue` target (per-pod values, e.g. DCGM via prometheus-adapter)."""

    name: str
    metric: str
    target: float  # in the metric's own unit


@dataclass(frozen=True, slots=True)
class ExternalMetric:
    """An `External` metric: every returned series summed, `Value` or `AverageValue` target."""

    name: str
    query: str
    target: float
    target_type: str = "AverageValue"


Metric = PodsMetric | ExternalMetric


@dataclass(frozen=True)
class HpaSpec:
    min_replicas: int
    max_replicas: int
    metrics: tuple[Metric, ...]
    behavior: ResolvedBehavior | None  # None: the legacy path (no `spec.behavior`)
    tolerance: float = TOLERANCE
    sync_period_s: float = SYNC_PERIOD_S
    sync_offset_s: float = 0.0


def _milli(x: float) -> int:
    return math.floor(x * 1000 + 1e-6)


def within(ratio: float, tol: float) -> bool:
    return abs(1.0 - ratio) <= tol


def pods_metric_replicas(
    current: int, pods: Sequence[PodInfo], values: Mapping[str, float], target: float, tol: float
) -> int:
    """`GetMetricReplicas` for a per-pod metric with an AverageValue target (§1.5): group the pods, drop the
    unready ones' metrics, fill in missing and unready pods when the direction needs it."""
    target_m = _milli(target)
    metrics: dict[str, int] = {}
    ready = 0
    unready: list[str] = []
    missing: list[str] = []
    for p in pods:
        if p.phase == "Pending":
            unready.append(p.name)
            continue
        if p.name not in values:
            missing.append(p.name)
            continue
        metrics[p.name] = _milli(values[p.name])
        ready += 1
    if not metrics:
        raise MetricError("no metrics returned for any ready pod")
    ratio = (sum(metrics.values()) // len(metrics)) / target_m
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if within(ratio, tol):
            return current
        return math.ceil(ratio * ready - 1e-12)
    # missing pods count as at target on a scale-down and as 0 on a scale-up; at exactly 1.0 neither, so
    # the ratio stays 1.0 and the count holds (`else if usageRatio > 1.0` upstream)
    if missing and ratio != 1.0:
        fill = target_m if ratio < 1.0 else 0
        for name in missing:
            metrics[name] = fill
    if scale_up_with_unready:
        for name in unready:
            metrics[name] = 0
    new_ratio = (sum(metrics.values()) // len(metrics)) / target_m
    if within(new_ratio, tol) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current
    n = math.ceil(new_ratio * len(metrics) - 1e-12)
    if (new_ratio < 1.0 and n > current) or (new_ratio > 1.0 and n < current):
        return current
    return n


def external_replicas(
    value: float, target: float, target_type: str, current: int, status: int, ready: int, tol: float
) -> int:
    """External metrics (§1.4/§1.9): AverageValue → `ceil(total / target)` against status replicas; Value →
    `ceil(ratio × ready)` (from zero: `ceil(ratio)`)."""
    v = _milli(value)
    t = _milli(target)
    if target_type == "AverageValue":
        if status > 0:
            ratio = v / (t * status)
            if within(ratio, tol):
                return status
        return min(2**31 - 1, math.ceil(v / t - 1e-12))
    ratio = v / t
    if current == 0:
        return math.ceil(ratio - 1e-12)
    if within(ratio, tol):
        return current
    return math.ceil(ratio * ready - 1e-12)


@dataclass(frozen=True, slots=True)
class SyncResult:
    desired: int
    rule: str
    reason: str


class Hpa:
    """One HorizontalPodAutoscaler and the controller memory behind it."""

    name = "hpa"
    description = "Kubernetes HPA v2"

    def __init__(self, spec: HpaSpec, name: str = "hpa", description: str = "") -> None:
        self.spec = spec
        self.name = name
        self.description = description or describe(spec)
        self.history: History | None = None  # none until the first sync records one
        self.next_sync: float | None = None
        self.last: SyncResult | None = None

    def proposals(self, view: ClusterView) -> list[int | MetricError]:
        out: list[int | MetricError] = []
        current = view.spec_replicas()
        for m in self.spec.metrics:
            try:
                if isinstance(m, PodsMetric):
                    got = view.pod_gpu_metric(m.metric, PROMETHEUS)
                    if got is None:
                        raise MetricError(f"{m.name}: no samples")
                    out.append(
                        pods_metric_replicas(current, view.pods(), got[0], m.target, self.spec.tolerance)
                    )
                else:
                    s = view.query(m.query, PROMETHEUS)
                    if s is None:
                        raise MetricError(f"{m.name}: empty result")
                    out.append(
                        external_replicas(
                            s.value,
                            m.target,
                            m.target_type,
                            current,
                            view.status_replicas(),
                            view.ready_replicas(),
                            self.spec.tolerance,
                        )
                    )
            except MetricError as e:
                out.append(e)
        return out

    def sync(self, view: ClusterView) -> SyncResult:
        """One reconcile (§1.3)."""
        spec = self.spec
        now = view.now
        current = view.spec_replicas()
        if self.history is None:
            # `recordInitialRecommendation`: the first sync records the current count as a recommendation, so
            # no scale-down for one stabilization window after the HPA starts
            self.history = History(((now, current),), ((now, current),))
        if current == 0 and spec.min_replicas != 0:
            return SyncResult(0, "ScalingDisabled", "scaling is disabled since the replica count is 0")
        if current > spec.max_replicas:
            return SyncResult(spec.max_replicas, "TooManyReplicas", "current is above maxReplicas")
        if current < spec.min_replicas:
            return SyncResult(spec.min_replicas, "TooFewReplicas", "current is below minReplicas")
        proposals = self.proposals(view)
        valid = [p for p in proposals if isinstance(p, int)]
        errors = [p for p in proposals if isinstance(p, MetricError)]
        if not valid:
            return SyncResult(current, "FailedGetMetrics", "; ".join(str(e) for e in errors))
        raw = max(valid)
        if errors and raw < current:
            return SyncResult(current, "FailedGetMetrics", "partial metrics: no scale-down")
        if spec.behavior is not None:
            n = normalize(
                spec.behavior, self.history, raw, current, spec.min_replicas, spec.max_replicas, now
            )
        else:
            n = normalize_legacy(self.history, raw, current, spec.min_replicas, spec.max_replicas, now)
        self.history = n.history
        return SyncResult(n.desired, n.rule, f"recommended {raw}, stabilized {n.stabilized}")

    def step(self, view: ClusterView) -> int | None:
        now = view.now
        if self.next_sync is None:
            self.next_sync = self.spec.sync_offset_s
        if now + 1e-9 < self.next_sync:
            return None
        while self.next_sync <= now + 1e-9:
            self.next_sync += self.spec.sync_period_s
        self.last = self.sync(view)
        return self.last.desired


def describe(spec: HpaSpec) -> str:
    parts = []
    for m in spec.metrics:
        if isinstance(m, PodsMetric):
            parts.append(f"Pods {m.metric} avg {m.target:g}")
        else:
            parts.append(f"External {m.name} {m.target_type} {m.target:g}")
    path = "behavior defaults" if spec.behavior is not None else "no behavior (legacy)"
    bounds = f"min {spec.min_replicas} max {spec.max_replicas}"
    return f"{bounds}; {', '.join(parts)}; {path}; sync {spec.sync_period_s:g}s"


def metrics_of(policy: ScalingPolicy) -> tuple[Metric, ...]:
    """The policy's signals as HPA metrics: GPU utilisation as a Pods metric (prometheus-adapter), queue depth
    and Prometheus triggers as External metrics. SLO, Schedule and Kafka triggers have no HPA equivalent."""
    out: list[Metric] = []
    for i, t in enumerate(policy.spec.triggers):
        name = t.name or f"{t.type.lower()}-{i}"
        if isinstance(t, GPUUtilizationTrigger):
            # the field's own unit: PROF fields are ratios, so 70 % is 0.7
            out.append(PodsMetric(name, t.metric, t.target / UTILIZATION_FIELDS[t.metric]))
        elif isinstance(t, QueueDepthTrigger):
            out.append(ExternalMetric(name, t.query, float(t.target_per_replica), "AverageValue"))
        elif isinstance(t, PrometheusTrigger):
            out.append(ExternalMetric(name, t.query, t.target, t.target_type))
    return tuple(out)


def from_policy(policy: ScalingPolicy, model: ServiceModel | None = None) -> Hpa:
    """An HPA for the policy's target: minReplicas ≥ 1 (no HPAScaleToZero gate), `behavior` set with the API
    defaults (the policy's own behavior is tidescale's, not given to the baseline). The service model does not
    change an HPA."""
    spec = HpaSpec(
        max(1, policy.spec.min_replicas),
        policy.spec.max_replicas,
        metrics_of(policy),
        resolve(None),
    )
    return Hpa(spec)
