"""The Cluster API node-pool provider on the real control plane, with the upstream MachineDeployment CRD
(../shared/crds). No Cluster API controllers run locally, so these tests check the API effects — spec.replicas
through /scale, the delete-machine mark, cordons and evictions — with KWOK nodes standing for machines' nodes.

The upstream Machine CRD is not among the shared CRDs: a stand-in `Machine` definition (same group and
version, schema left open) lets the tests check that the provider finds a node's Machine and marks it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from autoscaler.api.policy import NodePool
from autoscaler.controller.pools.clusterapi import (
    CLUSTER_NAMESPACE_ANNOTATION,
    DELETE_MACHINE_ANNOTATION,
    DEPLOYMENT_LABEL,
    GROUP,
    MACHINE_ANNOTATION,
    VERSION,
    ClusterAPIPoolProvider,
)
from autoscaler.controller.pools.node_manifest import kwok_node
from autoscaler.core.nodepool import POOL_LABEL
from jobs.vocabulary import NVIDIA_GPU
from tests.kube_objects import a_pdb
from tests.waiting import wait_for
from tidescale.local import crds
from tidescale.local.environment import Environment

pytestmark = pytest.mark.integration

SHARED_CRDS = Path(__file__).resolve().parents[4] / "shared" / "crds"
MACHINE_DEPLOYMENT_CRD = SHARED_CRDS / "cluster.x-k8s.io_machinedeployments.yaml"

# Stand-in for Cluster API's Machine CRD (not in ../shared/crds): the group, version and names are
# upstream's, the schema is left open.
MACHINE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"machines.{GROUP}"},
    "spec": {
        "group": GROUP,
        "names": {"kind": "Machine", "listKind": "MachineList", "plural": "machines", "singular": "machine"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def cluster_api(cluster: Environment, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The upstream MachineDeployment CRD and the stand-in Machine CRD, installed once for these tests."""
    machine = tmp_path_factory.mktemp("crds") / "machines.yaml"
    machine.write_text(yaml.safe_dump(MACHINE_CRD))
    crds.install(cluster.kubeconfig, [MACHINE_DEPLOYMENT_CRD, machine], timeout=60)


@pytest.fixture
def md_name() -> str:
    return f"md-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def pool(cluster_api: None, kube: client.ApiClient, namespace: str, md_name: str) -> Iterator[NodePool]:
    """A ClusterAPI pool over a fresh MachineDeployment (1 replica) in the test's namespace; the KWOK nodes
    standing for its machines are deleted afterwards."""
    client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "machinedeployments", a_machine_deployment(namespace, md_name, replicas=1)
    )
    made = NodePool.model_validate(
        {
            "apiVersion": "tidescale.io/v1alpha1",
            "kind": "NodePool",
            "metadata": {"name": md_name},
            "spec": {
                "node": {
                    "gpuModel": "NVIDIA-H100",
                    "gpus": 8,
                    "gpuMemoryMiB": 81559,
                    "cpu": "96",
                    "memory": "1Ti",
                },
                "provider": {
                    "type": "ClusterAPI",
                    "machineDeployment": {"namespace": namespace, "name": md_name},
                },
                "maxNodes": 8,
                "hourlyPrice": 30,
                "provisioningSeconds": 300,
            },
        }
    )
    yield made
    core = client.CoreV1Api(kube)
    for node in core.list_node(label_selector=f"{POOL_LABEL}={md_name}").items:
        core.delete_node(node.metadata.name)


@pytest.fixture
def provider(kube: client.ApiClient) -> ClusterAPIPoolProvider:
    return ClusterAPIPoolProvider(kube, drain_timeout=30)


def a_machine_deployment(namespace: str, name: str, replicas: int) -> dict[str, Any]:
    """The smallest MachineDeployment the upstream v1beta2 schema accepts."""
    labels = {DEPLOYMENT_LABEL: name}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MachineDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "clusterName": "local",
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "clusterName": "local",
                    "bootstrap": {"dataSecretName": f"{name}-bootstrap"},
                    "infrastructureRef": {
                        "apiGroup": "infrastructure.cluster.x-k8s.io",
                        "kind": "DockerMachineTemplate",
                        "name": name,
                    },
                },
            },
        },
    }


def a_machine(namespace: str, name: str, md: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Machine",
        "metadata": {"name": name, "namespace": namespace, "labels": {DEPLOYMENT_LABEL: md}},
        "spec": {"clusterName": "local"},
        "status": {"nodeRef": {"name": node}},
    }


def machine_node(
    kube: client.ApiClient, md: str, *, labelled: bool = True, machine: tuple[str, str] | None = None
) -> str:
    """A Ready KWOK node standing for one of `md`'s machines: labelled with the deployment's name or not,
    annotated with its Machine (namespace, name) or not, as Cluster API would."""
    name = f"{md}-{uuid.uuid4().hex[:5]}"
    labels = {POOL_LABEL: md} | ({DEPLOYMENT_LABEL: md} if labelled else {})
    manifest = kwok_node(name, labels, {"cpu": "96", "memory": "1Ti", NVIDIA_GPU: 8, "pods": 110})
    if machine is not None:
        manifest["metadata"]["annotations"] |= {
            CLUSTER_NAMESPACE_ANNOTATION: machine[0],
            MACHINE_ANNOTATION: machine[1],
        }
    core = client.CoreV1Api(kube)
    core.create_node(manifest)
    wait_for(
        lambda: any(
            c.type == "Ready" and c.status == "True" for c in core.read_node(name).status.conditions or ()
        ),
        30,
        f"node {name} Ready",
    )
    return name


