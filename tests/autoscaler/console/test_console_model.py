"""The console's view models from plain values: policy rows, pages and summaries, events, chart points,
GPU nodes, applications and queues."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.console import model
from jobs.launcher import views

T0 = 1_800_000_000.0


def a_policy(
    name: str = "llm", namespace: str = "ml", status: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targetRef": {"kind": "Deployment", "name": name}, "minReplicas": 1, "maxReplicas": 4}
        | spec,
        "status": status or {},
    }


def a_record(
    policy: str = "ml/llm",
    current: int = 1,
    desired: int = 3,
    rule: str = "DesiredWithinRange",
    at: str = "2027-01-15T08:00:00.250000Z",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "kind": "ScalingDecision",
        "time": at,
        "policy": policy,
        "target": f"Deployment/{policy.split('/')[1]}",
        "replicas": {"current": current, "desired": desired},
        "reason": f"GPU 95% of target 70%: {current} → {desired} replicas",
        "rule": rule,
        "proposals": [
            {"trigger": "gpu", "replicas": desired, "active": True, "demand": 2.4, "reason": "…"},
            {"trigger": "lag", "replicas": 9, "failed": True, "active": False, "demand": 7, "reason": "-"},
        ],
        **extra,
    }


def test_a_policy_row_takes_the_spec_and_status_and_keeps_what_only_events_told() -> None:
    status = {
        "currentReplicas": 2,
        "desiredReplicas": 2,
        "lastDecision": "GPU 60% of target 70%: keeping 2 replicas",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Reconciled"},
            {"type": "Fallback", "status": "False", "reason": "MetricsHealthy"},
        ],
    }
    told = model.with_record(model.PolicyRow("ml/llm"), a_record(rule="ScaleUpLimit"))
    row = model.row_of(a_policy(status=status, maxReplicas=6), told)
    assert (row.key, row.target, row.min_replicas, row.max_replicas) == ("ml/llm", "Deployment/llm", 1, 6)
    assert (row.current, row.desired, row.ready, row.ready_reason) == (2, 2, "True", "Reconciled")
    assert row.reason == "GPU 60% of target 70%: keeping 2 replicas"
    assert row.rule == "ScaleUpLimit" and row.decided == "2027-01-15T08:00:00.250000Z"
    assert row.problem == "" and row.fallback is False


def test_a_condition_that_is_false_is_the_rows_problem_until_it_clears() -> None:
    status = {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "spec.triggers: bad"},
            {"type": "PodsScheduled", "status": "False", "reason": "PodsPending", "message": "2 of 3 wait"},
        ]
    }
    row = model.row_of(a_policy(status=status))
    assert row.ready == "False"
    assert row.problem == "InvalidSpec: spec.triggers: bad; PodsPending: 2 of 3 wait"
    assert model.row_of(a_policy(status={}), row).problem == ""


def test_failure_and_recovery_records_set_and_clear_the_problem_without_touching_replicas() -> None:
    row = model.with_record(model.PolicyRow("ml/llm"), a_record(current=1, desired=2))
    failure = {
        "kind": "ScalingProblem",
        "policy": "ml/llm",
        "failure": {"reason": "NodePoolNotFound", "message": "nodePool 'gpu' names no NodePool"},
    }
    failed = model.with_record(row, failure)
    assert failed.problem == "NodePoolNotFound: nodePool 'gpu' names no NodePool"
    assert (failed.current, failed.desired) == (1, 2)
    recovered = model.with_record(failed, {"kind": "ScalingProblem", "recovery": {"reason": "NodePoolFound"}})
    assert recovered.problem == "" and (recovered.current, recovered.desired) == (1, 2)
    assert model.point_of(failure) is None


def rows(n: int) -> list[model.PolicyRow]:
    out = []
    for i in range(n):
        record = a_record(f"ns{i % 3}/svc-{i:03d}", 2, 2 + i % 4, "ScaleUpLimit" if i % 2 else "Steady")
        out.append(model.with_record(model.PolicyRow(f"ns{i % 3}/svc-{i:03d}", max_replicas=4), record))
    return out


def test_a_page_holds_only_its_rows_and_the_summary_counts_all_of_them() -> None:
    page = model.policies_page(rows(1000), offset=40, limit=20)
    assert (page["total"], page["matched"], len(page["items"])) == (1000, 1000, 20)
    assert page["items"][0]["key"] == sorted(r.key for r in rows(1000))[40]
    s = page["summary"]
    assert (s["policies"], s["up"], s["down"], s["atMax"]) == (1000, 750, 0, 500)
    assert s["rules"] == {"ScaleUpLimit": 500, "Steady": 500}


def test_the_filter_looks_in_key_target_rule_and_problem_and_the_sorts_put_what_matters_first() -> None:
    everything = rows(12)
    assert model.policies_page(everything, query="NS1/")["matched"] == 4
    assert model.policies_page(everything, query="scaleuplimit")["matched"] == 6
    gap = model.policies_page(everything, sort="gap", limit=3)["items"]
    assert [r["desired"] - r["current"] for r in gap] == [3, 3, 3]
    limited = model.policies_page(everything, limit=500)
    assert limited["limit"] == model.PAGE_LIMIT_MAX


def test_an_unknown_sort_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="sort: 'size' is not one of name, recent, gap"):
        model.policies_page([], sort="size")


@pytest.mark.parametrize(
    ("record", "way", "type_"),
    [
        (a_record(current=1, desired=3, eventReason="ScaleUp", eventType="Normal"), "up", "Normal"),
        (a_record(current=4, desired=2, eventReason="ScaleDown", eventType="Normal"), "down", "Normal"),
        (a_record(current=2, desired=2, rule="Fallback", eventType="Warning"), "none", "Warning"),
        (
            {
                "kind": "ScalingProblem",
                "replicas": {"current": 1, "desired": 1},
                "failure": {"reason": "TargetNotFound", "message": "gone"},
            },
            "none",
            "Warning",
        ),
    ],
    ids=["up", "down", "refusal", "failure"],
)
def test_an_event_says_which_way_and_how_it_was_told(record: dict[str, Any], way: str, type_: str) -> None:
    event = model.event_of(record, 7)
    assert (event["id"], event["way"], event["type"]) == (7, way, type_)


def test_a_chart_point_holds_the_replicas_and_the_largest_proposal_of_a_metric_that_was_read() -> None:
    p = model.point_of(a_record(current=1, desired=3))
    assert p is not None and (p.current, p.desired, p.wanted, p.load) == (1, 3, 3, 2.4)  # not the failed one
    assert p.t == pytest.approx(model.parse_time("2027-01-15T08:00:00.25Z") or 0)


def point(t: float, current: int, desired: int, wanted: int | None = None) -> model.Point:
    return model.Point(T0 + t, current, desired, wanted)


def test_a_series_keeps_one_point_per_resolution_but_every_step_and_at_most_its_capacity() -> None:
    s = model.Series(capacity=4, resolution=5.0)
    for p in (point(0, 1, 1, 1), point(1, 1, 1, 2), point(2, 1, 3, 3), point(3, 3, 3, 3), point(2.5, 9, 9)):
        s.add(p)
    # the second replaced the first (same replicas); the step 1 → 3 stays; the late one is dropped
    assert [(p.t - T0, p.desired) for p in s.points] == [(1, 1), (2, 3), (3, 3)]
    for t in range(10, 60, 10):
        s.add(point(t, 3, 3))
    assert len(s.points) == 4 and s.points[-1].t == T0 + 50


def test_the_chart_is_the_last_hour_relative_to_now() -> None:
    points = [point(-4000, 1, 1), point(-1800, 1, 2, 2), point(-10, 2, 2)]
    c = model.chart("ml/llm", points, T0, 3600)
    assert c["points"] == [[-1800.0, 1, 2, 2, None], [-10.0, 2, 2, None, None]]
    assert c["to"] - c["from"] == 3600


def a_node(name: str, gpus: int = 4) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"nvidia.com/gpu.product": "NVIDIA-L40S", "nvidia.com/gpu.memory": "46068"},
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def a_pod(
    name: str,
    node: str = "",
    gpus: int = 1,
    annotations: dict[str, str] | None = None,
    scheduler: str = "tidescale",
    priority: int = 0,
    created: str = "00",
    conditions: list[dict[str, str]] | None = None,
    namespace: str = "ml",
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": annotations or {},
            "creationTimestamp": f"2026-01-01T00:00:{created}Z",
        },
        "spec": {
            "schedulerName": scheduler,
            "nodeName": node or None,
            "priority": priority,
            "containers": [{"name": "m", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {"phase": "Running" if node else "Pending", "conditions": conditions or []},
    }


def test_the_node_view_is_top_nodes_with_each_gpus_allocation_utilization_and_memory() -> None:
    held = a_pod("train-0", "n0", 2, {"tidescale.io/node": "n0", "tidescale.io/gpus": "0,1"})
    samples = {
        views.UTIL: [
            {"metric": {"hostname": "n0", "gpu": "0"}, "value": [0, "80"]},
            {"metric": {"hostname": "n0", "gpu": "1"}, "value": [0, "60"]},
        ],
        views.FB_USED: [{"metric": {"hostname": "n0", "gpu": "0"}, "value": [0, "1000"]}],
    }
    out = model.nodes(views.node_views([a_node("n0")], [held], views.metrics_from(samples)))
    (n0,) = out["nodes"]
    assert (n0["name"], n0["gpuTotal"], n0["gpuAllocated"], n0["mode"], n0["pods"]) == (
        "n0",
        4,
        2,
        "exclusive",
        1,
    )
    assert (n0["util"], n0["memoryUsedMiB"], n0["memoryTotalMiB"]) == (70.0, 1000.0, 4 * 46068.0)
    g0, _, g2, _ = n0["gpus"]
    assert (g0["allocation"], g0["pods"], g0["util"], g0["memoryUsedMiB"]) == (
        "1 (whole)",
        ["ml/train-0"],
        80,
        1000,
    )
    assert (g2["allocation"], g2["pods"], g2["util"]) == ("0", [], None)
    assert out["metrics"] is True and out["gpuAllocated"] == 2


def unschedulable(message: str) -> list[dict[str, str]]:
    return [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]


def test_queues_list_pending_entries_in_the_order_the_scheduler_tries_them_and_why_they_wait() -> None:
    gang = {"scheduling.k8s.io/group-name": "ft", "scheduling.volcano.sh/queue-name": "gpu"}
    pods = [
        a_pod(
            "old",
            created="01",
            annotations={"scheduling.volcano.sh/queue-name": "gpu"},
            conditions=unschedulable("0/4 nodes are available: 4 insufficient nvidia.com/gpu."),
        ),
        a_pod("urgent", created="05", priority=100, annotations={"scheduling.volcano.sh/queue-name": "gpu"}),
        a_pod("ft-0", created="02", annotations=gang),
        a_pod("ft-1", created="03", annotations=gang),
        a_pod("web", created="04", scheduler="default-scheduler", gpus=0),
        a_pod("running", node="n0"),
    ]
    queues = [
        {
            "metadata": {"name": "gpu", "annotations": {"tidescale.io/queue-policy": "Priority"}},
            "spec": {"weight": 1},
            "status": {"running": 3, "pending": 2},
        },
        {"metadata": {"name": "idle"}, "spec": {"weight": 1}},
    ]
    podgroups = [{"metadata": {"name": "ft", "namespace": "ml"}, "spec": {"minMember": 2, "queue": "gpu"}}]
    out = model.queues(pods, podgroups, queues)
    assert out["pendingPods"] == 5
    lines = {(q["scheduler"], q["queue"]): q for q in out["queues"]}
    gpu = lines[("tidescale", "gpu")]
    assert (gpu["policy"], gpu["pending"], gpu["status"]["running"]) == ("Priority", 3, 3)
    assert [(e["name"], e["unit"], e["pods"]) for e in gpu["entries"]] == [
        ("urgent", "pod", 1),
        ("old", "pod", 1),
        ("ft", "gang", 2),
    ]
    assert (
        gpu["entries"][1]["why"] == "Unschedulable: 0/4 nodes are available: 4 insufficient nvidia.com/gpu."
    )
    assert gpu["entries"][0]["why"] == "waiting for the scheduler tidescale"
    kube = lines[("default-scheduler", "default")]
    assert (kube["policy"], kube["pending"]) == ("Priority", 1)
    assert lines[("", "idle")]["pending"] == 0
