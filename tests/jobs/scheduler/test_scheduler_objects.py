"""Kubernetes objects -> the core's values, pending pods -> entries, and the status the scheduler writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from jobs.placement import Unschedulable
from jobs.resources import Resources
from jobs.scheduler.groups import PendingPod, build_offer
from jobs.scheduler.objects import (
    GroupSpec,
    group_of,
    group_spec_of,
    node_of,
    queue_of,
    request_of,
    summed_requests,
    wants_scheduler,
)
from jobs.scheduler.status import GroupStatus, QueueCounts, nodes_message, pod_scheduled_false
from jobs.workload import BinpackSpec, GangSpec

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def a_pod(
    name: str = "p",
    limits: dict[str, str] | None = None,
    requests: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    scheduler: str = "tidescale",
    node: str = "",
    init: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if limits:
        resources["limits"] = limits
    if requests:
        resources["requests"] = requests
    spec: dict[str, Any] = {
        "schedulerName": scheduler,
        "containers": [{"name": "a", "resources": resources}, {"name": "b", "resources": resources}],
    }
    if init:
        spec["initContainers"] = [{"name": f"i{k}", "resources": {"requests": r}} for k, r in enumerate(init)]
    if node:
        spec["nodeName"] = node
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "annotations": annotations or {},
            "labels": labels or {},
        },
        "spec": spec,
        "status": {"phase": "Pending"},
    }


def a_node(name: str = "n0", allocatable: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": extra.get("labels", {}),
            "annotations": extra.get("annotations", {}),
        },
        "spec": {"taints": extra.get("taints", []), "unschedulable": extra.get("unschedulable", False)},
        "status": {
            "allocatable": allocatable or {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"},
            "conditions": [{"type": "Ready", "status": extra.get("ready", "True")}],
        },
    }


# -- objects ---------------------------------------------------------------------------------------


def test_containers_are_summed_init_containers_are_a_floor_and_limits_stand_in_for_requests() -> None:
    pod = a_pod(limits={"cpu": "500m", "nvidia.com/gpu": "1"}, init=[{"cpu": "2"}])
    assert summed_requests(pod) == {"cpu": 2, "nvidia.com/gpu": 2}
    request = request_of(a_pod(limits={"cpu": "250m"}, requests={"cpu": "100m"}))
    assert request.resources["cpu"] == 200


def test_a_node_reads_capacity_devices_taints_and_readiness() -> None:
    node = node_of(a_node(taints=[{"key": "gpu", "value": "reserved", "effect": "NoSchedule"}]))
    assert len(node.devices.gpus) == 2 and node.capacity["cpu"] == 8000 and node.capacity["pods"] == 110
    assert str(node.taints[0]) == "gpu=reserved" and not node.unschedulable
    assert node_of(a_node(ready="False")).unschedulable


def test_a_node_with_an_unreadable_quantity_names_itself_and_the_field() -> None:
    with pytest.raises(ValueError, match=r"Node n0: status.allocatable: nvidia.com/gpu"):
        node_of(a_node(allocatable={"nvidia.com/gpu": "two"}))


@pytest.mark.parametrize(
    ("annotations", "labels", "expected"),
    [
        ({"scheduling.k8s.io/group-name": "g"}, {}, ("volcano", "g", None)),
        ({"scheduling.volcano.sh/group-name": "g"}, {}, ("volcano", "g", None)),
        ({}, {"scheduling.x-k8s.io/pod-group": "g"}, ("coscheduling", "g", None)),
        (
            {},
            {
                "pod-group.scheduling.sigs.k8s.io/name": "g",
                "pod-group.scheduling.sigs.k8s.io/min-available": "3",
            },
            ("coscheduling", "g", 3),
        ),
    ],
    ids=["volcano", "volcano-new", "coscheduling", "arena"],
)
def test_gang_membership_is_read_from_every_scheme(
    annotations: dict[str, str], labels: dict[str, str], expected: tuple[str, str, int | None]
) -> None:
    ref = group_of(a_pod(annotations=annotations, labels=labels))
    assert ref is not None and (ref.api, ref.name, ref.min_available) == expected


def test_only_unbound_live_pods_that_name_the_scheduler_are_its_to_place() -> None:
    assert wants_scheduler(a_pod(), "tidescale")
    assert not wants_scheduler(a_pod(scheduler="default-scheduler"), "tidescale")
    assert not wants_scheduler(a_pod(node="n0"), "tidescale")
    gated = a_pod()
    gated["spec"]["schedulingGates"] = [{"name": "kueue.x-k8s.io/admission"}]
    assert not wants_scheduler(gated, "tidescale")


def test_a_volcano_queue_maps_onto_the_core_queue() -> None:
    view = queue_of(
        {
            "metadata": {"name": "research", "annotations": {"tidescale.io/queue-policy": "Capacity"}},
            "spec": {
                "weight": 3,
                "deserved": {"nvidia.com/gpu": "4", "cpu": "32"},
                "capability": {"nvidia.com/gpu": "8"},
                "reclaimable": False,
            },
        }
    )
    q = view.queue
    assert view.policy == "Capacity"
    assert (q.weight, q.guaranteed["gpu"], q.guaranteed["cpu"], q.max and q.max["gpu"]) == (
        3,
        4000,
        32000,
        8000,
    )
    assert q.cohort == "volcano" and q.reclaimable is False


@pytest.mark.parametrize(
    ("spec", "annotations", "message"),
    [
        ({}, {"tidescale.io/queue-policy": "Roulette"}, "no queue policy 'Roulette'"),
        ({"weight": 0}, {}, "spec.weight: a whole number >= 1"),
        ({"capability": {"cpu": "lots"}}, {}, "not a quantity"),
    ],
    ids=["policy", "weight", "quantity"],
)
def test_an_invalid_queue_is_refused_naming_the_field(
    spec: dict[str, Any], annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        queue_of({"metadata": {"name": "q", "annotations": annotations}, "spec": spec})


def test_a_podgroup_reads_min_member_resources_and_queue() -> None:
    spec = group_spec_of(
        {
            "metadata": {"name": "g", "namespace": "ns"},
            "spec": {"minMember": 4, "minResources": {"cpu": "8"}, "queue": "research"},
        }
    )
    assert (spec.key, spec.min_member, spec.min_resources["cpu"], spec.queue) == ("ns/g", 4, 8000, "research")


# -- offers ----------------------------------------------------------------------------------------


def pending(*pods: dict[str, Any]) -> list[PendingPod]:
    return [PendingPod(p["metadata"]["uid"], "ns", p["metadata"]["name"], k, p) for k, p in enumerate(pods)]


GANG = {"scheduling.k8s.io/group-name": "g"}
FREE = Resources.of(cpu=10**6, memory=2**40)


def test_single_pods_are_entries_of_their_own_and_a_gang_is_one_entry_that_needs_what_is_missing() -> None:
    pods = pending(
        a_pod("solo", limits={"cpu": "1"}),
        *(a_pod(f"g-{i}", limits={"nvidia.com/gpu": "1"}, annotations=GANG) for i in range(3)),
    )
    offer = build_offer(pods, {"ns/g": GroupSpec("ns/g", 4)}, {}, {"ns/g": 1}, BinpackSpec(), FREE)
    by_uid = {e.uid: e for e in offer.entries}
    assert set(by_uid) == {"ns/solo", "ns/g"}
    gang = by_uid["ns/g"].group
    assert len(gang.pods) == 3 and isinstance(gang.placement, GangSpec) and gang.placement.min_member == 3
    assert [p.name for p in offer.members["ns/g"]] == ["g-0", "g-1", "g-2"]


@pytest.mark.parametrize(
    ("groups", "invalid", "running", "free", "reason"),
    [
        ({"ns/g": GroupSpec("ns/g", 5)}, {}, {}, FREE, "NotEnoughPods"),
        ({}, {}, {}, FREE, "PodGroupNotFound"),
        ({}, {"ns/g": "PodGroup ns/g: spec.minMember: bad"}, {}, FREE, "InvalidPodGroup"),
        (
            {"ns/g": GroupSpec("ns/g", 2, Resources.of(cpu=64_000))},
            {},
            {},
            Resources.of(cpu=8000),
            "NotEnoughResources",
        ),
    ],
    ids=["too-few-members", "no-podgroup", "invalid", "min-resources"],
)
def test_a_gang_that_cannot_start_is_held_with_its_reason(
    groups: dict[str, GroupSpec],
    invalid: dict[str, str],
    running: dict[str, int],
    free: Resources,
    reason: str,
) -> None:
    pods = pending(*(a_pod(f"g-{i}", limits={"cpu": "1"}, annotations=GANG) for i in range(2)))
    offer = build_offer(pods, groups, invalid, running, BinpackSpec(), free)
    assert offer.entries == ()
    assert offer.held["ns/g"].reason == reason and offer.held["ns/g"].pods == ("uid-g-0", "uid-g-1")


def test_a_gang_in_a_queue_that_does_not_exist_is_held() -> None:
    pods = pending(a_pod("g-0", limits={"cpu": "1"}, annotations=GANG))
    spec = {"ns/g": GroupSpec("ns/g", 1, queue="ghost")}
    offer = build_offer(pods, spec, {}, {}, BinpackSpec(), FREE, known_queues={"research"})
    assert offer.held["ns/g"].reason == "QueueNotFound"


def test_a_pod_whose_request_cannot_be_read_is_held_with_the_reason() -> None:
    offer = build_offer(
        pending(a_pod("mig", limits={"nvidia.com/mig-1g.10gb": "1"})), {}, {}, {}, BinpackSpec(), FREE
    )
    assert offer.held["uid-mig"].reason == "InvalidPod"
    assert "MIG profiles are not modelled" in offer.held["uid-mig"].message


# -- status ----------------------------------------------------------------------------------------


def test_the_message_reads_like_kube_schedulers() -> None:
    why = Unschedulable({"insufficient nvidia.com/gpu": 8, "untolerated taint gpu=reserved": 4})
    assert nodes_message(12, why) == (
        "0/12 nodes are available: 8 insufficient nvidia.com/gpu, 4 untolerated taint gpu=reserved."
    )
    gang = Unschedulable(
        {"insufficient nvidia.com/gpu": 3}, "gang g needs 8 of 8 pods placed together, only 6 fit"
    )
    assert nodes_message(3, gang).endswith(". gang g needs 8 of 8 pods placed together, only 6 fit")


def test_pod_scheduled_false_keeps_the_reason_autoscalers_key_on() -> None:
    cond = pod_scheduled_false("0/1 nodes are available.", NOW)["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("PodScheduled", "False", "Unschedulable")


def test_status_is_written_only_when_it_changes() -> None:
    status = GroupStatus("Inqueue", "NotEnoughResources", "0/3 nodes are available.", 0)
    body = status.body({}, NOW)
    assert body is not None and body["status"]["phase"] == "Inqueue"
    assert status.body(body["status"], NOW) is None
    counts = QueueCounts({"nvidia.com/gpu": "1"}, 0, 1, 1)
    written = counts.body({})
    assert written is not None and counts.body(written["status"]) is None
