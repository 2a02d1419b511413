"""Two controller replicas on the real control plane: only the Lease holder reconciles; when it stops, the
other takes over and carries on from the policy's status."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from autoscaler.controller.wiring import Options, Running
from tests.waiting import wait_for
from tidescale.local import environment

pytestmark = pytest.mark.integration


def test_of_two_replicas_only_the_leader_scales_and_the_other_takes_over_when_it_stops(
    cluster: environment.Environment, kube: client.ApiClient, namespace: str
) -> None:
    lease = f"tidescale-{uuid.uuid4().hex[:6]}"

    def replica(identity: str) -> Running:
        options = Options(
            kubeconfig=cluster.kubeconfig,
            kubernetes_events=False,
            events_topic=None,
            leader_elect=True,
            lease_namespace=namespace,
            lease_name=lease,
            identity=identity,
            sync_seconds=2.0,
        )
        return Running(options).start()

    a = replica("replica-a")
    b = replica("replica-b")
    try:
        leader, follower = wait_for(
            lambda: (a, b) if a.leading.is_set() else (b, a) if b.leading.is_set() else None, 30, "a leader"
        )
        assert not follower.leading.is_set()
        apps = client.AppsV1Api(kube)
        apps.create_namespaced_deployment(
            namespace,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                    },
                },
            },
        )
        # a floor of 3 replicas at all times (a cron window that always covers now)
        floor = {"cron": "* * * * *", "durationSeconds": 3600, "replicas": 3}
        client.CustomObjectsApi(kube).create_namespaced_custom_object(
            "tidescale.io",
            "v1alpha1",
            namespace,
            "scalingpolicies",
            {
                "apiVersion": "tidescale.io/v1alpha1",
                "kind": "ScalingPolicy",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {
                    "targetRef": {"kind": "Deployment", "name": "web"},
                    "minReplicas": 1,
                    "maxReplicas": 6,
                    "triggers": [{"type": "Schedule", "windows": [floor]}],
                },
            },
        )

        def read() -> int:
            return int(apps.read_namespaced_deployment("web", namespace).spec.replicas)

        wait_for(lambda: read() == 3, 30, "the leader scaling to the floor")
        assert leader.scale.patches >= 1 and follower.scale.patches == 0

        # the leader goes away (releasing its Lease); the follower leads and acts on a changed floor
        leader.stop()
        wait_for(follower.leading.is_set, 30, "the follower taking the Lease")
        floor["replicas"] = 5
        client.CustomObjectsApi(kube).patch_namespaced_custom_object(
            "tidescale.io",
            "v1alpha1",
            namespace,
            "scalingpolicies",
            "web",
            {"spec": {"triggers": [{"type": "Schedule", "windows": [floor]}]}},
        )
        wait_for(lambda: read() == 5, 30, "the new leader scaling to the new floor")
        assert follower.scale.patches >= 1
    finally:
        for r in (a, b):
            if not r.stop_event.is_set():
                r.stop()
