"""A job's phase and views, computed from its objects as the cluster holds them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from jobs.launcher.status import age, event_views, job_view, phase_of, pod_view


def a_pod(
    name: str = "p",
    node: str = "",
    phase: str = "Pending",
    gpus: str = "1",
    annotations: dict[str, str] | None = None,
    scheduled: tuple[str, str] | None = None,
    owner: str = "train",
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if scheduled is not None:
        status["conditions"] = [
            {"type": "PodScheduled", "status": "False", "reason": scheduled[0], "message": scheduled[1]}
        ]
    return {
        "metadata": {
            "name": name,
            "annotations": annotations or {},
            "labels": {"tidescale.io/role": "worker"},
            "ownerReferences": [{"kind": "Job", "name": owner, "controller": True}],
        },
        "spec": {
            "schedulerName": "tidescale",
            "nodeName": node or None,
            "containers": [{"name": "w", "resources": {"limits": {"nvidia.com/gpu": gpus}}}],
        },
        "status": status,
    }


def a_job(
    parallelism: int = 2, completions: int = 2, succeeded: int = 0, **conditions: str
) -> dict[str, Any]:
    return {
        "kind": "Job",
        "metadata": {"name": "train"},
        "spec": {"parallelism": parallelism, "completions": completions},
        "status": {
            "succeeded": succeeded,
            "conditions": [
                {"type": t, "status": s, "message": f"{t} says so"} for t, s in conditions.items()
            ],
        },
    }


def a_deployment(replicas: int = 2, **condition: str) -> dict[str, Any]:
    conds = [{"type": "Progressing", **condition}] if condition else []
    return {
        "kind": "Deployment",
        "metadata": {"name": "llm"},
        "spec": {"replicas": replicas},
        "status": {"conditions": conds},
    }


PHASES = [
    pytest.param(
        "TrainingJob",
        [a_job()],
        [a_pod("a", "n1"), a_pod("b", "n2")],
        "Running",
        "2/2 pods bound",
        id="every pod bound: Running",
    ),
    pytest.param(
        "TrainingJob",
        [a_job()],
        [a_pod("a"), a_pod("b", scheduled=("Unschedulable", "0/3 nodes are available"))],
        "Pending",
        "0/2 pods bound; a: waiting for the scheduler tidescale",
        id="a pod not bound: Pending with the scheduler's word",
    ),
    pytest.param(
        "TrainingJob",
        [a_job()],
        [a_pod("b", scheduled=("Unschedulable", "gang m/train needs 2 of 2"))],
        "Pending",
        "0/2 pods bound; b: Unschedulable: gang m/train needs 2 of 2",
        id="the PodScheduled message of the waiting pod is the reason",
    ),
    pytest.param(
        "TrainingJob",
        [a_job()],
        [a_pod("a", "n1")],
        "Pending",
        "1/2 pods bound; 1 not created yet",
        id="a pod not created yet: Pending",
    ),
    pytest.param(
        "TrainingJob",
        [a_job(Complete="True")],
        [a_pod("a", "n1", "Succeeded")],
        "Succeeded",
        "every pod completed",
        id="a complete Job: Succeeded",
    ),
    pytest.param(
        "BatchJob",
        [a_job(Failed="True")],
        [],
        "Failed",
        "Job/train: Failed says so",
        id="a failed Job: Failed",
    ),
    pytest.param(
        "BatchJob",
        [a_job(parallelism=2, completions=3, succeeded=2)],
        [a_pod("a", "n1", "Succeeded"), a_pod("b", "n1", "Succeeded"), a_pod("c", "n1", "Running")],
        "Running",
        "1/1 pods bound",
        id="only the completions still to go are expected",
    ),
    pytest.param(
        "TrainingJob",
        [a_job()],
        [a_pod("a", "n1", "Succeeded"), a_pod("b", "n2", "Succeeded")],
        "Running",
        "0/0 pods bound",
        id="pods seen Succeeded before the Job's status says so are not missing",
    ),
    pytest.param(
        "InferenceService",
        [a_deployment(2)],
        [a_pod("a", "n1", "Running"), a_pod("b", "n1", "Running")],
        "Running",
        "2/2 pods bound",
        id="a service with every replica bound: Running",
    ),
    pytest.param(
        "InferenceService",
        [a_deployment(2, status="False", reason="ProgressDeadlineExceeded", message="too slow")],
        [],
        "Failed",
        "Deployment/llm: too slow",
        id="a Deployment past its progress deadline: Failed",
    ),
    pytest.param(
        "BatchJob", [], [], "Pending", "its workload does not exist (yet)", id="no workload yet: Pending"
    ),
]


@pytest.mark.parametrize(("kind", "workloads", "pods", "phase", "reason"), PHASES)
def test_the_phase_is_computed_from_the_children(
    kind: str, workloads: list[dict[str, Any]], pods: list[dict[str, Any]], phase: str, reason: str
) -> None:
    assert phase_of(kind, workloads, [pod_view(p) for p in pods]) == (phase, reason)


def test_a_job_being_deleted_is_terminating() -> None:
    assert phase_of("BatchJob", [a_job()], [], deleting=True)[0] == "Terminating"


def test_a_pods_devices_come_from_the_schedulers_annotations() -> None:
    view = pod_view(
        a_pod(
            "a",
            "n1",
            "Running",
            annotations={
                "tidescale.io/node": "n1",
                "tidescale.io/gpus": "2",
                "tidescale.io/gpu-slices": "2:1",
            },
        )
    )
    assert view.devices == {"gpus": "2", "slices": "2:1"}
    assert view.bound_by_tidescale


def test_a_share_of_a_gpu_counts_as_its_fraction() -> None:
    shared = a_pod("a", "n1", gpus="1", annotations={"tidescale.io/vgpu-ratio": "4"})
    assert pod_view(shared).gpus == 0.25


def test_only_the_recent_events_of_the_jobs_objects_are_shown_oldest_first() -> None:
    events = [
        {
            "involvedObject": {"kind": "Pod", "name": "a"},
            "reason": f"R{i}",
            "lastTimestamp": f"2026-01-01T00:00:{i:02d}Z",
        }
        for i in range(12)
    ] + [
        {
            "involvedObject": {"kind": "Pod", "name": "other"},
            "reason": "X",
            "lastTimestamp": "2026-01-01T00:01:00Z",
        }
    ]
    shown = event_views(events, {"a"})
    assert [e.reason for e in shown] == [f"R{i}" for i in range(2, 12)]


def test_a_view_reads_the_root_for_queue_and_scheduler() -> None:
    root = {
        "metadata": {
            "name": "tidescale-job-train",
            "namespace": "ml",
            "labels": {"tidescale.io/job": "train", "tidescale.io/kind": "TrainingJob"},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "data": {"job.json": json.dumps({"spec": {"queue": "research", "schedulerName": "tidescale"}})},
    }
    group = {
        "metadata": {"name": "train"},
        "spec": {"minMember": 2, "queue": "research"},
        "status": {"phase": "Inqueue"},
    }
    view = job_view(root, [a_job()], [a_pod("a"), a_pod("b")], [group])
    assert (view.name, view.namespace, view.kind, view.queue, view.phase) == (
        "train",
        "ml",
        "TrainingJob",
        "research",
        "Pending",
    )
    assert view.podgroup is not None and view.podgroup["phase"] == "Inqueue"
    assert view.gpus_requested == 2 and view.gpus_allocated == 0
    assert view.to_json()["podGroup"]["minMember"] == 2


@pytest.mark.parametrize(
    ("created", "shown"),
    [
        ("2026-01-01T00:00:00Z", "45s"),
        ("2025-12-31T23:50:00Z", "10m"),
        ("2025-12-31T21:00:45Z", "3h"),
        (None, "?"),
    ],
)
def test_age_reads_like_kubectls(created: str | None, shown: str) -> None:
    assert age(created, datetime(2026, 1, 1, 0, 0, 45, tzinfo=UTC)) == shown
