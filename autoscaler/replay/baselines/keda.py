"""KEDA v2.20 ScaledObjects (../shared/reference/autoscaling.md §2): the operator's activation 0↔1 and the HPA
it creates for 1↔N.

The operator polls every `pollingInterval` (30 s; `RequestScale` in kedacore/keda
`pkg/scaling/executor/scale_scaledobjects.go`): a trigger is active when its value is strictly above its
`activationThreshold`; active at 0 replicas → scale to `max(minReplicaCount, 1)` and stamp `lastActiveTime`;
active otherwise → stamp `lastActiveTime`; inactive with replicas > 0 and `minReplicaCount` 0 → scale to 0
once `lastActiveTime + cooldownPeriod` (300 s) has passed or, never active yet, once `creationTimestamp +
initialCooldownPeriod` (0 s) has — an idle start goes to 0 on the first poll; inactive below
`minReplicaCount` → set `minReplicaCount`. The HPA (minReplicas `max(min, 1)`, no `behavior`: the legacy
path) reads KEDA's external metrics every 15 s — `AverageValue` by default. The Prometheus scaler reads an
empty result as 0 (`ignoreNullValues` true); the Kafka scaler caps replicas at the partition count.

Pure: no I/O, no clock; time comes from the view.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.api.policy import (
    UTILIZATION_FIELDS,
    GPUUtilizationTrigger,
    PrometheusTrigger,
    QueueDepthTrigger,
    ScalingPolicy,
)
from autoscaler.replay.baselines.hpa import ExternalMetric, Hpa, HpaSpec
from autoscaler.replay.environment import PROMETHEUS, ClusterView, Sample
from autoscaler.replay.service_model import ServiceModel

POLLING_INTERVAL_S = 30.0
COOLDOWN_S = 300.0
INITIAL_COOLDOWN_S = 0.0


@dataclass(frozen=True, slots=True)
class Scaler:
    """One trigger as KEDA's Prometheus scaler: query, HPA target and activation threshold."""

    name: str
    query: str
    threshold: float
    activation_threshold: float = 0.0
    metric_type: str = "AverageValue"


class _NullAsZero:
    """The view KEDA's metrics server gives the HPA: empty results read as 0 (`ignoreNullValues: true`)."""

    def __init__(self, view: ClusterView) -> None:
        self._view = view

    def __getattr__(self, name: str) -> object:
        return getattr(self._view, name)

    @property
    def now(self) -> float:
        return self._view.now

    def query(self, promql: str, pipeline: object) -> Sample:
        s = self._view.query(promql, PROMETHEUS)
        return s if s is not None else Sample(0.0, self._view.now)


class ScaledObject:
    name = "keda"

    def __init__(
        self,
        scalers: tuple[Scaler, ...],
        min_replicas: int,
        max_replicas: int,
        polling_s: float = POLLING_INTERVAL_S,
        cooldown_s: float = COOLDOWN_S,
        poll_offset_s: float = 0.0,
        initial_cooldown_s: float = INITIAL_COOLDOWN_S,
    ) -> None:
        self.scalers = scalers
        self.min = min_replicas
        self.max = max_replicas
        self.polling_s = polling_s
        self.cooldown_s = cooldown_s
        self.initial_cooldown_s = initial_cooldown_s
        self.next_poll = poll_offset_s
        self.created: float | None = None  # creationTimestamp: the first poll follows creation at once
        self.last_active: float | None = None  # status.lastActiveTime: none until a trigger is active
        metrics = tuple(ExternalMetric(s.name, s.query, s.threshold, s.metric_type) for s in scalers)
        self.hpa = Hpa(HpaSpec(max(1, min_replicas), max_replicas, metrics, None), "keda-hpa")
        self.description = (
            f"min {min_replicas} max {max_replicas}; "
            + ", ".join(
                f"{s.name} {s.metric_type} {s.threshold:g} (activation > {s.activation_threshold:g})"
                for s in scalers
            )
            + f"; polling {polling_s:g}s, cooldown {cooldown_s:g}s, initial cooldown {initial_cooldown_s:g}s"
            + "; HPA without behavior"
        )

    def active(self, view: ClusterView) -> bool:
        for s in self.scalers:
            got = view.query(s.query, PROMETHEUS)
            value = got.value if got is not None else 0.0  # ignoreNullValues
            if value > s.activation_threshold:
                return True
        return False

    def operator(self, view: ClusterView) -> int | None:
        """One poll of the ScaledObject reconciler (`RequestScale`, `scaleToZeroOrIdle`)."""
        now = view.now
        current = view.spec_replicas()
        if self.created is None:
            self.created = now
        if self.active(view):
            self.last_active = now
            if current == 0:
                return max(self.min, 1)  # scaleFromZeroOrIdle
            return None
        if current > 0 and self.min == 0:
            if self.last_active is None:
                # never active: the cooldown counts from creation, initialCooldownPeriod (default 0) long
                cooled = now - self.created >= self.initial_cooldown_s
            else:
                cooled = now - self.last_active >= self.cooldown_s
            return 0 if cooled else None
        if current < self.min:
            return self.min  # inactive below minReplicaCount: set it
        return None

    def step(self, view: ClusterView) -> int | None:
        now = view.now
        out: int | None = None
        if now + 1e-9 >= self.next_poll:
            while self.next_poll <= now + 1e-9:
                self.next_poll += self.polling_s
            out = self.operator(view)
            if out is not None:
                return out
        if view.spec_replicas() == 0:
            return None  # the HPA does nothing at 0 (ScalingDisabled)
        return self.hpa.step(_NullAsZero(view))  # type: ignore[arg-type]


def scalers_of(policy: ScalingPolicy) -> tuple[Scaler, ...]:
    """The policy's signals as KEDA Prometheus scalers: queue depth and Prometheus triggers as they are, GPU
    utilisation as `avg(<field>)` with `metricType: Value` (the pitfall of §1.9 avoided)."""
    out: list[Scaler] = []
    for i, t in enumerate(policy.spec.triggers):
        name = t.name or f"{t.type.lower()}-{i}"
        if isinstance(t, QueueDepthTrigger):
            out.append(Scaler(name, t.query, float(t.target_per_replica), float(t.activation_threshold)))
        elif isinstance(t, PrometheusTrigger):
            out.append(Scaler(name, t.query, t.target, t.activation_threshold, t.target_type))
        elif isinstance(t, GPUUtilizationTrigger):
            target = t.target / UTILIZATION_FIELDS[t.metric]
            out.append(Scaler(name, f"avg({t.metric})", target, 0.0, "Value"))
    return tuple(out)


def from_policy(policy: ScalingPolicy, model: ServiceModel | None = None) -> ScaledObject:
    """A ScaledObject with KEDA's defaults and the policy's bounds (minReplicaCount 0 with scale to zero); the
    service model does not change it."""
    return ScaledObject(scalers_of(policy), policy.spec.min_replicas, policy.spec.max_replicas)
