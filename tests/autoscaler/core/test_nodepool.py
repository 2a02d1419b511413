import pytest

from autoscaler.core.nodepool import (
    PoolNode,
    below_threshold,
    consolidate,
    plan_node_pools,
    reopen,
    replica_pods,
    scale_down,
    template_node,
)
from jobs.placement import Binpack
from jobs.snapshot import ClusterState
from tests.autoscaler.autoscaler_builders import a_pool


def test_a_template_node_carries_the_pools_gpus_and_labels() -> None:
    node = template_node(a_pool("h100", gpus=8, gpu_memory=81559), "x")
    assert len(node.devices.gpus) == 8
    assert node.devices.gpus[0].memory_mib == 81559
    assert node.labels["tidescale.io/node-pool"] == "h100"


def test_pending_replicas_go_to_existing_room_before_new_nodes() -> None:
    pool = a_pool(gpus=8)
    state = ClusterState([template_node(pool, "n0")])
    Binpack().place(replica_pods("svc", {"nvidia.com/gpu": 1}, 5), state)
    plan = plan_node_pools([replica_pods("new", {"nvidia.com/gpu": 1}, 3)], [pool], state, {"h100": 1})
    assert plan.changes == ()
    assert plan.placed_on_existing == 3


@pytest.mark.parametrize(
    ("pending", "per_pod", "nodes"),
    [(1, 1, 1), (8, 1, 1), (9, 1, 2), (5, 4, 3)],
    ids=["one", "one full node", "spills over", "four GPUs each"],
)
def test_new_nodes_are_counted_by_the_scheduler_fit(pending: int, per_pod: int, nodes: int) -> None:
    plan = plan_node_pools(
        [replica_pods("svc", {"nvidia.com/gpu": per_pod}, pending)], [a_pool(gpus=8)], ClusterState([]), {}
    )
    assert [c.add for c in plan.changes] == [nodes]


def test_the_cheapest_pool_that_fits_wins_and_the_reason_names_lead_time_and_price() -> None:
    big = a_pool("h100", gpus=8, price=98.0, provisioning=180)
    small = a_pool("l40s", gpus=4, price=10.0, provisioning=240, gpu_memory=46068)
    plan = plan_node_pools(
        [replica_pods("svc", {"nvidia.com/gpu": 1}, 4)], [big, small], ClusterState([]), {}, 60
    )
    (change,) = plan.changes
    assert (change.pool, change.add, change.ready_in_s) == ("l40s", 1, 300)
    assert "$10.00/h" in change.reason and "ready in 300 s" in change.reason


def test_a_pod_that_fits_no_pool_is_reported_with_the_reason() -> None:
    plan = plan_node_pools(
        [replica_pods("svc", {"nvidia.com/gpu": 16}, 1)], [a_pool(gpus=8)], ClusterState([]), {}
    )
    assert plan.changes == ()
    assert "insufficient nvidia.com/gpu" in plan.unplaceable["svc-0"]


def test_a_pool_at_max_nodes_adds_no_more() -> None:
    plan = plan_node_pools(
        [replica_pods("svc", {"nvidia.com/gpu": 1}, 20)],
        [a_pool(gpus=8, max_nodes=3)],
        ClusterState([]),
        {"h100": 2},
    )
    assert [c.add for c in plan.changes] == [1]
    assert len(plan.unplaceable) == 12


def test_scale_down_removes_empty_idle_nodes_only_and_keeps_min_nodes() -> None:
    pool = a_pool(min_nodes=1, idle=600)
    nodes = [
        PoolNode("busy", "h100", 8, 4, 0.0),  # under threshold but not empty: never evicted
        PoolNode("idle-a", "h100", 8, 0, 0.0),
        PoolNode("idle-b", "h100", 8, 0, 0.0),
        PoolNode("fresh", "h100", 8, 0, 500.0),
    ]
    change = scale_down(pool, nodes, 700.0)
    assert change is not None and change.remove == ("idle-a", "idle-b")
    assert scale_down(a_pool(min_nodes=4), nodes, 700.0) is None


def test_the_utilisation_threshold_is_on_gpu_requests() -> None:
    assert below_threshold(a_pool(), 3, 8)
    assert not below_threshold(a_pool(), 4, 8)


def test_under_used_nodes_are_cordoned_while_the_rest_hold_what_is_needed() -> None:
    pool = a_pool(gpus=8)
    nodes = [PoolNode("a", "h100", 8, 7), PoolNode("b", "h100", 8, 2), PoolNode("c", "h100", 8, 1)]
    change = consolidate(pool, nodes, 9)
    assert change is not None and change.cordon == ("c",)  # a and b still hold 9 GPUs
    assert consolidate(pool, nodes, 20) is None


def test_cordoned_nodes_reopen_before_any_node_is_added() -> None:
    nodes = [PoolNode("a", "h100", 8, 8), PoolNode("b", "h100", 8, 1, cordoned=True)]
    change = reopen(a_pool(gpus=8), nodes, 5)
    assert change is not None and change.uncordon == ("b",)
