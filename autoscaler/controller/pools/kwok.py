"""The KWOK node-pool provider (`type: KWOK`): a pool's nodes are KWOK-managed `v1.Node` objects.

For local use and tests: adding a node creates a Node shaped from the pool's node shape (GPUs, GPU model
labels, CPU, memory) which KWOK makes Ready within a second; removing one cordons it, drains it through
evictions that respect PodDisruptionBudgets, and deletes it — a node whose drain is refused stays, cordoned,
and is reported blocked.

Nodes belong to a pool by the `tidescale.io/node-pool` label. This module may not decide which nodes to add
or remove (that is `autoscaler.core.nodepool`); it lists and carries out.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence

from kubernetes import client

from autoscaler.api.policy import NodePool
from autoscaler.controller.pools.drain import NodeDrainer, cordon_members, kube_call
from autoscaler.controller.pools.node_manifest import pool_node
from autoscaler.controller.ports import PoolChangeResult
from autoscaler.core.decide import pool_nodes
from autoscaler.core.nodepool import POOL_LABEL, PoolNode
from jobs.vocabulary import NVIDIA_GPU
from kernel.clock import SYSTEM_CLOCK, Clock

# Pods that hold their node's GPUs: everything not finished (pending-but-bound pods included).
ACTIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"


def _quantity(raw: str | int | None) -> int:
    """An integer resource quantity ("2", 2); extended resources such as GPUs are whole numbers."""
    if raw is None:
        return 0
    text = str(raw)
    try:
        return int(text)
    except ValueError:
        return int(float(text))


def _container_gpus(container: client.V1Container) -> int:
    resources = container.resources
    if resources is None:
        return 0
    # for extended resources a limit alone sets the request
    requests = resources.requests or {}
    limits = resources.limits or {}
    return _quantity(requests.get(NVIDIA_GPU, limits.get(NVIDIA_GPU)))


def pod_gpus(pod: client.V1Pod) -> int:
    """The GPUs a pod holds: its containers' sum, or its largest init container if that is more."""
    spec = pod.spec
    main = sum(_container_gpus(c) for c in spec.containers or ())
    init = max((_container_gpus(c) for c in spec.init_containers or ()), default=0)
    return max(main, init)


def gpus_by_node(pods: Iterable[client.V1Pod]) -> dict[str, int]:
    """GPUs requested per node name by the pods bound to it."""
    out: dict[str, int] = {}
    for pod in pods:
        node = pod.spec.node_name
        if node:
            out[node] = out.get(node, 0) + pod_gpus(pod)
    return out


def node_row(node: client.V1Node, requested: Mapping[str, int]) -> tuple[str, int, int, bool, bool]:
    """(name, GPUs, GPUs requested, ready, cordoned) for `autoscaler.core.decide.pool_nodes`."""
    name = node.metadata.name
    status = node.status
    capacity = (status.capacity if status else None) or {}
    conditions = (status.conditions if status else None) or ()
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    cordoned = bool(node.spec and node.spec.unschedulable)
    return name, _quantity(capacity.get(NVIDIA_GPU)), requested.get(name, 0), ready, cordoned


def _random_suffix() -> str:
    return uuid.uuid4().hex[:5]


class KwokPoolProvider:
    """Nodes of `KWOK` pools as KWOK-managed Node objects; `suffix` names new nodes `<pool>-<suffix>`."""

    type = "KWOK"

    def __init__(
        self,
        api: client.ApiClient,
        clock: Clock = SYSTEM_CLOCK,
        drain_timeout: float = 60.0,
        suffix: Callable[[], str] = _random_suffix,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._drainer = NodeDrainer(api, clock, drain_timeout)
        self._suffix = suffix

    def _listed(self, pool: NodePool) -> list[client.V1Node]:
        name = pool.metadata.name
        listed = kube_call(
            f"list nodes of pool {name}", self._core.list_node, label_selector=f"{POOL_LABEL}={name}"
        )
        return list(listed.items)

    def provisioning(self, pool: NodePool) -> int:
        """Always 0: a KWOK node exists as a Node object from the moment it is created."""
        return 0

    def nodes(self, pool: NodePool, now: float, previous: Mapping[str, PoolNode]) -> tuple[PoolNode, ...]:
        """The pool's nodes, provisioning (not yet Ready) ones included. GPUs requested come from one list
        of the cluster's unfinished pods, not one list per node."""
        listed = self._listed(pool)
        if not listed:
            return ()
        pods = kube_call("list pods", self._core.list_pod_for_all_namespaces, field_selector=ACTIVE_PODS)
        requested = gpus_by_node(pods.items)
        rows = [node_row(n, requested) for n in sorted(listed, key=lambda n: n.metadata.name)]
        return pool_nodes(pool, rows, previous, now)

    def add(self, pool: NodePool, count: int) -> PoolChangeResult:
        """Create `count` nodes; they are provisioning until KWOK marks them Ready."""
        added: list[str] = []
        for _ in range(count):
            name = f"{pool.metadata.name}-{self._suffix()}"
            kube_call(
                f"create node {name} in pool {pool.metadata.name}",
                self._core.create_node,
                pool_node(pool, name),
            )
            added.append(name)
        return PoolChangeResult(
            pool.metadata.name,
            added=tuple(added),
            reason=f"{len(added)} KWOK node(s) created: {', '.join(added)}" if added else "",
        )

    def _members(self, pool: NodePool, names: Sequence[str]) -> tuple[list[str], list[str]]:
        """`names` split into (in the pool, not in it): a provider only touches its own pool's nodes."""
        mine = {n.metadata.name for n in self._listed(pool)}
        return [n for n in names if n in mine], [n for n in names if n not in mine]

    def remove(self, pool: NodePool, names: Sequence[str]) -> PoolChangeResult:
        """Cordon, drain, delete; nodes whose drain is refused stay cordoned and are reported blocked."""
        members, strangers = self._members(pool, names)
        drained, refused = self._drainer.drain_nodes(members)
        for name in drained:
            self._drainer.delete(name)
        blocked = tuple(r.node for r in refused)
        reasons = [f"{len(drained)} node(s) drained and deleted"] if drained else []
        reasons += [r.why_not() for r in refused]
        if strangers:
            reasons.append(f"not in pool {pool.metadata.name}: {', '.join(strangers)}")
        return PoolChangeResult(
            pool.metadata.name,
            removed=tuple(drained),
            cordoned=blocked,
            blocked=blocked,
            reason="; ".join(reasons),
        )

    def cordon(self, pool: NodePool, names: Sequence[str], cordoned: bool) -> PoolChangeResult:
        members, strangers = self._members(pool, names)
        return cordon_members(self._drainer, pool.metadata.name, members, strangers, cordoned)
