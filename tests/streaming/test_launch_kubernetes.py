"""Native submission on the real local control plane: PySpark's own `spark-submit --master k8s://…` and
PyFlink's own `flink run --target kubernetes-application` create the driver pod and the JobManager
Deployment, and the tidescale scheduler — running in-process over this test's KWOK nodes — binds their
pods in the job's PodGroup and queue. KWOK runs no containers: these tests assert placement, not
execution. Deleting the job leaves nothing behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from kubernetes import client, config

from autoscaler.controller.pools.node_manifest import kwok_node
from jobs.scheduler.config import SchedulerConfig
from jobs.scheduler.wiring import Options, Running
from streaming import launch
from tests.cluster_harness import leftovers
from tests.waiting import wait_for
from tidescale.local import nodes as local_nodes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "pipelines" / "llm-preprocessor.yaml"
VOLCANO = ("scheduling.volcano.sh", "v1beta1")
PARTITION = "tidescale.io/test-partition"
GROUP = "scheduling.k8s.io/group-name"
QUEUE = "scheduling.volcano.sh/queue-name"


@dataclass(frozen=True)
class Scheduling:
    scheduler_name: str
    queue: str
    nodes: tuple[str, ...]


@pytest.fixture
def tidescale(cluster: Any, kube: Any, namespace: str, volcano_crds: None) -> Iterator[Scheduling]:
    """Two KWOK nodes only this test's scheduler selects, a Volcano Queue, and the scheduler itself."""
    core, custom = client.CoreV1Api(kube), client.CustomObjectsApi(kube)
    nodes = tuple(f"{namespace}-n{i}" for i in range(2))
    for name in nodes:
        labels = {PARTITION: namespace}
        core.create_node(kwok_node(name, labels, {"cpu": "32", "memory": "128Gi", "pods": "110"}))
    queue = f"{namespace}-q"
    custom.create_cluster_custom_object(
        *VOLCANO, "queues", {"apiVersion": "/".join(VOLCANO), "kind": "Queue", "metadata": {"name": queue}}
    )
    running: Running | None = None
    try:
        local_nodes.wait_ready(cluster.kubeconfig, list(nodes), 60)
        scheduler = SchedulerConfig(scheduler_name=f"ts-{namespace}", node_selector={PARTITION: namespace})
        running = Running(
            Options(kubeconfig=cluster.kubeconfig, config=scheduler, leader_elect=False)
        ).start()
        yield Scheduling(scheduler.scheduler_name, queue, nodes)
    finally:
        if running is not None:
            running.stop()
        custom.delete_cluster_custom_object(*VOLCANO, "queues", queue)
        for name in nodes:
            core.delete_node(name)


def bound_by_tidescale(pod: Any, scheduling: Scheduling) -> bool:
    return bool(
        pod.spec.node_name in scheduling.nodes and (pod.metadata.annotations or {}).get("tidescale.io/node")
    )


def owned_config_maps(kube: Any, namespace: str, owner_uid: str) -> list[Any]:
    return [
        c
        for c in client.CoreV1Api(kube).list_namespaced_config_map(namespace).items
        if any(r.uid == owner_uid for r in c.metadata.owner_references or [])
    ]


def assert_pod_group(kube: Any, namespace: str, job: str, queue: str, owner: tuple[str, str, str]) -> None:
    group = client.CustomObjectsApi(kube).get_namespaced_custom_object(*VOLCANO, namespace, "podgroups", job)
    assert group["spec"]["minMember"] == 1 and group["spec"]["queue"] == queue
    assert group["metadata"]["labels"]["tidescale.io/kind"] == "Pipeline"
    [reference] = group["metadata"]["ownerReferences"]
    assert (reference["kind"], reference["name"], reference["uid"]) == owner


