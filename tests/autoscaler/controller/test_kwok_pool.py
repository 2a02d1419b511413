"""The KWOK node-pool provider on the real control plane: nodes it adds become Ready with the pool's GPUs,
pods landing on them count as GPUs requested, and removal drains through evictions that respect
PodDisruptionBudgets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from autoscaler.api.policy import ClusterAPIProvider, MachineDeploymentRef, NodePool
from autoscaler.controller.pools.kwok import KwokPoolProvider
from autoscaler.controller.pools.providers import NodePoolProviderRegistry, register_builtins
from autoscaler.core.nodepool import POOL_LABEL
from jobs.vocabulary import GFD_PRODUCT, NVIDIA_GPU
from kernel.errors import PermanentError
from tests.kube_objects import a_deployment, a_pdb
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def a_pool(name: str, gpus: int = 4) -> NodePool:
    return NodePool.model_validate(
        {
            "apiVersion": "tidescale.io/v1alpha1",
            "kind": "NodePool",
            "metadata": {"name": name},
            "spec": {
                "node": {
                    "gpuModel": "NVIDIA L40S",
                    "gpus": gpus,
                    "gpuMemoryMiB": 46068,
                    "cpu": "48",
                    "memory": "384Gi",
                },
                "provider": {"type": "KWOK"},
                "maxNodes": 4,
                "hourlyPrice": 7.5,
                "provisioningSeconds": 60,
                "labels": {"team": "inference"},
            },
        }
    )


@pytest.fixture
def pool(kube: client.ApiClient) -> Iterator[NodePool]:
    """A pool with a name no other test uses; its nodes (cluster-scoped) are deleted afterwards."""
    made = a_pool(f"kp-{uuid.uuid4().hex[:6]}")
    yield made
    core = client.CoreV1Api(kube)
    for node in core.list_node(label_selector=f"{POOL_LABEL}={made.metadata.name}").items:
        core.delete_node(node.metadata.name)


@pytest.fixture
def provider(kube: client.ApiClient) -> KwokPoolProvider:
    return KwokPoolProvider(kube, drain_timeout=30)


def ready(core: client.CoreV1Api, name: str) -> bool:
    node = core.read_node(name)
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or ())


def add_ready(provider: KwokPoolProvider, pool: NodePool, kube: client.ApiClient, count: int) -> list[str]:
    core = client.CoreV1Api(kube)
    names = list(provider.add(pool, count).added)
    wait_for(lambda: all(ready(core, n) for n in names), 30, f"nodes {names} Ready")
    return names


def gpu_deployment(namespace: str, pool: NodePool, replicas: int, gpus: int = 1) -> dict[str, Any]:
    body = a_deployment(
        "llm", replicas, gpus, node_selector={POOL_LABEL: pool.metadata.name}, image="vllm/vllm-openai"
    )
    body["metadata"]["namespace"] = namespace
    return body


def running_pods(core: client.CoreV1Api, namespace: str, count: int) -> list[client.V1Pod]:
    def check() -> list[client.V1Pod] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=llm").items
        running = [p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]
        return running if len(running) == count else None

    found: list[client.V1Pod] = wait_for(check, 60, f"{count} running pods in {namespace}")
    return found


def test_added_nodes_become_ready_with_the_pools_gpu_capacity_and_labels(
    provider: KwokPoolProvider, pool: NodePool, kube: client.ApiClient
) -> None:
    names = add_ready(provider, pool, kube, 2)

    core = client.CoreV1Api(kube)
    assert len(names) == 2 and all(n.startswith(f"{pool.metadata.name}-") for n in names)
    for name in names:
        node = core.read_node(name)
        assert node.status.capacity[NVIDIA_GPU] == "4"
        assert node.status.allocatable[NVIDIA_GPU] == "4"
        assert node.metadata.labels[GFD_PRODUCT] == "NVIDIA-L40S"
        assert node.metadata.labels["team"] == "inference"
    seen = provider.nodes(pool, now=100.0, previous={})
    assert sorted(n.name for n in seen) == sorted(names)
    assert all(n.gpus == 4 and n.gpus_requested == 0 and not n.cordoned for n in seen)
    assert all(n.below_since == 100.0 for n in seen)  # ready and empty: the idle clock starts now


def test_gpu_pods_landing_on_the_pool_count_as_gpus_requested(
    provider: KwokPoolProvider, pool: NodePool, kube: client.ApiClient, namespace: str
) -> None:
    add_ready(provider, pool, kube, 2)
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment(namespace, pool, 3))
    running_pods(client.CoreV1Api(kube), namespace, 3)

    seen = provider.nodes(pool, now=0.0, previous={})

    assert sum(n.gpus_requested for n in seen) == 3
    assert sum(n.gpus for n in seen) == 8


def test_a_node_whose_pod_a_disruption_budget_protects_is_blocked_and_stays_cordoned(
    provider: KwokPoolProvider, pool: NodePool, kube: client.ApiClient, namespace: str
) -> None:
    (name,) = add_ready(provider, pool, kube, 1)
    core = client.CoreV1Api(kube)
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment(namespace, pool, 1))
    (pod,) = running_pods(core, namespace, 1)
    client.PolicyV1Api(kube).create_namespaced_pod_disruption_budget(namespace, a_pdb("llm", {"app": "llm"}))

    result = provider.remove(pool, [name])

    assert result.blocked == (name,) and result.removed == ()
    assert "llm" in result.reason
    assert core.read_node(name).spec.unschedulable is True
    assert core.read_namespaced_pod(pod.metadata.name, namespace).metadata.deletion_timestamp is None
    assert [n.cordoned for n in provider.nodes(pool, 0.0, {})] == [True]


def test_a_node_without_a_disruption_budget_is_drained_and_deleted(
    provider: KwokPoolProvider, pool: NodePool, kube: client.ApiClient, namespace: str
) -> None:
    (name,) = add_ready(provider, pool, kube, 1)
    core = client.CoreV1Api(kube)
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, gpu_deployment(namespace, pool, 1))
    (pod,) = running_pods(core, namespace, 1)

    result = provider.remove(pool, [name])

    assert result.removed == (name,) and result.blocked == ()
    assert name not in {n.metadata.name for n in core.list_node().items}
    uids = {p.metadata.uid for p in core.list_namespaced_pod(namespace).items}
    assert pod.metadata.uid not in uids  # evicted; its replacement waits for a node


def test_cordoning_and_uncordoning_flip_the_nodes_unschedulable_flag(
    provider: KwokPoolProvider, pool: NodePool, kube: client.ApiClient
) -> None:
    names = add_ready(provider, pool, kube, 2)
    core = client.CoreV1Api(kube)

    cordoned = provider.cordon(pool, names[:1], True)
    assert cordoned.cordoned == (names[0],)
    assert core.read_node(names[0]).spec.unschedulable is True
    assert not core.read_node(names[1]).spec.unschedulable
    assert {n.name: n.cordoned for n in provider.nodes(pool, 0.0, {})} == {names[0]: True, names[1]: False}

    reopened = provider.cordon(pool, names[:1], False)
    assert reopened.uncordoned == (names[0],)
    assert not core.read_node(names[0]).spec.unschedulable


def test_nodes_of_another_pool_are_neither_cordoned_nor_removed(
    provider: KwokPoolProvider, pool: NodePool, kube: client.ApiClient
) -> None:
    (name,) = add_ready(provider, pool, kube, 1)
    other = a_pool(f"{pool.metadata.name}-other")

    result = provider.remove(other, [name])

    assert result.removed == () and "not in pool" in result.reason
    assert not client.CoreV1Api(kube).read_node(name).spec.unschedulable


def test_the_registry_serves_each_pool_the_provider_of_its_type(kube: client.ApiClient) -> None:
    registry = register_builtins(NodePoolProviderRegistry(), kube)
    kwok = a_pool("any")
    capi = kwok.model_copy(
        update={
            "spec": kwok.spec.model_copy(
                update={
                    "provider": ClusterAPIProvider(
                        type="ClusterAPI", machine_deployment=MachineDeploymentRef(name="md")
                    )
                }
            )
        }
    )

    assert registry.types == ("ClusterAPI", "KWOK")
    assert registry.for_pool(kwok).type == "KWOK"
    assert registry.for_pool(capi).type == "ClusterAPI"
    with pytest.raises(PermanentError, match=r"no node-pool provider type 'GKE' \(known: ClusterAPI, KWOK\)"):
        registry.get("GKE")
