"""The launcher on the real local control plane with KWOK nodes and the tidescale scheduler in-process.

Each test has its own namespace, nodes (a label only its scheduler selects) and scheduler (its own name,
which the submitted pods name), as in tests/jobs/scheduler/test_scheduler_on_cluster.py whose harness it
reuses. KWOK runs no containers: placement is asserted, not execution (Job pods complete at once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from autoscaler.api.policy import ScalingPolicy
from jobs.launcher.client import (
    JobExists,
    SubmitFailed,
    delete_job,
    get_job,
    list_jobs,
    logs,
    submit,
)
from jobs.launcher.kinds import parse_jobs
from jobs.launcher.queueing import QueuePosition
from kernel.clock import SYSTEM_CLOCK
from tests.cluster_harness import Harness
from tests.waiting import wait_for
from tidescale.cli import main

pytestmark = pytest.mark.integration

HEAD = "apiVersion: tidescale.io/v1alpha1\n"
JOB = "tidescale.io/job"
VOLCANO = ("scheduling.volcano.sh", "v1beta1")

TRAINING = (
    HEAD
    + """kind: TrainingJob
metadata: {name: ft}
spec:
  image: trainer:1
  command: [torchrun, train.py]
  workers: 4
  resources: {cpu: "4", memory: 16Gi, gpus: 2}
"""
)
INFERENCE = (
    HEAD
    + """kind: InferenceService
metadata: {name: llm}
spec:
  image: vllm:1
  replicas: 3
  resources: {cpu: "2", memory: 8Gi, vgpu: {ratio: 4}}
  scalingPolicy:
    minReplicas: 1
    maxReplicas: 6
    triggers: [{type: GPUUtilization, target: 70}]
"""
)
SHARED = (
    HEAD
    + """kind: InferenceService
metadata: {name: embed}
spec:
  image: embedder:1
  replicas: 3
  resources: {cpu: "2", memory: 8Gi, gpuShare: {memoryMiB: 12000, cores: 30}}
"""
)
HAMI_NODE = {"nvidia.com/gpu": "40", "nvidia.com/gpumem": "184272", "nvidia.com/gpucores": "400"}
WHOLE_NODE = {"nvidia.com/gpu": "4"}
BATCH = (
    HEAD
    + """kind: BatchJob
metadata: {name: etl}
spec:
  image: etl:1
  command: [python, etl.py]
  completions: 4
  parallelism: 2
  resources: {cpu: "1", gpus: 1}
"""
)


def labelled(h: Harness, name: str) -> list[str]:
    """Every object in the namespace that carries the job's label, read with the typed clients."""
    api = h.core.api_client
    selector = f"{JOB}={name}"
    found = []
    lists = [
        ("ConfigMap", h.core.list_namespaced_config_map),
        ("Pod", h.core.list_namespaced_pod),
        ("Service", h.core.list_namespaced_service),
        ("Job", client.BatchV1Api(api).list_namespaced_job),
        ("Deployment", client.AppsV1Api(api).list_namespaced_deployment),
        ("ReplicaSet", client.AppsV1Api(api).list_namespaced_replica_set),
    ]
    for kind, call in lists:
        found += [f"{kind}/{o.metadata.name}" for o in call(h.ns, label_selector=selector).items]
    for group, version, plural in (
        (*VOLCANO, "podgroups"),
        ("tidescale.io", "v1alpha1", "scalingpolicies"),
    ):
        items = h.custom.list_namespaced_custom_object(group, version, h.ns, plural, label_selector=selector)
        found += [f"{plural}/{o['metadata']['name']}" for o in items["items"]]
    return found


def job_pods(h: Harness, name: str) -> list[Any]:
    return list(h.core.list_namespaced_pod(h.ns, label_selector=f"{JOB}={name}").items)


def assert_bound_by_tidescale(h: Harness, pods: list[Any]) -> None:
    assert pods
    for p in pods:
        assert p.spec.scheduler_name == h.name, f"{p.metadata.name} names {p.spec.scheduler_name}"
        assert p.spec.node_name, f"{p.metadata.name} is not bound"
        # the binding came with tidescale's device annotations, written only by our binder
        assert p.metadata.annotations.get("tidescale.io/node") == p.spec.node_name


