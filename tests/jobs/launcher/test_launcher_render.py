"""A job -> its Kubernetes objects: labels, the one root owner, the scheduler's fields, each kind's shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobs.launcher.kinds import Job
from jobs.launcher.render import OWNER_UID, Defaults, Rendered, render
from tests.jobs.launcher.launcher_builders import a_batch_job, a_service, a_training_job

POLICY = {"maxReplicas": 4, "triggers": [{"type": "GPUUtilization", "target": 70}]}

KINDS = [
    pytest.param(
        a_training_job("train", workers=4, resources={"gpus": 1}), "TrainingJob", id="a training job"
    ),
    pytest.param(
        a_service("llm", replicas=2, resources={"gpus": 1}, scalingPolicy=POLICY),
        "InferenceService",
        id="a service",
    ),
    pytest.param(a_batch_job("etl", completions=3), "BatchJob", id="a batch job"),
]


def _kinds(r: Rendered) -> list[str]:
    return [o["kind"] for o in r.children]


def _templates(r: Rendered) -> list[dict[str, Any]]:
    return [o["spec"]["template"] for o in r.children if o["kind"] in ("Job", "Deployment")]


def _by_kind(r: Rendered, kind: str) -> list[dict[str, Any]]:
    return [o for o in r.children if o["kind"] == kind]


def _env(template: dict[str, Any]) -> dict[str, Any]:
    return {
        e["name"]: e.get("value", e.get("valueFrom"))
        for e in template["spec"]["containers"][0].get("env", [])
    }


@pytest.mark.parametrize(("job", "kind"), KINDS)
def test_every_object_is_labelled_with_the_job_and_its_kind(job: Job, kind: str) -> None:
    r = render(job)
    for obj in r.objects:
        labels = obj["metadata"]["labels"]
        assert labels["tidescale.io/job"] == job.metadata.name
        assert labels["tidescale.io/kind"] == kind
    for template in _templates(r):
        assert template["metadata"]["labels"]["tidescale.io/job"] == job.metadata.name


@pytest.mark.parametrize(("job", "kind"), KINDS)
def test_every_child_is_owned_by_the_one_root_configmap_without_being_controlled(job: Job, kind: str) -> None:
    r = render(job)
    assert r.root["kind"] == "ConfigMap"
    assert r.root["metadata"]["name"] == f"tidescale-job-{job.metadata.name}"
    assert "ownerReferences" not in r.root["metadata"]
    for obj in r.owned_by("uid-1"):
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": f"tidescale-job-{job.metadata.name}",
            "uid": "uid-1",
            "controller": False,
            "blockOwnerDeletion": True,
        }
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == OWNER_UID for o in r.children)  # untouched


@pytest.mark.parametrize(("job", "kind"), KINDS)
def test_every_pod_template_names_the_tidescale_scheduler_and_the_queue(job: Job, kind: str) -> None:
    for template in _templates(render(job)):
        assert template["spec"]["schedulerName"] == "tidescale"
        assert template["metadata"]["annotations"]["scheduling.volcano.sh/queue-name"] == "default"


@pytest.mark.parametrize(("job", "kind"), KINDS)
def test_the_root_holds_the_resolved_document(job: Job, kind: str) -> None:
    r = render(job, Defaults(namespace="team-a", queue="research", scheduler_name="ts-2"))
    doc = json.loads(r.root["data"]["job.json"])
    assert doc["kind"] == kind
    assert doc["metadata"] == {"name": job.metadata.name, "namespace": "team-a", "labels": {}}
    assert (doc["spec"]["queue"], doc["spec"]["schedulerName"]) == ("research", "ts-2")
    assert r.root["metadata"]["labels"]["tidescale.io/queue"] == "research"
    assert {o["metadata"]["namespace"] for o in r.objects} == {"team-a"}


@pytest.mark.parametrize(
    ("spec", "defaults", "expected"),
    [
        pytest.param({}, Defaults(), ("default", "default", "tidescale"), id="nothing set: the defaults"),
        pytest.param(
            {}, Defaults("ns", "q", "s"), ("ns", "q", "s"), id="the flags fill what the document leaves out"
        ),
        pytest.param(
            {"queue": "doc-q", "schedulerName": "doc-s"},
            Defaults("ns", "q", "s"),
            ("ns", "doc-q", "doc-s"),
            id="the document wins over the flags",
        ),
    ],
)
def test_namespace_queue_and_scheduler_come_from_the_document_else_the_flags(
    spec: dict[str, Any], defaults: Defaults, expected: tuple[str, str, str]
) -> None:
    r = render(a_batch_job(**spec), defaults)
    (template,) = _templates(r)
    got = (
        r.namespace,
        template["metadata"]["annotations"]["scheduling.volcano.sh/queue-name"],
        template["spec"]["schedulerName"],
    )
    assert got == expected


def test_a_training_job_is_a_podgroup_a_headless_service_and_an_indexed_job() -> None:
    r = render(a_training_job("ft", workers=4, resources={"gpus": 2}, command=["torchrun", "t.py"]))
    assert _kinds(r) == ["PodGroup", "Service", "Job"]
    (group,) = _by_kind(r, "PodGroup")
    assert group["apiVersion"] == "scheduling.volcano.sh/v1beta1"
    assert group["spec"] == {"minMember": 4, "queue": "default"}
    (service,) = _by_kind(r, "Service")
    assert service["metadata"]["name"] == "ft"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"tidescale.io/job": "ft"}
    (job,) = _by_kind(r, "Job")
    assert job["spec"]["completionMode"] == "Indexed"
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (4, 4)
    template = job["spec"]["template"]
    assert template["spec"]["subdomain"] == "ft"
    assert template["spec"]["restartPolicy"] == "Never"
    assert template["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == "ft"
    assert template["spec"]["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": "2"}}
    assert _env(template) == {
        "MASTER_ADDR": "ft-0.ft",
        "MASTER_PORT": "29500",
        "WORLD_SIZE": "4",
        "RANK": {
            "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
        },
    }


@pytest.mark.parametrize(
    ("spec", "min_member"),
    [
        pytest.param({}, 4, id="all workers by default"),
        pytest.param({"minAvailable": 3}, 3, id="minAvailable when given"),
        pytest.param({"master": {}, "command": ["t"]}, 5, id="the master counts"),
    ],
)
def test_the_gangs_min_member_is_min_available_else_every_pod(spec: dict[str, Any], min_member: int) -> None:
    (group,) = _by_kind(render(a_training_job(workers=4, **spec)), "PodGroup")
    assert group["spec"]["minMember"] == min_member


def test_a_training_job_without_a_gang_has_no_podgroup_and_no_group_annotation() -> None:
    r = render(a_training_job(workers=2, gang=False))
    assert _kinds(r) == ["Service", "Job"]
    (template,) = _templates(r)
    assert "scheduling.k8s.io/group-name" not in template["metadata"]["annotations"]


def test_a_master_is_rank_zero_on_its_own_host_and_the_workers_count_from_one() -> None:
    job = a_training_job(
        "ft", workers=2, command=["python", "t.py"], args=["--lr", "1"], master={"resources": {"cpu": 4}}
    )
    r = render(job)
    assert [o["metadata"]["name"] for o in _by_kind(r, "Job")] == ["ft-master", "ft"]
    master, workers = (o["spec"]["template"] for o in _by_kind(r, "Job"))
    assert master["spec"]["hostname"] == "ft-master" and master["spec"]["subdomain"] == "ft"
    assert master["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "4"}}
    assert master["spec"]["containers"][0]["command"] == ["python", "t.py"]
    assert _env(master) == {
        "MASTER_ADDR": "ft-master.ft",
        "MASTER_PORT": "29500",
        "WORLD_SIZE": "3",
        "RANK": "0",
    }
    assert _env(workers) == {"MASTER_ADDR": "ft-master.ft", "MASTER_PORT": "29500", "WORLD_SIZE": "3"}
    container = workers["spec"]["containers"][0]
    assert container["command"][:2] == ["sh", "-c"]
    assert "RANK=$((JOB_COMPLETION_INDEX + 1))" in container["command"][2]
    assert container["command"][4:] == ["python", "t.py", "--lr", "1"]
    assert "args" not in container


def test_an_environment_variable_the_user_sets_replaces_the_launchers() -> None:
    (template,) = _templates(render(a_training_job(workers=2, env={"MASTER_PORT": "1234", "A": "b"})))
    env = template["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == ["MASTER_ADDR", "WORLD_SIZE", "RANK", "MASTER_PORT", "A"]
    assert _env(template)["MASTER_PORT"] == "1234"


def test_an_inference_service_is_a_deployment_a_service_and_its_scaling_policy() -> None:
    r = render(
        a_service("llm", replicas=3, port=9000, resources={"vgpu": {"ratio": 4}}, scalingPolicy=POLICY)
    )
    assert _kinds(r) == ["Deployment", "Service", "ScalingPolicy"]
    (deployment,) = _by_kind(r, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["selector"] == {"matchLabels": {"tidescale.io/job": "llm"}}
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["tidescale.io/vgpu-ratio"] == "4"
    assert "scheduling.k8s.io/group-name" not in template["metadata"]["annotations"]
    assert template["spec"]["containers"][0]["ports"] == [{"name": "http", "containerPort": 9000}]
    (service,) = _by_kind(r, "Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 9000, "targetPort": 9000}]
    (policy,) = _by_kind(r, "ScalingPolicy")
    assert policy["apiVersion"] == "tidescale.io/v1alpha1"
    assert policy["spec"]["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"}
    assert policy["spec"]["podRequests"] == {"nvidia.com/gpu": "1"}  # from the service's resources
    assert policy["spec"]["maxReplicas"] == 4


def test_a_service_without_a_policy_creates_none() -> None:
    assert _kinds(render(a_service())) == ["Deployment", "Service"]


def test_a_policys_own_pod_requests_are_kept() -> None:
    r = render(
        a_service(resources={"gpus": 2}, scalingPolicy=POLICY | {"podRequests": {"nvidia.com/gpu": 1}})
    )
    (policy,) = _by_kind(r, "ScalingPolicy")
    assert policy["spec"]["podRequests"] == {"nvidia.com/gpu": 1}


def test_a_batch_job_is_one_plain_job() -> None:
    r = render(a_batch_job("etl", completions=6, parallelism=2, backoffLimit=1, command=["python", "etl.py"]))
    (job,) = r.children
    assert job["kind"] == "Job"
    assert "completionMode" not in job["spec"]
    assert (job["spec"]["completions"], job["spec"]["parallelism"], job["spec"]["backoffLimit"]) == (6, 2, 1)
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["python", "etl.py"]


def test_placement_fields_reach_the_pod_template() -> None:
    job = a_batch_job(
        priority="high",
        nodeSelector={"pool": "h100"},
        tolerations=[{"key": "gpu", "operator": "Exists"}],
        annotations={"nvidia.com/use-gputype": "H100"},
    )
    (template,) = _templates(render(job))
    spec = template["spec"]
    assert spec["priorityClassName"] == "high"
    assert spec["nodeSelector"] == {"pool": "h100"}
    assert spec["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert template["metadata"]["annotations"]["nvidia.com/use-gputype"] == "H100"
