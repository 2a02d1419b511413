"""Cluster Autoscaler with its defaults (../shared/reference/autoscaling.md §4.1), the node autoscaler under
the HPA, KEDA and KPA baselines.

Every 10 s: unschedulable pods are simulated against the existing and upcoming nodes and then a template
node of the pool (the same fit simulation as tidescale's plan, `autoscaler.core.nodepool.plan_node_pools`);
nodes whose GPU requests are under 50 % of their GPUs are unneeded, and after 10 min unneeded — and not within
10 min of a scale-up (`--scale-down-delay-after-add`) — empty ones are removed in bulk (up to 10) and at most
one non-empty one is drained when its pods fit on the other ready nodes (they restart there).

Pure: no I/O, no clock (`now` is an argument).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autoscaler.api.policy import NodePool
from autoscaler.core.nodepool import plan_node_pools, replica_pods
from jobs.snapshot import ClusterState

SCAN_INTERVAL_S = 10.0
UNNEEDED_S = 600.0
DELAY_AFTER_ADD_S = 600.0
GPU_THRESHOLD = 0.5
MAX_EMPTY_BULK = 10


@dataclass(frozen=True, slots=True)
class NodeUse:
    name: str
    gpus: int
    requested: int
    ready: bool


@dataclass(frozen=True, slots=True)
class NodeActions:
    add: int = 0
    remove: tuple[str, ...] = ()
    drain: tuple[str, ...] = ()
    reason: str = ""


class ClusterAutoscaler:
    def __init__(self, pool: NodePool, pod_requests: dict[str, str | int | float]) -> None:
        self.pool = pool
        self.pod_requests = pod_requests
        self.next_scan = 0.0
        self.unneeded_since: dict[str, float] = {}
        self.last_scale_up = -1e18
        self.description = (
            f"Cluster Autoscaler: scan {SCAN_INTERVAL_S:g}s, scale-down unneeded {UNNEEDED_S:g}s under "
            f"{GPU_THRESHOLD:.0%} GPU requests, delay after add {DELAY_AFTER_ADD_S:g}s"
        )

    def step(
        self, now: float, nodes: Sequence[NodeUse], pending: int, snapshot: ClusterState, gpus_per_pod: int
    ) -> NodeActions | None:
        if now + 1e-9 < self.next_scan:
            return None
        while self.next_scan <= now + 1e-9:
            self.next_scan += SCAN_INTERVAL_S
        # 1. scale-up for unschedulable pods
        if pending > 0:
            group = replica_pods("pending", self.pod_requests, pending)
            plan = plan_node_pools([group], [self.pool], snapshot, {self.pool.metadata.name: len(nodes)})
            add = sum(c.add for c in plan.changes)
            if add:
                self.last_scale_up = now
                return NodeActions(add=add, reason=f"{pending} unschedulable pods: +{add} nodes")
        # 2. scale-down of unneeded nodes
        for n in nodes:
            if n.ready and n.requested < GPU_THRESHOLD * n.gpus:
                self.unneeded_since.setdefault(n.name, now)
            else:
                self.unneeded_since.pop(n.name, None)
        names = {n.name for n in nodes}
        for gone in set(self.unneeded_since) - names:
            del self.unneeded_since[gone]
        if now - self.last_scale_up < DELAY_AFTER_ADD_S:
            return None
        ripe = [
            n
            for n in nodes
            if n.name in self.unneeded_since and now - self.unneeded_since[n.name] >= UNNEEDED_S
        ]
        keep = max(0, len(nodes) - self.pool.spec.min_nodes)
        empty = tuple(n.name for n in ripe if n.requested == 0)[: min(MAX_EMPTY_BULK, keep)]
        if empty:
            return NodeActions(remove=empty, reason=f"{len(empty)} empty nodes unneeded for {UNNEEDED_S:g}s")
        if keep <= 0:
            return None
        for n in sorted(ripe, key=lambda n: n.requested):
            free_elsewhere = sum(m.gpus - m.requested for m in nodes if m.ready and m.name != n.name)
            if n.requested <= free_elsewhere:
                return NodeActions(drain=(n.name,), reason=f"node {n.name} unneeded: pods fit elsewhere")
        return None