# -- each kind, end to end -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "kind", "pods", "children", "capacity"),
    [
        pytest.param(
            TRAINING,
            "ft",
            "TrainingJob",
            4,
            ["PodGroup/ft", "Service/ft", "Job/ft"],
            WHOLE_NODE,
            id="training",
        ),
        pytest.param(
            INFERENCE,
            "llm",
            "InferenceService",
            3,
            ["Deployment/llm", "Service/llm", "ScalingPolicy/llm"],
            WHOLE_NODE,
            id="inference on vGPU slices",
        ),
        pytest.param(
            SHARED,
            "embed",
            "InferenceService",
            3,
            ["Deployment/embed", "Service/embed"],
            HAMI_NODE,
            id="inference on HAMi-shared GPUs",
        ),
        pytest.param(BATCH, "etl", "BatchJob", 4, ["Job/etl"], WHOLE_NODE, id="batch"),
    ],
)
def test_each_kind_is_submitted_listed_inspected_and_deleted_leaving_nothing(
    h: Harness, text: str, name: str, kind: str, pods: int, children: list[str], capacity: dict[str, str]
) -> None:
    h.add_nodes(2, dict(capacity))
    h.start()
    api = h.core.api_client
    jobs = parse_jobs(text, "job.yaml", ScalingPolicy)
    (done,) = submit(api, jobs, namespace=h.ns, scheduler_name=h.name, wait=True, timeout=60)
    assert done.objects == (f"ConfigMap/tidescale-job-{name}", *children)
    assert done.view is not None and done.view.phase in ("Running", "Succeeded"), done.view

    # every pod, over the job's life, bound by tidescale (Job pods stay after they complete)
    wait_for(
        lambda: len([p for p in job_pods(h, name) if p.spec.node_name]) >= pods, 60, f"{pods} pods bound"
    )
    assert_bound_by_tidescale(h, job_pods(h, name))

    (listed,) = list_jobs(api, h.ns)
    assert (listed.name, listed.kind, listed.queue) == (name, kind, "default")
    assert listed.phase in ("Running", "Succeeded")
    view = get_job(api, name, h.ns)
    assert view.scheduler == h.name
    assert {p.node for p in view.pods} <= set(h.nodes)
    assert all(p.devices.get("gpus") for p in view.pods), view.pods  # the GPU each holds
    if kind == "TrainingJob":
        assert view.podgroup is not None and view.podgroup["minMember"] == 4
    if kind == "InferenceService":
        assert view.phase == "Running"
    if name == "llm":
        assert all(p.devices.get("slices") for p in view.pods)  # quarter slices, slot by slot
    assert view.events  # the recent ones, of its pods, PodGroup and workloads
    for p in view.pods:  # each binding reported by the tidescale scheduler
        wait_for(lambda p=p: "Scheduled" in h.event_reasons(p.name), 15, f"Scheduled event on {p.name}")

    delete_job(api, name, h.ns, wait=True, timeout=60)
    assert labelled(h, name) == []
    assert list_jobs(api, h.ns) == []


