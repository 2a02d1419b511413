"""Scale-down that empties nodes, on the real control plane: before the controller that ships (the real
wiring, with the metric reading set by the test) scales down a target whose node pool it plans, each bound pod
carries `controller.kubernetes.io/pod-deletion-cost` = the target's pods on its node, and the ReplicaSet
deletes the pod on the emptiest node instead of spreading the survivors.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client

from autoscaler.controller.wiring import Options, Running
from autoscaler.core.deletion_cost import ANNOTATION
from autoscaler.core.nodepool import POOL_LABEL
from tests.kube_objects import a_deployment, a_kwok_node_pool
from tests.readings import Load
from tests.waiting import wait_for
from tidescale.local import environment

pytestmark = pytest.mark.integration

GROUP, VERSION = "tidescale.io", "v1alpha1"


def test_a_scale_down_deletes_the_pod_alone_on_its_node_which_its_deletion_cost_ranks_first(
    cluster: environment.Environment, kube: client.ApiClient, namespace: str
) -> None:
    apps, core, custom = client.AppsV1Api(kube), client.CoreV1Api(kube), client.CustomObjectsApi(kube)
    pool = f"dc-{uuid.uuid4().hex[:6]}"
    load = Load({f"{namespace}/svc": 300})  # 3 replicas of 2 GPUs: two 4-GPU nodes, 2 pods and 1 pod
    running: Running | None = None

    def live_pods() -> dict[str, Any]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=svc").items
        return {p.metadata.name: p for p in pods if p.metadata.deletion_timestamp is None}

    try:
        custom.create_cluster_custom_object(GROUP, VERSION, "nodepools", a_kwok_node_pool(pool))
        apps.create_namespaced_deployment(
            namespace, a_deployment("svc", 3, 2, node_selector={POOL_LABEL: pool})
        )
        running = Running(Options(kubeconfig=str(cluster.kubeconfig), events_topic=None, sync_seconds=2.0))
        running.controller.read_metrics = load
        running.start()
        spec = {
            "targetRef": {"kind": "Deployment", "name": "svc"},
            "minReplicas": 1,
            "maxReplicas": 3,
            "nodePool": pool,
            "podRequests": {"nvidia.com/gpu": 2, "cpu": "1", "memory": "1Gi"},
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
            "triggers": [
                {"type": "Prometheus", "name": "rps", "query": "rps", "target": 100, "pollSeconds": 1}
            ],
        }
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ScalingPolicy", "metadata": {"name": "svc"}}
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "scalingpolicies", body | {"spec": spec}
        )
        placed = wait_for(
            lambda: (
                len(pods := live_pods()) == 3
                and all(p.status.phase == "Running" for p in pods.values())
                and {n: p.spec.node_name for n, p in pods.items()}
            ),
            60,
            "3 pods running on the pool's nodes",
        )
        [alone] = [n for n, node in placed.items() if list(placed.values()).count(node) == 1]

        load.values[f"{namespace}/svc"] = 200  # 2 replicas
        survivors = wait_for(lambda: len(pods := live_pods()) == 2 and pods, 30, "svc scaled 3 → 2")
        assert alone not in survivors, f"{alone} was alone on its node but survived: {placed}"
        assert {placed[n] for n in survivors} == {placed[next(iter(survivors))]}  # the crowded node
        costs = {n: (p.metadata.annotations or {}).get(ANNOTATION) for n, p in survivors.items()}
        assert costs == dict.fromkeys(survivors, "2")
    finally:
        if running is not None:
            running.stop()
        custom.delete_cluster_custom_object(GROUP, VERSION, "nodepools", pool)
        for node in core.list_node(label_selector=f"{POOL_LABEL}={pool}").items:
            core.delete_node(node.metadata.name)
