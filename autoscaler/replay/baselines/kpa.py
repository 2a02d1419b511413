"""Knative Pod Autoscaler (../shared/reference/autoscaling.md §3), concurrency mode with the defaults of
`config-autoscaler`.

Every 2 s: `ready = max(1, readyPods)`; stable and panic concurrency are the revision-wide means of the 1 s
buckets over 60 s and 6 s; `dspc = ceil(stable / target)`, `dppc = ceil(panic / target)`, each clamped into
`[floor(ready / 2), ceil(1000 × ready)]`; panic starts (or is extended) when `dppc / ready ≥ 2` and ends when
not over the threshold and the last over-threshold tick is more than a stable window ago; in panic the
desired count is the max of both and of every desire seen during the panic (no scale-down). Scale to zero
once the desire has been 0 for the 30 s grace period; from zero the activator holds requests and the next
tick scales to what the panic window asks. Per-pod target = containerConcurrency × 70 %, with
containerConcurrency the replica's batch size (the replay counts a busy replica as a full batch in flight).

Pure: no I/O, no clock; time comes from the view.
"""

from __future__ import annotations

import math

from autoscaler.api.policy import ScalingPolicy
from autoscaler.replay.environment import ClusterView
from autoscaler.replay.service_model import ServiceModel

TICK_S = 2.0
STABLE_WINDOW_S = 60.0
PANIC_WINDOW_PERCENT = 10.0
PANIC_THRESHOLD = 2.0
MAX_SCALE_UP_RATE = 1000.0
MAX_SCALE_DOWN_RATE = 2.0
TARGET_UTILIZATION = 0.7
SCALE_TO_ZERO_GRACE_S = 30.0


class Kpa:
    name = "kpa"

    def __init__(
        self,
        min_scale: int,
        max_scale: int,
        container_concurrency: float = 1.0,
        target_utilization: float = TARGET_UTILIZATION,
        stable_window_s: float = STABLE_WINDOW_S,
        tick_s: float = TICK_S,
    ) -> None:
        self.min = min_scale
        self.max = max_scale
        self.target = max(0.01, container_concurrency * target_utilization)
        self.stable_window_s = stable_window_s
        self.panic_window_s = max(1.0, stable_window_s * PANIC_WINDOW_PERCENT / 100.0)
        self.tick_s = tick_s
        self.next_tick = 0.0
        self.panic_time: float | None = None
        self.max_panic_pods = 0
        self.zero_since: float | None = None
        self.description = (
            f"min-scale {min_scale} max-scale {max_scale}; target {self.target:g} concurrent/pod "
            f"(containerConcurrency {container_concurrency:g} × {target_utilization:.0%}); "
            f"stable {stable_window_s:g}s, "
            f"panic {self.panic_window_s:g}s at {PANIC_THRESHOLD:.0%}; tick {tick_s:g}s; scale-to-zero grace "
            f"{SCALE_TO_ZERO_GRACE_S:g}s"
        )

    def scale(self, now: float, ready_pods: int, stable: float, panic: float) -> int:
        """`autoscaler.Scale`: the desired pod count for the observed stable and panic concurrency."""
        ready = max(1, ready_pods)
        max_up = math.ceil(MAX_SCALE_UP_RATE * ready)
        max_down = math.floor(ready / MAX_SCALE_DOWN_RATE)
        dspc = math.ceil(stable / self.target - 1e-9)
        dppc = math.ceil(panic / self.target - 1e-9)
        stable_pods = min(max(dspc, max_down), max_up)
        panic_pods = min(max(dppc, max_down), max_up)
        over = dppc / ready >= PANIC_THRESHOLD
        if over:
            self.panic_time = now
        elif self.panic_time is not None and self.panic_time + self.stable_window_s < now:
            self.panic_time = None
            self.max_panic_pods = 0
        desired = stable_pods
        if self.panic_time is not None:
            desired = max(desired, panic_pods)
            if desired > self.max_panic_pods:
                self.max_panic_pods = desired
            elif desired < self.max_panic_pods:
                desired = self.max_panic_pods
        return desired

    def step(self, view: ClusterView) -> int | None:
        now = view.now
        if now + 1e-9 < self.next_tick:
            return None
        while self.next_tick <= now + 1e-9:
            self.next_tick += self.tick_s
        stable = view.concurrency(self.stable_window_s)
        panic = view.concurrency(self.panic_window_s)
        desired = self.scale(now, view.ready_replicas(), stable, panic)
        desired = min(self.max, max(self.min, desired)) if self.max > 0 else max(self.min, desired)
        current = view.spec_replicas()
        if desired == 0:
            if current == 0:
                return None
            # scale-to-zero only after the grace period of wanting zero
            if self.zero_since is None:
                self.zero_since = now
            if now - self.zero_since < SCALE_TO_ZERO_GRACE_S:
                return None if current <= 1 else 1
            return 0
        self.zero_since = None
        return desired


def from_policy(policy: ScalingPolicy, model: ServiceModel | None = None) -> Kpa:
    """A Knative revision with the policy's bounds (min-scale 0 when it scales to zero), containerConcurrency
    the replica's batch size (`ServiceModel.batch_size`: 16 for the LLM model, 1 for a trace with measured
    service times) and the defaults."""
    batch = (model or ServiceModel()).batch_size
    return Kpa(policy.spec.min_replicas, policy.spec.max_replicas, container_concurrency=float(batch))
