"""The simulated DCGM exporter following the real local control plane (`tidescale exporter --kubeconfig`):
its GPUs are the KWOK nodes' `nvidia.com/gpu`, labelled with the pods the scheduler bound there, and a
load set for a Deployment reaches its pods as they come and go. On the session's control plane (`cluster`,
`kube`, `namespace`; `stack` adds the environment's own exporter and Prometheus)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.core.nodepool import POOL_LABEL
from tests.kube_objects import a_deployment
from tests.waiting import wait_for
from tidescale.local import environment, exporter, nodes, prometheus
from tidescale.local.process import stop

pytestmark = pytest.mark.integration

TIMEOUT_S = 60


@dataclass(frozen=True)
class Pool:
    name: str
    taint: str
    nodes: list[str]


@dataclass(frozen=True)
class Series:
    node: str
    gpu: str
    pod: str | None
    namespace: str | None
    util: float
    gr_engine: float


@pytest.fixture
def pool(cluster: environment.Environment) -> Iterator[Pool]:
    """Two KWOK nodes with 2 L40S each, tainted so only this test's pods land there (the control plane
    is shared with other tests)."""
    name = f"exp-{uuid.uuid4().hex[:6]}"
    spec = nodes.NodePoolSpec(
        name=name,
        count=2,
        capacity={"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "2"},
        gpu=nodes.Gpu(model="NVIDIA L40S", memory_mib=46068),
        taints=[nodes.Taint(key="tidescale.io/test", value=name)],
    )
    names = nodes.add(cluster.kubeconfig, spec)
    try:
        yield Pool(name, name, names)
    finally:
        nodes.delete(cluster.kubeconfig, names)


@pytest.fixture
def exporter_url(cluster: environment.Environment, tmp_path: Path) -> Iterator[str]:
    process, url = exporter.start(tmp_path, kubeconfig=cluster.kubeconfig)
    try:
        yield url
    finally:
        stop(process.pid, process.component)


def gpu_deployment(name: str, pool: Pool, replicas: int) -> dict[str, object]:
    return a_deployment(
        name,
        replicas,
        gpus=1,
        node_selector={POOL_LABEL: pool.name},
        tolerations=[{"key": "tidescale.io/test", "operator": "Equal", "value": pool.taint}],
        container="vllm",
        image="vllm/vllm-openai",
    )


def series(url: str, pool: Pool) -> list[Series]:
    """The pool's GPUs as /metrics shows them now."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    values: dict[str, dict[tuple[str, str], float]] = {}
    labels: dict[tuple[str, str], dict[str, str]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_PROF_GR_ENGINE_ACTIVE"):
            continue
        for sample in family.samples:
            if sample.labels["hostname"] not in pool.nodes:
                continue
            key = (sample.labels["hostname"], sample.labels["gpu"])
            values.setdefault(family.name, {})[key] = sample.value
            labels[key] = sample.labels
    return [
        Series(
            node=key[0],
            gpu=key[1],
            pod=labels[key].get("pod"),
            namespace=labels[key].get("namespace"),
            util=values["DCGM_FI_DEV_GPU_UTIL"][key],
            gr_engine=values["DCGM_FI_PROF_GR_ENGINE_ACTIVE"][key],
        )
        for key in sorted(labels)
    ]


def pods_when(
    core: client.CoreV1Api, namespace: str, app: str, *, count: int, without: str | None = None
) -> set[str] | None:
    """The app's running pods once there are `count` of them (and `without` is gone); else None."""
    running = {
        p.metadata.name
        for p in core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
        if p.spec.node_name and p.metadata.deletion_timestamp is None and p.status.phase == "Running"
    }
    return running if len(running) == count and without not in running else None


def test_the_exporter_labels_gpus_with_the_pods_holding_them_and_a_deployment_load_follows_its_pods(
    kube: client.ApiClient, namespace: str, pool: Pool, exporter_url: str
) -> None:
    core = client.CoreV1Api(kube)
    apps = client.AppsV1Api(kube)

    # Four GPUs, nobody on them yet.
    free = wait_for(lambda: len(series(exporter_url, pool)) == 4, TIMEOUT_S, "the pool's 4 GPUs on /metrics")
    assert free
    assert all(s.pod is None and s.util == 0 for s in series(exporter_url, pool))

    # 1. two pods → two GPUs carry their names.
    apps.create_namespaced_deployment(namespace, gpu_deployment("llm", pool, 2))
    pods = wait_for(lambda: pods_when(core, namespace, "llm", count=2), TIMEOUT_S, "2 llm pods")

    def labelled() -> set[str]:
        return {s.pod for s in series(exporter_url, pool) if s.pod is not None and s.namespace == namespace}

    wait_for(lambda: labelled() == pods, TIMEOUT_S, f"GPUs labelled with {sorted(pods)}")

    # 2. a load for the deployment raises its GPUs' utilization, and only theirs.
    answer = exporter.set_load(exporter_url, 0.9, namespace=namespace, deployment="llm")
    assert len(answer["uuids"]) == 2  # type: ignore[arg-type]
    loaded = series(exporter_url, pool)
    assert sorted(s.util for s in loaded) == [0, 0, 90, 90]
    assert all((s.util == 90) == (s.pod in pods) for s in loaded)
    assert all(s.gr_engine > 0.8 for s in loaded if s.pod in pods)

    # 3. scaled to 3: the new pod's GPU carries the load too.
    apps.patch_namespaced_deployment_scale("llm", namespace, {"spec": {"replicas": 3}})
    pods = wait_for(lambda: pods_when(core, namespace, "llm", count=3), TIMEOUT_S, "3 llm pods")

    def loaded_pods() -> set[str]:
        return {s.pod for s in series(exporter_url, pool) if s.pod is not None and s.util == 90}

    wait_for(lambda: loaded_pods() == pods, TIMEOUT_S, f"the load on {sorted(pods)}")

    # 4. a deleted pod's GPU leaves it; its replacement holds a GPU with the same load.
    gone = sorted(pods)[0]
    core.delete_namespaced_pod(gone, namespace, grace_period_seconds=0)
    pods = wait_for(
        lambda: pods_when(core, namespace, "llm", count=3, without=gone), TIMEOUT_S, "a replacement"
    )
    wait_for(lambda: loaded_pods() == pods, TIMEOUT_S, f"the load on {sorted(pods)} (not on {gone})")
    final = series(exporter_url, pool)
    assert gone not in {s.pod for s in final}
    assert [s.util for s in final if s.pod is None] == [0]  # the one free GPU: no pod labels, idle

    apps.delete_namespaced_deployment("llm", namespace)


def test_the_local_environment_wires_the_exporter_to_its_cluster(
    stack: environment.Environment, pool: Pool, namespace: str
) -> None:
    """`up(kubernetes, exporter, prometheus)`: Prometheus sees a DCGM series named after a real pod."""
    core = client.CoreV1Api(config.new_client_from_config(config_file=stack.kubeconfig))
    trainer = {
        "metadata": {"name": "trainer-0"},
        "spec": {
            "nodeSelector": {POOL_LABEL: pool.name},
            "tolerations": [{"key": "tidescale.io/test", "operator": "Equal", "value": pool.taint}],
            "containers": [
                {"name": "main", "image": "pytorch", "resources": {"limits": {"nvidia.com/gpu": "2"}}}
            ],
        },
    }
    core.create_namespaced_pod(namespace, trainer)
    query = f'DCGM_FI_DEV_GPU_UTIL{{pod="trainer-0",namespace="{namespace}"}}'
    result = wait_for(
        lambda: prometheus.query(stack.prometheus_url, query),
        TIMEOUT_S,
        "Prometheus to scrape trainer-0's GPUs",
    )
    metrics: list[dict[str, str]] = [r["metric"] for r in result]
    assert sorted(m["gpu"] for m in metrics) == ["0", "1"]
    assert {(m["namespace"], m["container"]) for m in metrics} == {(namespace, "main")}
    assert {m["hostname"] for m in metrics} <= set(pool.nodes)
