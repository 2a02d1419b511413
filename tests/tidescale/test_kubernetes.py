"""The local Kubernetes control plane: real kube-apiserver, controller-manager, scheduler, etcd and KWOK
nodes, driven through the official Python client."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from kernel import artefacts
from tests.kube_objects import a_deployment
from tests.waiting import wait_for
from tidescale.local import environment, nodes

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[2] / "helm" / "tidescale"


POOL = f"gpu-{uuid.uuid4().hex[:6]}"  # this module's node pool
ON_POOL: dict[str, Any] = {
    "node_selector": {nodes.POOL_LABEL: POOL},
    "tolerations": [{"key": "tidescale.io/test", "operator": "Equal", "value": POOL}],
}


@pytest.fixture(scope="module")
def gpu_nodes(cluster: environment.Environment) -> Iterator[list[str]]:
    """Two KWOK H100 nodes of this module's own pool, tainted so that only this module's pods (`ON_POOL`)
    land there (the control plane is the session's, shared with every other test)."""
    pool = nodes.gpu_pool(2, POOL).model_copy(
        update={"taints": [nodes.Taint(key="tidescale.io/test", value=POOL)]}
    )
    names = nodes.add(cluster.kubeconfig, pool)
    try:
        yield names
    finally:
        nodes.delete(cluster.kubeconfig, names)


def a_pod(name: str, gpus: int, only_on_pool: bool = True) -> dict[str, Any]:
    """A pod that tolerates this module's pool; `only_on_pool`: and selects it."""
    placement: dict[str, Any] = {"tolerations": ON_POOL["tolerations"]}
    if only_on_pool:
        placement["nodeSelector"] = ON_POOL["node_selector"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            **placement,
            "containers": [
                {
                    "name": "trainer",
                    "image": "pytorch/pytorch:2.5.1",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def running_pods(core: client.CoreV1Api, namespace: str, selector: str) -> list[Any]:
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [p for p in pods if p.status.phase == "Running" and p.spec.node_name]


def test_the_api_server_reports_the_pinned_kubernetes_version(kube: client.ApiClient) -> None:
    version = client.VersionApi(kube).get_code()
    assert version.git_version == "v1.37.2"
    assert (version.major, version.minor) == ("1", "37")


def test_a_deployments_pods_become_running_on_kwok_gpu_nodes(
    kube: client.ApiClient, namespace: str, gpu_nodes: list[str]
) -> None:
    client.AppsV1Api(kube).create_namespaced_deployment(
        namespace, a_deployment("llm", replicas=3, gpus=2, **ON_POOL)
    )
    core = client.CoreV1Api(kube)
    pods = wait_for(
        lambda: (
            len(running_pods(core, namespace, "app=llm")) == 3 and running_pods(core, namespace, "app=llm")
        ),
        90,
        "3 running llm pods",
    )
    assert {p.spec.node_name for p in pods} <= set(gpu_nodes)


def test_replicas_are_read_and_patched_through_the_scale_subresource(
    kube: client.ApiClient, namespace: str, gpu_nodes: list[str]
) -> None:
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, a_deployment("embed", replicas=1, **ON_POOL))
    assert apps.read_namespaced_deployment_scale("embed", namespace).spec.replicas == 1

    apps.patch_namespaced_deployment_scale("embed", namespace, {"spec": {"replicas": 4}})

    assert apps.read_namespaced_deployment_scale("embed", namespace).spec.replicas == 4
    core = client.CoreV1Api(kube)
    wait_for(lambda: len(running_pods(core, namespace, "app=embed")) == 4, 90, "4 running embed pods")
    scale = wait_for(
        lambda: (s := apps.read_namespaced_deployment_scale("embed", namespace)).status.replicas == 4 and s,
        30,
        "scale status 4",
    )
    assert scale.status.selector == "app=embed"


def test_a_pod_wanting_more_gpus_than_any_node_has_waits_unschedulable_until_a_fitting_node_is_added(
    kube: client.ApiClient, namespace: str, cluster: environment.Environment, gpu_nodes: list[str]
) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_pod(namespace, a_pod("big-trainer", gpus=16, only_on_pool=False))

    def unschedulable() -> Any:
        pod = core.read_namespaced_pod("big-trainer", namespace)
        return next(
            (
                c
                for c in pod.status.conditions or []
                if c.type == "PodScheduled" and c.reason == "Unschedulable"
            ),
            None,
        )

    condition = wait_for(unschedulable, 60, "PodScheduled=False Unschedulable")
    assert condition.status == "False"
    assert "Insufficient nvidia.com/gpu" in condition.message

    big = nodes.NodePoolSpec(
        name=f"b200-{namespace}", count=1, capacity={"nvidia.com/gpu": "16", "cpu": "224", "memory": "2Ti"}
    )
    added = nodes.add(cluster.kubeconfig, big)
    try:
        pod = wait_for(
            lambda: (p := core.read_namespaced_pod("big-trainer", namespace)).status.phase == "Running" and p,
            90,
            "big-trainer Running",
        )
        assert pod.spec.node_name == added[0]
    finally:
        core.delete_namespaced_pod("big-trainer", namespace, grace_period_seconds=0)
        nodes.delete(cluster.kubeconfig, added)


def test_a_watch_delivers_the_events_of_a_pod_from_creation_to_running(
    kube: client.ApiClient, namespace: str, gpu_nodes: list[str]
) -> None:
    core = client.CoreV1Api(kube)
    # watch from the version before the pod exists, so its creation is an event even if KWOK is quick
    version = core.list_namespaced_pod(namespace).metadata.resource_version
    core.create_namespaced_pod(namespace, a_pod("watched", gpus=1))
    seen: list[tuple[str, str]] = []
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_pod, namespace, resource_version=version, timeout_seconds=60
    ):
        pod = event["object"]
        seen.append((event["type"], pod.status.phase))
        if pod.status.phase == "Running":
            stream.stop()
    assert seen[0][0] == "ADDED"
    assert ("MODIFIED", "Running") in seen


def test_a_service_account_without_a_role_is_refused_and_allowed_once_bound(
    kube: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    token = core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    configuration = client.Configuration()
    configuration.host = kube.configuration.host
    configuration.ssl_ca_cert = kube.configuration.ssl_ca_cert
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    as_reader = client.CoreV1Api(client.ApiClient(configuration))

    with pytest.raises(ApiException) as refused:
        as_reader.list_namespaced_pod(namespace)
    assert refused.value.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in str(refused.value.body)

    rbac = client.RbacAuthorizationV1Api(kube)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader-reads-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    assert wait_for(lambda: _allowed(as_reader, namespace), 30, "RBAC to allow the bound reader")


def _allowed(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.list_namespaced_pod(namespace)
    except ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True


def test_kwok_nodes_can_be_added_and_removed_while_the_control_plane_runs(
    cluster: environment.Environment,
) -> None:
    pool = nodes.NodePoolSpec(
        name="l40s",
        count=2,
        zone="zone-b",
        racks=["r1", "r2"],
        capacity={"nvidia.com/gpu": "4", "nvidia.com/gpumem": "184272", "huawei.com/Ascend910": "0"},
        taints=[nodes.Taint(key="gpu", value="l40s", effect="NoSchedule")],
    )
    added = nodes.add(cluster.kubeconfig, pool)
    assert added == ["l40s-0", "l40s-1"]
    core = client.CoreV1Api(config.new_client_from_config(config_file=cluster.kubeconfig))
    node = core.read_node("l40s-1")
    assert node.metadata.labels[nodes.RACK_LABEL] == "r2"
    assert node.metadata.labels[nodes.ZONE_LABEL] == "zone-b"
    assert node.status.allocatable["nvidia.com/gpu"] == "4"
    assert node.spec.taints[0].key == "gpu"

    nodes.delete(cluster.kubeconfig, ["l40s-0"])
    assert wait_for(lambda: nodes.existing(cluster.kubeconfig, "l40s") == ["l40s-1"], 30, "l40s-0 gone")
    assert nodes.add(cluster.kubeconfig, pool, count=1) == ["l40s-0"]
    nodes.delete(cluster.kubeconfig, ["l40s-0", "l40s-1"])


@pytest.mark.parametrize("command", [["lint"], ["template", "demo"]], ids=["lint", "template"])
def test_helm_works_on_the_chart(command: list[str]) -> None:
    helm = artefacts.cached_binary("helm")
    result = subprocess.run(
        [str(helm), *command, str(CHART)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if command[0] == "template":
        assert "kind: Deployment" in result.stdout
        assert "name: demo-tidescale-controller" in result.stdout