def a_pod_on(kube: client.ApiClient, namespace: str, node: str, labels: dict[str, str]) -> client.V1Pod:
    core = client.CoreV1Api(kube)
    pod = core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": f"server-{uuid.uuid4().hex[:5]}", "labels": labels},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "s", "image": "vllm", "resources": {"limits": {NVIDIA_GPU: "2"}}}],
            },
        },
    )
    wait_for(
        lambda: core.read_namespaced_pod(pod.metadata.name, namespace).status.phase == "Running",
        30,
        f"pod {pod.metadata.name} Running",
    )
    return pod


def replicas(kube: client.ApiClient, namespace: str, md: str) -> int:
    scale = client.CustomObjectsApi(kube).get_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, "machinedeployments", md
    )
    return int(scale["spec"].get("replicas", 0))  # 0 is omitted


def machine_annotations(kube: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    machine = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "machines", name
    )
    return dict(machine["metadata"].get("annotations") or {})


def test_adding_nodes_raises_the_machine_deployments_replicas_through_scale(
    provider: ClusterAPIPoolProvider, pool: NodePool, kube: client.ApiClient, namespace: str, md_name: str
) -> None:
    result = provider.add(pool, 2)

    assert replicas(kube, namespace, md_name) == 3
    assert result.added == (f"{md_name}#1", f"{md_name}#2")
    assert "1 → 3" in result.reason
    assert provider.nodes(pool, 0.0, {}) == ()  # no Cluster API controllers here: nothing joins
    assert provider.provisioning(pool) == 3


def test_removing_a_node_drains_it_marks_its_machine_and_lowers_replicas(
    provider: ClusterAPIPoolProvider, pool: NodePool, kube: client.ApiClient, namespace: str, md_name: str
) -> None:
    machine = f"{md_name}-m0"
    client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "machines", a_machine(namespace, machine, md_name, node="")
    )
    node = machine_node(kube, md_name, machine=(namespace, machine))
    pod = a_pod_on(kube, namespace, node, {"app": "llm"})
    assert [(n.name, n.gpus, n.gpus_requested) for n in provider.nodes(pool, 0.0, {})] == [(node, 8, 2)]

    result = provider.remove(pool, [node])

    assert result.removed == (node,) and result.blocked == ()
    assert client.CoreV1Api(kube).read_node(node).spec.unschedulable is True
    assert pod.metadata.name not in {
        p.metadata.name for p in client.CoreV1Api(kube).list_namespaced_pod(namespace).items
    }
    assert machine_annotations(kube, namespace, machine)[DELETE_MACHINE_ANNOTATION] == "true"
    assert replicas(kube, namespace, md_name) == 0


def test_a_machines_node_reference_finds_a_node_without_the_deployment_label(
    provider: ClusterAPIPoolProvider, pool: NodePool, kube: client.ApiClient, namespace: str, md_name: str
) -> None:
    node = machine_node(kube, md_name, labelled=False)
    machine = f"{md_name}-m1"
    client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "machines", a_machine(namespace, machine, md_name, node=node)
    )
    assert [n.name for n in provider.nodes(pool, 0.0, {})] == [node]

    result = provider.remove(pool, [node])

    assert result.removed == (node,)
    assert machine_annotations(kube, namespace, machine)[DELETE_MACHINE_ANNOTATION] == "true"
    assert replicas(kube, namespace, md_name) == 0


def test_a_node_a_disruption_budget_protects_is_blocked_and_replicas_stay(
    provider: ClusterAPIPoolProvider, pool: NodePool, kube: client.ApiClient, namespace: str, md_name: str
) -> None:
    machine = f"{md_name}-m2"
    client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "machines", a_machine(namespace, machine, md_name, node="")
    )
    node = machine_node(kube, md_name, machine=(namespace, machine))
    a_pod_on(kube, namespace, node, {"app": "llm"})
    client.PolicyV1Api(kube).create_namespaced_pod_disruption_budget(namespace, a_pdb("llm", {"app": "llm"}))

    result = provider.remove(pool, [node])

    assert result.blocked == (node,) and result.removed == ()
    assert client.CoreV1Api(kube).read_node(node).spec.unschedulable is True
    assert DELETE_MACHINE_ANNOTATION not in machine_annotations(kube, namespace, machine)
    assert replicas(kube, namespace, md_name) == 1


def test_a_drained_node_without_a_machine_does_not_lower_replicas(
    provider: ClusterAPIPoolProvider, pool: NodePool, kube: client.ApiClient, namespace: str, md_name: str
) -> None:
    node = machine_node(kube, md_name)

    result = provider.remove(pool, [node])

    assert result.removed == () and result.cordoned == (node,)
    assert "no Machine" in result.reason
    assert replicas(kube, namespace, md_name) == 1  # else the MachineSet would pick an undrained machine
