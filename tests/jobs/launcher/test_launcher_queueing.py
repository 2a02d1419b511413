"""A pending job's place in its queue: the scheduler's entries and order, from the cluster's objects."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.launcher.queueing import QueuePosition, job_unit, pending_entries, position_of, queue_positions

SCHEDULER = "tidescale"


def a_pod(
    name: str,
    created: str,
    job: str | None = None,
    queue: str | None = None,
    group: str | None = None,
    priority: int = 0,
    node: str = "",
    scheduler: str = SCHEDULER,
    namespace: str = "ml",
    **status: Any,
) -> dict[str, Any]:
    annotations = {"scheduling.volcano.sh/queue-name": queue} if queue else {}
    if group:
        annotations["scheduling.k8s.io/group-name"] = group
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": f"2026-01-01T00:00:{created}Z",
            "labels": {"tidescale.io/job": job} if job else {},
            "annotations": annotations,
        },
        "spec": {"schedulerName": scheduler, "nodeName": node or None, "priority": priority},
        "status": status or {"phase": "Pending"},
    }


def a_podgroup(name: str, queue: str, namespace: str = "ml") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"minMember": 2, "queue": queue}}


def a_queue(name: str, policy: str | None = None) -> dict[str, Any]:
    annotations = {"tidescale.io/queue-policy": policy} if policy else {}
    return {"metadata": {"name": name, "annotations": annotations}, "spec": {"weight": 1}}


def order(pods: list[dict[str, Any]], queues: list[dict[str, Any]] | None = None, **kw: Any) -> list[str]:
    """The units of queue `gpu`, in the order the scheduler tries them."""
    positions = queue_positions(
        pods, kw.get("podgroups", []), queues or [], SCHEDULER, kw.get("default", "FIFO")
    )
    mine = sorted((p.position, unit) for unit, p in positions.items() if p.queue == "gpu")
    return [unit.split("/", 1)[1] for _, unit in mine]


@pytest.mark.parametrize(
    ("pods", "queues", "expected"),
    [
        pytest.param(
            [a_pod("b", "02", "b", "gpu"), a_pod("a", "01", "a", "gpu"), a_pod("c", "03", "c", "gpu")],
            [],
            ["a", "b", "c"],
            id="FIFO by default: oldest first",
        ),
        pytest.param(
            [a_pod("b", "02", "b", "gpu"), a_pod("a", "01", "a", "gpu"), a_pod("c", "03", "c", "gpu")],
            [a_queue("gpu", "LIFO")],
            ["c", "b", "a"],
            id="LIFO queue: newest first",
        ),
        pytest.param(
            [
                a_pod("a", "01", "a", "gpu", priority=10),
                a_pod("b", "02", "b", "gpu", priority=100),
                a_pod("c", "03", "c", "gpu", priority=10),
            ],
            [a_queue("gpu", "Priority")],
            ["b", "a", "c"],
            id="Priority queue: highest priority, then oldest",
        ),
        pytest.param(
            [a_pod("a", "01", "a", "gpu", priority=1), a_pod("b", "02", "b", "gpu", priority=100)],
            [a_queue("gpu", "FairShare")],
            ["b", "a"],
            id="FairShare orders within a queue by priority",
        ),
        pytest.param(
            [a_pod("b", "01", "b", "gpu"), a_pod("a", "01", "a", "gpu")],
            [],
            ["a", "b"],
            id="the same second: by name",
        ),
        pytest.param(
            [
                a_pod("a", "01", "a", "gpu"),
                a_pod("bound", "00", "bound", "gpu", node="n1"),
                a_pod("other", "00", "other", "gpu", scheduler="default-scheduler"),
                a_pod("done", "00", "done", "gpu", phase="Failed"),
                a_pod("elsewhere", "00", "elsewhere", "cpu"),
                a_pod("b", "02", "b", "gpu"),
            ],
            [],
            ["a", "b"],
            id="only the pending pods of this scheduler and queue",
        ),
    ],
)
def test_the_units_of_a_queue_stand_in_the_order_the_scheduler_tries_them(
    pods: list[dict[str, Any]], queues: list[dict[str, Any]], expected: list[str]
) -> None:
    assert order(pods, queues) == expected


def test_a_jobs_parallel_pods_count_once_where_its_first_entry_stands() -> None:
    pods = [
        a_pod("etl-0", "01", "etl", "gpu"),
        a_pod("ft", "02", "ft", "gpu"),
        a_pod("etl-1", "03", "etl", "gpu"),
        a_pod("loose", "04", None, "gpu"),
    ]
    positions = queue_positions(pods, [], [], SCHEDULER)
    assert positions[job_unit("ml", "etl")] == QueuePosition("gpu", 1, 3, "FIFO")
    assert positions[job_unit("ml", "ft")] == QueuePosition("gpu", 2, 3, "FIFO")
    assert positions["pod:ml/loose"] == QueuePosition("gpu", 3, 3, "FIFO")


def test_a_gang_is_one_entry_in_its_podgroups_queue_with_its_highest_priority_and_oldest_arrival() -> None:
    pods = [
        a_pod("ft-0", "03", "ft", group="ft", priority=1),  # no queue annotation: the PodGroup's
        a_pod("solo", "02", "solo", "gpu", priority=5),
        a_pod("ft-1", "05", "ft", group="ft", priority=9),
    ]
    (gang, solo) = sorted(pending_entries(pods, [a_podgroup("ft", "gpu")], SCHEDULER), key=lambda e: e[0].uid)
    assert (gang[0].uid, gang[0].queue, gang[0].group.priority, gang[1]) == ("ml/ft", "gpu", 9, "job:ml/ft")
    assert solo[0].seq == 0 and gang[0].seq == 1  # the gang arrived with its first pod
    assert order(pods, [a_queue("gpu", "Priority")], podgroups=[a_podgroup("ft", "gpu")]) == ["ft", "solo"]
    assert order(pods, [], podgroups=[a_podgroup("ft", "gpu")]) == ["solo", "ft"]


def test_queues_count_apart_and_a_job_without_pending_pods_has_no_position() -> None:
    pods = [
        a_pod("a", "01", "a", "gpu"),
        a_pod("b", "02", "b", "cpu"),
        a_pod("c", "03", "c", "gpu"),
        a_pod("run", "00", "run", "gpu", node="n1"),
    ]
    assert position_of("ml", "c", pods, [], [], SCHEDULER) == QueuePosition("gpu", 2, 2, "FIFO")
    assert position_of("ml", "b", pods, [], [], SCHEDULER) == QueuePosition("cpu", 1, 1, "FIFO")
    assert position_of("ml", "run", pods, [], [], SCHEDULER) is None
    assert position_of("other", "a", pods, [], [], SCHEDULER) is None  # names are per namespace


def test_an_unreadable_queue_or_podgroup_leaves_the_default_order() -> None:
    pods = [a_pod("b", "02", "b", "gpu", priority=100), a_pod("a", "01", "a", "gpu")]
    queues = [a_queue("gpu", "Nonsense")]
    bad_group = {"metadata": {"name": "g", "namespace": "ml"}, "spec": {"minMember": -1}}
    assert order(pods, queues, podgroups=[bad_group]) == ["a", "b"]
    assert order(pods, [], default="Priority") == ["b", "a"]  # the scheduler's own default, when known