def test_spark_submit_creates_a_driver_pod_that_tidescale_binds_in_the_jobs_pod_group_and_queue(
    cluster: Any, kube: Any, namespace: str, tidescale: Scheduling
) -> None:
    core = client.CoreV1Api(kube)

    result = launch.submit_pipeline(
        EXAMPLE,
        "spark",
        kubeconfig=cluster.kubeconfig,
        namespace=namespace,
        scheduler_name=tidescale.scheduler_name,
        queue=tidescale.queue,
        image="apache/spark:4.1.1",
        job_name="prep",
    )

    assert result.root == ("Pod", "prep-driver") and not result.dry_run
    assert result.objects == (
        "ServiceAccount/prep",
        "Role/prep",
        "RoleBinding/prep",
        "PodGroup/prep",
        "Pod/prep-driver",
    )
    driver = wait_for(
        lambda: next(
            (
                p
                for p in [core.read_namespaced_pod("prep-driver", namespace)]
                if bound_by_tidescale(p, tidescale)
            ),
            None,
        ),
        60,
        "the driver pod bound by tidescale",
    )
    assert driver.spec.scheduler_name == tidescale.scheduler_name
    assert driver.spec.service_account_name == "prep"
    assert driver.metadata.annotations[GROUP] == "prep"
    assert driver.metadata.annotations[QUEUE] == tidescale.queue
    assert driver.metadata.labels["tidescale.io/job"] == "prep"
    assert driver.metadata.labels["tidescale.io/kind"] == "Pipeline"
    assert driver.metadata.labels["spark-role"] == "driver"
    assert_pod_group(kube, namespace, "prep", tidescale.queue, ("Pod", "prep-driver", driver.metadata.uid))
    # the executor pod template Spark keeps for the driver carries the scheduler, PodGroup and queue too
    templates = [
        text
        for c in owned_config_maps(kube, namespace, driver.metadata.uid)
        for text in (c.data or {}).values()
        if text.startswith("apiVersion: v1\nkind: Pod")
    ]
    assert templates and all(
        f"schedulerName: {tidescale.scheduler_name}" in t and f"{GROUP}: prep" in t and tidescale.queue in t
        for t in templates
    )

    deleted = launch.delete_pipeline("prep", kubeconfig=cluster.kubeconfig, namespace=namespace)

    assert "Pod/prep-driver" in deleted and "PodGroup/prep" in deleted
    assert any(d.startswith("Service/prep-") for d in deleted)  # Spark's driver service, found by owner
    wait_for(lambda: not leftovers(kube, namespace), 60, "nothing left of the spark job")


def test_flink_run_creates_a_jobmanager_deployment_whose_pod_tidescale_binds_in_the_pod_group_and_queue(
    cluster: Any, kube: Any, namespace: str, tidescale: Scheduling
) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)

    result = launch.submit_pipeline(
        EXAMPLE,
        "flink",
        kubeconfig=cluster.kubeconfig,
        namespace=namespace,
        scheduler_name=tidescale.scheduler_name,
        queue=tidescale.queue,
        image="flink:2.2.0",
        job_name="prep",
    )

    assert result.root == ("Deployment", "prep")
    deployment = apps.read_namespaced_deployment("prep", namespace)
    assert deployment.metadata.labels["tidescale.io/job"] == "prep"  # the root is found by its labels
    jobmanager = wait_for(
        lambda: next(
            (
                p
                for p in core.list_namespaced_pod(
                    namespace, label_selector="app=prep,component=jobmanager"
                ).items
                if bound_by_tidescale(p, tidescale)
            ),
            None,
        ),
        90,
        "the JobManager pod (Deployment → ReplicaSet → pod) bound by tidescale",
    )
    assert jobmanager.spec.scheduler_name == tidescale.scheduler_name
    assert jobmanager.spec.service_account_name == "prep"
    assert jobmanager.metadata.annotations[GROUP] == "prep"
    assert jobmanager.metadata.annotations[QUEUE] == tidescale.queue
    assert jobmanager.metadata.labels["tidescale.io/kind"] == "Pipeline"
    assert_pod_group(
        kube, namespace, "prep", tidescale.queue, ("Deployment", "prep", deployment.metadata.uid)
    )
    # the TaskManager pod template the JobManager will use carries them too
    [template] = [
        c
        for c in owned_config_maps(kube, namespace, deployment.metadata.uid)
        if c.metadata.name == "pod-template-prep"
    ]
    text = next(iter(template.data.values()))
    assert f"schedulerName: {tidescale.scheduler_name}" in text and f"{GROUP}: prep" in text

    # a second submission of the same name is refused before anything runs
    with pytest.raises(launch.PipelineExists, match="prep exists"):
        launch.submit_pipeline(
            EXAMPLE, "flink", kubeconfig=cluster.kubeconfig, namespace=namespace, job_name="prep"
        )

    deleted = launch.delete_pipeline("prep", kubeconfig=cluster.kubeconfig, namespace=namespace)

    assert {"Deployment/prep", "PodGroup/prep", "Service/prep-rest", "ConfigMap/flink-config-prep"} <= set(
        deleted
    )
    wait_for(lambda: not leftovers(kube, namespace), 60, "nothing left of the flink job")


