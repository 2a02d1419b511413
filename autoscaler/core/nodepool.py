"""Node-pool plans: which pending replicas fit which GPU pool, how many nodes to add, which idle nodes to
remove.

Scale-up reuses the scheduler core's fit simulation (`jobs.placement.Binpack` on a
`jobs.snapshot.ClusterState`, which checks selectors, taints, scalar resources and GPU devices through
`jobs.placement.check`): pending pods are first placed on the existing and still-provisioning nodes of the
snapshot; what is left is packed onto template nodes of each pool (its GPU model, count and memory, CPU and
memory), and the pool that places the most pods at the lowest hourly price wins (Cluster Autoscaler's
least-waste, priced). Every added node comes with its lead time: provisioning plus the model start of the
replicas it will carry.

Scale-down removes a pool's nodes that have been under the pool's GPU-request utilisation threshold for its
idle period and hold no replicas — model servers are not evicted to consolidate, since moving one is a cold
start (../shared/reference/autoscaling.md §6, #12) — never going below `minNodes`.

Pure: no I/O, no clock (`now` is an argument).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from autoscaler.api.policy import NodePool
from jobs.placement import Binpack, Placement
from jobs.resources import Resources
from jobs.snapshot import ClusterState, Node
from jobs.vocabulary import GFD_MEMORY, GFD_PRODUCT, NVIDIA_GPU, node_capacity, pod_request
from jobs.workload import Pod, PodGroup

POOL_LABEL = "tidescale.io/node-pool"
DEFAULT_MAX_PODS = 110


@dataclass(frozen=True, slots=True)
class NodePoolChange:
    pool: str
    add: int = 0
    remove: tuple[str, ...] = ()
    reason: str = ""
    ready_in_s: float = 0.0  # for added nodes: provisioning + model start
    cordon: tuple[str, ...] = ()  # take no new replicas: they empty as replicas go, then they are removed
    uncordon: tuple[str, ...] = ()

    def render(self) -> dict[str, object]:
        out: dict[str, object] = {"pool": self.pool, "reason": self.reason}
        if self.add:
            out["add"] = self.add
            out["readyInSeconds"] = round(self.ready_in_s, 1)
        for key, names in (("remove", self.remove), ("cordon", self.cordon), ("uncordon", self.uncordon)):
            if names:
                out[key] = list(names)
        return out


@dataclass(frozen=True, slots=True)
class NodePoolPlan:
    changes: tuple[NodePoolChange, ...] = ()
    placed_on_existing: int = 0
    unplaceable: Mapping[str, str] = field(default_factory=dict)  # pod -> why no pool takes it


@dataclass(frozen=True, slots=True)
class PoolNode:
    """One node of a pool as the controller sees it."""

    name: str
    pool: str
    gpus: int
    gpus_requested: int
    below_since: float | None = None  # since when its GPU requests have been under the pool's threshold
    cordoned: bool = False
    ready: bool = True  # False while it is still being provisioned (no Ready condition yet)


def template_node(pool: NodePool, name: str) -> Node:
    """A node of `pool` as the scheduler core models it (allocatable from the pool shape, GFD labels)."""
    shape = pool.spec.node
    capacity, devices = node_capacity(
        {"cpu": shape.cpu, "memory": shape.memory, NVIDIA_GPU: shape.gpus},
        {GFD_PRODUCT: shape.gpu_model, GFD_MEMORY: str(shape.gpu_memory_mib)},
    )
    labels = {**pool.spec.labels, POOL_LABEL: pool.metadata.name, GFD_PRODUCT: shape.gpu_model}
    return Node(name, capacity + Resources.of(pods=DEFAULT_MAX_PODS), devices, labels)


def replica_pods(
    name: str, requests: Mapping[str, str | int | float], count: int, first: int = 0
) -> PodGroup:
    """`count` replicas of a workload as a pod group for the fit simulation."""
    request = pod_request(dict(requests))
    pods = tuple(Pod(f"{name}-{first + i}", name, request) for i in range(count))
    return PodGroup(name, pods)


def _pack(group: PodGroup, state: ClusterState) -> tuple[int, dict[str, str]]:
    """Place what fits of `group` on `state` (applied); (placed, pod -> reason) for the rest."""
    if not group.pods:
        return 0, {}
    result = Binpack().place(group, state)
    if isinstance(result, Placement):
        return len(result.bindings), {p: str(u) for p, u in result.pending.items()}
    return 0, {p.name: str(result) for p in group.pods}


def _on_new_nodes(group: PodGroup, pool: NodePool, existing: int) -> tuple[int, int, dict[str, str]]:
    """Nodes of `pool` to add (within maxNodes) for `group`: (nodes, pods placed, pod -> why not)."""
    room = pool.spec.max_nodes - existing
    if room <= 0:
        return (
            0,
            0,
            {p.name: f"pool {pool.metadata.name} is at maxNodes {pool.spec.max_nodes}" for p in group.pods},
        )
    # One template node first: a pod that does not fit an empty node never will.
    probe = ClusterState([template_node(pool, f"{pool.metadata.name}-new-0")])
    placed, why = _pack(PodGroup(group.name, group.pods[:1]), probe)
    if not placed:
        return (
            0,
            0,
            {p.name: f"{pool.metadata.name}: {next(iter(why.values()), 'does not fit')}" for p in group.pods},
        )
    nodes: list[Node] = []
    remaining = group.pods
    placed_total = 0
    while remaining and len(nodes) < room:
        nodes.append(template_node(pool, f"{pool.metadata.name}-new-{len(nodes)}"))
        state = ClusterState(nodes[-1:])
        placed, _ = _pack(PodGroup(group.name, remaining), state)
        if not placed:
            nodes.pop()
            break
        placed_total += placed
        remaining = remaining[placed:]
    why = {p.name: f"pool {pool.metadata.name} is at maxNodes {pool.spec.max_nodes}" for p in remaining}
    return len(nodes), placed_total, why


def plan_node_pools(
    pending: Sequence[PodGroup],
    pools: Sequence[NodePool],
    snapshot: ClusterState,
    nodes_per_pool: Mapping[str, int],
    model_start_s: float = 0.0,
) -> NodePoolPlan:
    """Nodes to add so that `pending` pods fit: existing and provisioning nodes first (in `snapshot`), then
    the pool that places the most of the rest at the lowest price. `nodes_per_pool` counts every node a
    pool has, provisioning ones included, against its maxNodes."""
    state = snapshot.copy()
    changes: list[NodePoolChange] = []
    unplaceable: dict[str, str] = {}
    on_existing = 0
    for group in pending:
        placed, _ = _pack(group, state)
        on_existing += placed
        bound = {b.name for b in state.bound}
        left = tuple(p for p in group.pods if p.name not in bound)
        if not left:
            continue
        rest = PodGroup(group.name, left, group.placement, group.namespace, group.queue, group.priority)
        best: tuple[int, float, NodePool, int] | None = None
        reasons: dict[str, str] = {}
        for pool in pools:
            n, placed_new, why = _on_new_nodes(rest, pool, nodes_per_pool.get(pool.metadata.name, 0))
            for pod, r in why.items():
                reasons.setdefault(pod, r)
            if n == 0:
                continue
            cost = n * pool.spec.hourly_price
            if best is None or (placed_new, -cost) > (best[0], -best[1]):
                best = (placed_new, cost, pool, n)
        if best is None:
            unplaceable.update(reasons)
            continue
        placed_new, cost, pool, n = best
        lead = pool.spec.provisioning_seconds + model_start_s
        changes.append(
            NodePoolChange(
                pool.metadata.name,
                add=n,
                reason=(
                    f"{len(left)} pending replica{'s' if len(left) != 1 else ''} of {group.name} "
                    "fit no existing node; "
                    f"{n} {pool.spec.node.gpu_model}×{pool.spec.node.gpus} node{'s' if n != 1 else ''} "
                    f"(${cost:.2f}/h) hold {placed_new}, ready in {lead:.0f} s"
                ),
                ready_in_s=lead,
            )
        )
        if placed_new < len(left):
            for p in left[placed_new:]:
                unplaceable[p.name] = reasons.get(p.name, "no pool has room")
    return NodePoolPlan(tuple(changes), on_existing, unplaceable)


def scale_down(pool: NodePool, nodes: Sequence[PoolNode], now: float) -> NodePoolChange | None:
    """Empty nodes of `pool` under its utilisation threshold for its idle period, keeping minNodes."""
    mine = [n for n in nodes if n.pool == pool.metadata.name]
    idle = pool.spec.scale_down.idle_seconds
    candidates = [
        n for n in mine if n.gpus_requested == 0 and n.below_since is not None and now - n.below_since >= idle
    ]
    allowed = max(0, len(mine) - pool.spec.min_nodes)
    chosen = tuple(sorted(n.name for n in candidates)[:allowed])
    if not chosen:
        return None
    return NodePoolChange(
        pool.metadata.name,
        remove=chosen,
        reason=(
            f"{len(chosen)} empty node{'s' if len(chosen) != 1 else ''} under "
            f"{pool.spec.scale_down.utilization_threshold}% GPU requests for ≥ {idle} s"
        ),
    )


def below_threshold(pool: NodePool, gpus_requested: int, gpus: int) -> bool:
    """Whether a node's GPU requests are under the pool's scale-down threshold."""
    return gpus_requested * 100 < pool.spec.scale_down.utilization_threshold * gpus


def consolidate(pool: NodePool, nodes: Sequence[PoolNode], need_gpus: int) -> NodePoolChange | None:
    """Cordon the emptiest under-used nodes while the other nodes still hold `need_gpus`: new replicas then
    land elsewhere and scale-downs (pod-deletion-cost) empty the cordoned ones, which go after the idle
    period — consolidation by attrition, never by evicting a model server."""
    # empty nodes are on their way out (scale_down): only nodes that hold replicas count as room
    mine = [n for n in nodes if n.pool == pool.metadata.name and not n.cordoned and n.gpus_requested > 0]
    room = sum(n.gpus for n in mine)
    chosen: list[str] = []
    for n in sorted(mine, key=lambda n: (n.gpus_requested, n.name)):
        if not below_threshold(pool, n.gpus_requested, n.gpus):
            continue
        if room - n.gpus < need_gpus or len(mine) - len(chosen) <= max(1, pool.spec.min_nodes):
            break
        room -= n.gpus
        chosen.append(n.name)
    if not chosen:
        return None
    return NodePoolChange(
        pool.metadata.name,
        cordon=tuple(chosen),
        reason=f"{len(chosen)} under-used node(s) cordoned: the rest hold the {need_gpus} GPUs needed",
    )


def reopen(pool: NodePool, nodes: Sequence[PoolNode], short_gpus: int) -> NodePoolChange | None:
    """Uncordon the fullest cordoned nodes until `short_gpus` fit — before any node is added."""
    cordoned = sorted(
        (n for n in nodes if n.pool == pool.metadata.name and n.cordoned), key=lambda n: -n.gpus_requested
    )
    chosen: list[str] = []
    free = 0
    for n in cordoned:
        if free >= short_gpus:
            break
        chosen.append(n.name)
        free += n.gpus - n.gpus_requested
    if not chosen:
        return None
    return NodePoolChange(
        pool.metadata.name,
        uncordon=tuple(chosen),
        reason=f"{short_gpus} GPUs wanted: cordoned nodes reopened",
    )
