"""The node side of a decision from what the controller sees: a pool's nodes (ready and provisioning) as a
scheduler snapshot with their GPU requests bound, for the fit simulation behind node-pool plans.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from autoscaler.api.policy import NodePool
from autoscaler.core.decide import NodeView
from autoscaler.core.nodepool import PoolNode, template_node
from jobs.snapshot import BoundPod, ClusterState
from jobs.vocabulary import pod_request


def node_view(
    pool: NodePool, nodes: Sequence[PoolNode], requests: Mapping[str, str | int | float], scheduled: int
) -> NodeView:
    """`nodes` of `pool` as a NodeView: each node shaped from the pool, with as many replica-sized pods bound
    as its GPU requests account for (the pods of other workloads count as GPU use, which is what matters for
    fitting more replicas)."""
    request = pod_request(dict(requests))
    per = max(1, request.gpu_milli // 1000)
    state = ClusterState([replace(template_node(pool, n.name), unschedulable=n.cordoned) for n in nodes])
    for i, n in enumerate(nodes):
        for k in range(n.gpus_requested // per):
            got = state.dev[i].assign(request.devices)
            if isinstance(got, str):
                break
            state.bind(i, BoundPod(f"{n.name}-used-{k}", n.name, request, got))
    return NodeView((pool,), state, tuple(nodes), scheduled)
