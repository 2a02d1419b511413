"""Misconfigurations operators must fix, tracked per policy by their transitions: the one place that says
when a problem starts (a condition set False with its reason, one Warning Event on the ScalingPolicy, one
WARNING log line) and when it clears (the condition True again, one Normal Event, one INFO line), never once
per reconcile.

The problems, by the condition they set False:

- `NodePoolReady`: the policy's `nodePool` names no NodePool the controller knows (NodePoolNotFound), or one
  whose provider this controller does not run (NodePoolProviderNotFound); clears as NodePoolFound;
- `MetricsAvailable`: a metric trigger has no reading (its source is unreachable, its query returns nothing)
  (MetricsUnavailable); clears as MetricsAvailable;
- `PodsScheduled`: replicas of the target have held no node for `ControllerConfig.pending_seconds` while the
  node pool adds none: it is at maxNodes (NodePoolAtMax), does not exist or cannot place them (PodsPending);
  clears as PodsScheduled.

A missing target is the loop's own (`Ready=False` TargetNotFound, told through the act step's failure path)
and clears as TargetFound. The tracker is keyed by the policy's key, not held by its `Entry`, so a spec
change (which makes a new entry) does not forget a problem it is meant to clear.

Pure: no I/O, no clock (times are arguments).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

NODE_POOL, METRICS, PODS = "NodePoolReady", "MetricsAvailable", "PodsScheduled"

# the reason and sentence of each condition once its problem has cleared
CLEARED: Mapping[str, tuple[str, str]] = {
    NODE_POOL: ("NodePoolFound", "the node pool exists and its provider runs"),
    METRICS: ("MetricsAvailable", "every metric trigger gives a reading"),
    PODS: ("PodsScheduled", "every replica holds a node or one is being added"),
}


@dataclass(frozen=True, slots=True)
class Problem:
    condition: str  # the condition it sets False: NodePoolReady, MetricsAvailable, PodsScheduled
    reason: str  # CamelCase: NodePoolNotFound, MetricsUnavailable, NodePoolAtMax, PodsPending …
    message: str  # a sentence with numbers


@dataclass(frozen=True, slots=True)
class Change:
    """A problem that started (`started`), or one that cleared (`cleared`, with its reason and sentence)."""

    condition: str
    started: Problem | None = None
    cleared: Problem | None = None

    @property
    def reason(self) -> str:
        return self.started.reason if self.started is not None else CLEARED[self.condition][0]

    @property
    def message(self) -> str:
        if self.started is not None:
            return self.started.message
        assert self.cleared is not None
        return f"{CLEARED[self.condition][1]} ({self.cleared.reason} cleared)"


class Tracker:
    """The active problems of every policy and since when its replicas wait for nodes. Thread-safe."""

    def __init__(self) -> None:
        self._active: dict[str, dict[str, Problem]] = {}
        self._pending_since: dict[str, float] = {}
        self._lock = threading.Lock()

    def update(self, key: str, found: Mapping[str, Problem | None]) -> list[Change]:
        """Record what the last reconcile of `key` found for each condition it looked at (None: no
        problem); the transitions. A problem whose reason changes is a new start; one whose sentence alone
        changes is not (a sentence may carry a countdown)."""
        out: list[Change] = []
        with self._lock:
            active = self._active.setdefault(key, {})
            for condition, p in found.items():
                was = active.get(condition)
                if p is not None and (was is None or was.reason != p.reason):
                    active[condition] = p
                    out.append(Change(condition, started=p))
                elif p is None and was is not None:
                    del active[condition]
                    out.append(Change(condition, cleared=was))
        return out

    def active(self, key: str) -> dict[str, Problem]:
        with self._lock:
            return dict(self._active.get(key, {}))

    def waiting(self, key: str, pending: bool, t: float) -> float:
        """Seconds the replicas of `key` have been waiting for nodes (0 when none wait)."""
        with self._lock:
            if not pending:
                self._pending_since.pop(key, None)
                return 0.0
            return t - self._pending_since.setdefault(key, t)

    def forget(self, key: str) -> None:
        with self._lock:
            self._active.pop(key, None)
            self._pending_since.pop(key, None)