def test_the_cli_submits_lists_gets_and_deletes_with_json(
    h: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    h.add_nodes(3, {"nvidia.com/gpu": "4"})  # the gang's 8 GPUs beside the service's slices
    h.start()
    path = tmp_path / "jobs.yaml"
    path.write_text(TRAINING + "---\n" + INFERENCE)
    flags = ["-n", h.ns, "--kubeconfig", h.kubeconfig]
    assert (
        main(["submit", str(path), *flags, "--scheduler", h.name, "--wait", "--timeout", "60", "--json"]) == 0
    )
    submitted = json.loads(capsys.readouterr().out)
    assert [j["name"] for j in submitted["jobs"]] == ["ft", "llm"]
    assert main(["jobs", "list", *flags, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["jobs"]
    assert [(j["name"], j["kind"]) for j in listed] == [("ft", "TrainingJob"), ("llm", "InferenceService")]
    assert main(["jobs", "list", *flags]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[:4] == ["NAME", "KIND", "STATUS", "QUEUE"]
    assert main(["jobs", "get", "llm", *flags, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["phase"] == "Running" and len(got["pods"]) == 3
    assert main(["jobs", "get", "ft", *flags]) == 0
    assert "Kind:        TrainingJob" in capsys.readouterr().out
    # KWOK runs no container: a sentence, exit 1, no traceback
    assert main(["jobs", "logs", "llm", *flags]) == 1
    err = capsys.readouterr().err
    assert "no logs (the pod runs on a KWOK node)" in err and "Traceback" not in err
    assert main(["jobs", "get", "nope", *flags]) == 1
    assert "no job 'nope'" in capsys.readouterr().err
    for name in ("ft", "llm"):
        assert main(["jobs", "delete", name, *flags]) == 0
        assert labelled(h, name) == []


def test_logs_of_a_pod_on_a_kwok_node_say_there_are_none(h: Harness) -> None:
    from jobs.launcher.client import NoLogs

    h.add_nodes(1, {"nvidia.com/gpu": "4"})
    h.start()
    api = h.core.api_client
    submit(api, parse_jobs(INFERENCE), namespace=h.ns, scheduler_name=h.name, wait=True, timeout=60)
    with pytest.raises(NoLogs, match=r"no logs \(the pod runs on a KWOK node\)"):
        list(logs(api, "llm", h.ns))


# -- gangs ---------------------------------------------------------------------------------------------


def test_a_training_job_that_does_not_fit_stays_whole_pending_and_starts_whole_when_a_node_is_added(
    h: Harness,
) -> None:
    h.add_nodes(3, {"nvidia.com/gpu": "2"})  # 6 GPUs for 4 workers of 2
    h.start()
    api = h.core.api_client
    submit(api, parse_jobs(TRAINING), namespace=h.ns, scheduler_name=h.name)
    wait_for(lambda: h.podgroup_status("ft").get("phase") == "Inqueue", 30, "PodGroup ft Inqueue")
    wait_for(lambda: len(job_pods(h, "ft")) == 4, 30, "the Job controller creates 4 pods")
    SYSTEM_CLOCK.sleep(2.0)  # give the scheduler time to (wrongly) bind part of the gang
    assert [p.metadata.name for p in job_pods(h, "ft") if p.spec.node_name] == []
    view = wait_for(
        lambda: (v := get_job(api, "ft", h.ns)).reason.count("only 3 fit") and v, 30, "the gang's reason"
    )
    assert view.phase == "Pending"
    assert view.reason.startswith("0/4 pods bound; ft-0-")
    assert view.podgroup is not None and view.podgroup["phase"] == "Inqueue"

    h.add_nodes(1, {"nvidia.com/gpu": "2"})
    wait_for(lambda: len([p for p in job_pods(h, "ft") if p.spec.node_name]) == 4, 30, "all 4 workers bound")
    pods = job_pods(h, "ft")
    assert_bound_by_tidescale(h, pods)
    assert sorted(p.spec.node_name for p in pods) == sorted(h.nodes)  # 2 GPUs each: one worker per node
    delete_job(api, "ft", h.ns, wait=True, timeout=60)
    assert labelled(h, "ft") == []


# -- bad input loses nothing -------------------------------------------------------------------------


def test_an_invalid_file_creates_nothing(
    h: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(BATCH + "---\n" + TRAINING.replace("workers: 4", "workers: 0"))
    assert main(["submit", str(path), "-n", h.ns, "--kubeconfig", h.kubeconfig]) == 2
    assert "[document 2] spec.workers" in capsys.readouterr().err
    assert labelled(h, "etl") == [] and labelled(h, "ft") == []


def test_a_failure_half_way_removes_what_was_created_and_names_the_object(h: Harness) -> None:
    h.add_nodes(1, {"nvidia.com/gpu": "8"})
    h.start()
    api = h.core.api_client
    # somebody else's Service holds the name the training job's headless Service needs
    h.core.create_namespaced_service(h.ns, {"metadata": {"name": "ft"}, "spec": {"ports": [{"port": 80}]}})
    jobs = parse_jobs(BATCH + "---\n" + TRAINING)
    with pytest.raises(SubmitFailed) as e:
        submit(api, jobs, namespace=h.ns, scheduler_name=h.name)
    message = str(e.value)
    assert message.startswith(
        f"TrainingJob ft: Service/ft in namespace {h.ns} was not created: 409 AlreadyExists"
    )
    assert "removed what was created (PodGroup/ft, ConfigMap/tidescale-job-ft, Job/etl," in message
    wait_for(lambda: labelled(h, "ft") == [] and labelled(h, "etl") == [], 60, "nothing left of either job")
    assert h.core.read_namespaced_service("ft", h.ns).metadata.name == "ft"  # theirs is untouched


def test_a_name_that_exists_is_refused_unless_replace(h: Harness) -> None:
    h.add_nodes(1, {"nvidia.com/gpu": "8"})
    h.start()
    api = h.core.api_client
    (first,) = submit(api, parse_jobs(BATCH), namespace=h.ns, scheduler_name=h.name)
    with pytest.raises(JobExists, match=r"a job named etl .* exists already"):
        submit(api, parse_jobs(BATCH.replace("completions: 4", "completions: 2")), namespace=h.ns)
    job = client.BatchV1Api(api).read_namespaced_job("etl", h.ns)
    assert job.spec.completions == 4  # untouched
    replacement = parse_jobs(BATCH.replace("completions: 4", "completions: 2"))
    (second,) = submit(api, replacement, namespace=h.ns, scheduler_name=h.name, replace=True, timeout=60)
    assert second.uid != first.uid
    job = client.BatchV1Api(api).read_namespaced_job("etl", h.ns)
    assert job.spec.completions == 2
    assert job.metadata.owner_references[0].uid == second.uid
    wait_for(lambda: len([p for p in job_pods(h, "etl") if p.spec.node_name]) >= 2, 30, "the new pods bound")
    assert_bound_by_tidescale(h, job_pods(h, "etl"))


# -- the benchmark -----------------------------------------------------------------------------------


def test_the_launcher_benchmark_prints_submit_to_bound_as_its_last_line(
    cluster: Any, volcano_crds: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    argv = ["bench", "launcher", "--kubeconfig", cluster.kubeconfig, "--nodes", "3", "--workers", "2"]
    assert main([*argv, "--runs", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["runs"] == 2
    assert 0 < result["submit_to_bound_seconds"]["p50"] <= result["submit_to_bound_seconds"]["p99"]
    assert result["peak_rss_mib"] > 0


# -- the queue -----------------------------------------------------------------------------------------


def test_a_pending_job_shows_its_place_in_its_queue_as_the_scheduler_orders_it(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    h.add_nodes(1, {"nvidia.com/gpu": "2"})  # every job below asks 4 GPUs: none fits, all stay pending
    h.start()
    api = h.core.api_client
    queue = h.queue("gpu", annotations={"tidescale.io/queue-policy": "Priority"})
    other = h.queue("cpu")
    scheduling = client.SchedulingV1Api(api)
    urgent = f"{h.ns}-urgent"
    scheduling.create_priority_class({"metadata": {"name": urgent}, "value": 1000})
    try:

        def batch(name: str, in_queue: str, priority: str | None = None) -> None:
            text = BATCH.replace("name: etl", f"name: {name}").replace("completions: 4", "completions: 1")
            text = text.replace("parallelism: 2", "parallelism: 1").replace("gpus: 1", "gpus: 4")
            text += f"  queue: {in_queue}\n" + (f"  priority: {priority}\n" if priority else "")
            submit(api, parse_jobs(text), namespace=h.ns, scheduler_name=h.name)
            # one at a time, so that each job's pod is younger than the one before
            wait_for(lambda: job_pods(h, name), 30, f"the pod of {name}")
            SYSTEM_CLOCK.sleep(1.1)  # creation times have whole seconds

        batch("first", queue)
        batch("second", queue)
        batch("elsewhere", other)
        batch("urgent", queue, urgent)
        wait_for(
            lambda: get_job(api, "second", h.ns).reason.count("Unschedulable"), 30, "the scheduler's reason"
        )

        # Priority: the urgent one first, then the others oldest first; the other queue counts apart
        positions = {}
        for name in ("first", "second", "urgent", "elsewhere"):
            assert main(["jobs", "get", name, "-n", h.ns, "--kubeconfig", h.kubeconfig, "--json"]) == 0
            got = json.loads(capsys.readouterr().out)
            assert got["phase"] == "Pending"
            positions[name] = got["queuePosition"]
        assert positions["urgent"] == {"queue": queue, "position": 1, "pending": 3, "policy": "Priority"}
        assert positions["first"] == {"queue": queue, "position": 2, "pending": 3, "policy": "Priority"}
        assert positions["second"] == {"queue": queue, "position": 3, "pending": 3, "policy": "Priority"}
        assert positions["elsewhere"] == {"queue": other, "position": 1, "pending": 1, "policy": "FIFO"}
        assert main(["jobs", "get", "second", "-n", h.ns, "--kubeconfig", h.kubeconfig]) == 0
        assert f"Queue:       {queue} (position 3 of 3 pending)" in capsys.readouterr().out.splitlines()

        # the one ahead leaves: the others move up
        delete_job(api, "urgent", h.ns, wait=True, timeout=60)
        assert get_job(api, "second", h.ns).position == QueuePosition(queue, 2, 2, "Priority")
        for name in ("first", "second", "elsewhere"):
            delete_job(api, name, h.ns, wait=True, timeout=60)
    finally:
        scheduling.delete_priority_class(urgent)