def pkcs8_kubeconfig(kubeconfig: str, directory: Path) -> str:
    """The same kubeconfig with its client key re-encoded as PKCS#8 (`BEGIN PRIVATE KEY`)."""
    text = Path(kubeconfig).read_text()
    key_path = next(line.split(":", 1)[1].strip() for line in text.splitlines() if "client-key:" in line)
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), None)
    pkcs8 = directory / "admin-pkcs8.key"
    pkcs8.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    changed = directory / "pkcs8.kubeconfig"
    changed.write_text(text.replace(key_path, str(pkcs8)))
    return str(changed)


@pytest.mark.parametrize("engine", ["spark", "flink"])
def test_a_pkcs8_client_key_is_refused_by_the_engines_client_and_the_submission_leaves_nothing(
    engine: str, cluster: Any, kube: Any, namespace: str, volcano_crds: None, tmp_path: Path
) -> None:
    """Why the local environment writes SEC1 keys: fabric8 (inside both clients) cannot read an EC key in
    PKCS#8, which the Python and Go clients read. The failure names the engine and the reason, and what
    was created before the client ran is removed."""
    kubeconfig = pkcs8_kubeconfig(cluster.kubeconfig, tmp_path)
    python_client = config.new_client_from_config(config_file=kubeconfig)
    client.CoreV1Api(python_client).list_namespaced_pod(namespace)  # the Python client reads it

    with pytest.raises(launch.LaunchFailed) as failed:
        launch.submit_pipeline(EXAMPLE, engine, kubeconfig=kubeconfig, namespace=namespace, job_name="prep")

    assert failed.value.engine == engine
    assert str(failed.value).startswith(f"{engine}: ")
    assert "Invalid DER: object is not integer" in failed.value.reason
    assert failed.value.command and "Invalid DER" in failed.value.output
    assert leftovers(kube, namespace) == []


def test_pipeline_submit_on_the_command_line_prints_what_it_created_and_a_second_time_refuses(
    cluster: Any, kube: Any, namespace: str, volcano_crds: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from tidescale.cli import main

    argv = ["pipeline", "submit", str(EXAMPLE), "--engine", "flink", "--kubeconfig", cluster.kubeconfig]
    argv += ["--namespace", namespace, "--name", "cli", "--image", "flink:2.2.0"]
    try:
        assert main([*argv, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["root"] == {"kind": "Deployment", "name": "cli"} and out["dryRun"] is False
        assert (
            client.AppsV1Api(kube)
            .read_namespaced_deployment("cli", namespace)
            .metadata.labels["tidescale.io/job"]
            == "cli"
        )

        assert main(argv) == 1
        assert f"pipeline {namespace}/cli exists" in capsys.readouterr().err
    finally:
        launch.delete_pipeline("cli", kubeconfig=cluster.kubeconfig, namespace=namespace)
    wait_for(lambda: not leftovers(kube, namespace), 60, "nothing left of the job")
