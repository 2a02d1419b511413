"""The act step's failures on the real API server: a target deleted mid-run, a /scale update refused by RBAC,
and a conflict storm. The controller is the real wiring (`autoscaler.controller.wiring.Running`: informers,
/scale client, status writer, Kubernetes Events, metrics) with the metric reading set by the test, so what is
exercised is everything between a decision and the cluster. In every case the other policy keeps being served,
and the history (the policy's state, `status.lastScaleTime`, the events the loop emitted, the Deployment's
replicas) shows no scale that did not happen.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client

from autoscaler.controller.kube.api import ScaleClient
from autoscaler.controller.ports import ScalingEvent
from autoscaler.controller.wiring import Options, Running
from kernel.errors import Conflict
from tests.kube_objects import a_deployment
from tests.readings import Load
from tests.waiting import wait_for
from tidescale.local import environment

pytestmark = pytest.mark.integration

GROUP, VERSION = "tidescale.io", "v1alpha1"
SYNC_SECONDS = 2.0  # the sweep, and the longest backoff: short, so that retries and recovery show in seconds


@dataclass
class Recorder:
    """Every event the loop emitted, in order (an `EventSink`)."""

    events: list[ScalingEvent] = field(default_factory=list)

    def emit(self, event: ScalingEvent) -> None:
        self.events.append(event)

    def scaled(self, policy: str) -> list[int]:
        """The replicas each applied scale of `policy` set."""
        return [
            e.decision.desired
            for e in self.events
            if e.decision.policy == policy and e.acted and e.decision.desired != e.decision.current
        ]


class Rig:
    """One test's namespace, Deployments, policies and controller."""

    def __init__(self, kubeconfig: str, kube: client.ApiClient, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.kube = kube
        self.ns = namespace
        self.apps = client.AppsV1Api(kube)
        self.core = client.CoreV1Api(kube)
        self.custom = client.CustomObjectsApi(kube)
        self.rbac = client.RbacAuthorizationV1Api(kube)
        self.load = Load()
        self.recorder = Recorder()
        self.running: Running | None = None

    def start(self, scaler: ScaleClient | None = None) -> Running:
        running = Running(Options(kubeconfig=self.kubeconfig, events_topic=None, sync_seconds=SYNC_SECONDS))
        if scaler is not None:
            running.controller.scaler = scaler
            running.targets.scale = scaler
        running.controller.read_metrics = self.load
        running.controller.sinks.append(self.recorder)
        self.running = running.start()
        return running

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()

    @property
    def controller(self) -> Any:
        assert self.running is not None
        return self.running.controller

    def key(self, name: str) -> str:
        return f"{self.ns}/{name}"

    def deployment(self, name: str, replicas: int = 1) -> None:
        # pods that no node takes: only spec.replicas matters here
        body = a_deployment(name, replicas, node_selector={"tidescale.io/test-node": "none"})
        self.apps.create_namespaced_deployment(self.ns, body)

    def policy(self, name: str, load: float) -> None:
        self.load.values[self.key(name)] = load
        spec = {
            "targetRef": {"kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 10,
            "triggers": [
                {"type": "Prometheus", "name": "rps", "query": "rps", "target": 100, "pollSeconds": 1}
            ],
        }
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ScalingPolicy", "metadata": {"name": name}}
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, "scalingpolicies", body | {"spec": spec}
        )

    def replicas(self, name: str) -> int:
        return int(self.apps.read_namespaced_deployment(name, self.ns).spec.replicas)

    def status(self, name: str) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "scalingpolicies", name)
        return dict(obj.get("status") or {})

    def ready(self, name: str) -> dict[str, Any]:
        for c in self.status(name).get("conditions") or []:
            if c.get("type") == "Ready":
                return dict(c)
        return {}

    def events(self, name: str) -> list[dict[str, Any]]:
        """This controller's events.k8s.io/v1 Events about `name` (raw JSON: the kube-controller-manager's
        core Events have no eventTime, which the generated model refuses)."""
        response = client.EventsV1Api(self.kube).list_namespaced_event(self.ns, _preload_content=False)
        return [
            e
            for e in json.loads(response.data)["items"]
            if (e.get("regarding") or {}).get("name") == name
            and e.get("reportingController") == "tidescale.io/controller"
        ]

    def failures(self, reason: str) -> float:
        """`tidescale_scale_failures_total{reason=…}` as the controller's /metrics renders it."""
        assert self.running is not None
        for line in self.running.metrics.render().decode().splitlines():
            if line.startswith(f'tidescale_scale_failures_total{{reason="{reason}"}}'):
                return float(line.split()[-1])
        return 0.0


@pytest.fixture
def rig(cluster: environment.Environment, kube: client.ApiClient, namespace: str) -> Iterator[Rig]:
    r = Rig(str(cluster.kubeconfig), kube, namespace)
    try:
        yield r
    finally:
        r.stop()


def test_a_target_deleted_mid_run_is_not_found_told_once_and_the_other_policy_keeps_scaling(rig: Rig) -> None:
    rig.deployment("gone")
    rig.deployment("stays")
    rig.start()
    rig.policy("gone", 300)
    rig.policy("stays", 300)
    wait_for(lambda: rig.replicas("gone") == 3 and rig.replicas("stays") == 3, 30, "both scaled 1 → 3")
    scaled_at = wait_for(lambda: rig.status("gone").get("lastScaleTime"), 10, "gone's lastScaleTime")
    up_events = rig.controller.entries[rig.key("gone")].state.history.up_events

    rig.apps.delete_namespaced_deployment("gone", rig.ns)
    ready = wait_for(
        lambda: (c := rig.ready("gone")).get("reason") == "TargetNotFound" and c, 20, "TargetNotFound"
    )
    assert ready["status"] == "False" and "not found" in ready["message"], ready
    # the other policy is still served: more load, more replicas; the gone one asks for more too, in vain
    rig.load.values[rig.key("stays")] = rig.load.values[rig.key("gone")] = 500
    wait_for(lambda: rig.replicas("stays") == 5, 20, "stays scaled 3 → 5 after the deletion")
    [event] = wait_for(
        lambda: [e for e in rig.events("gone") if e["reason"] == "TargetNotFound"],
        20,
        "a TargetNotFound Event",
    )
    assert event["type"] == "Warning" and "not found" in event["note"]
    threading.Event().wait(2 * SYNC_SECONDS)  # two more sweeps: still one Event, and no repeat counted on it
    [event] = [e for e in rig.events("gone") if e["reason"] == "TargetNotFound"]
    assert (event.get("series") or {}).get("count", 1) == 1
    # the history shows no scale after the deletion
    assert rig.status("gone")["lastScaleTime"] == scaled_at
    assert rig.controller.entries[rig.key("gone")].state.history.up_events == up_events
    assert rig.recorder.scaled(rig.key("gone")) == [3]

    # created again: served again, Ready again
    rig.deployment("gone")
    wait_for(lambda: rig.replicas("gone") == 5, 20, "the recreated Deployment scaled 1 → 5")
    wait_for(lambda: rig.ready("gone").get("status") == "True", 10, "gone Ready again")


def test_a_patch_refused_by_rbac_fails_with_the_reason_and_the_other_policy_keeps_scaling(rig: Rig) -> None:
    # the controller's /scale client runs as a ServiceAccount that may read every Deployment's /scale in the
    # namespace but update only `served`'s
    rig.core.create_namespaced_service_account(rig.ns, {"metadata": {"name": "scaler"}})
    rules: list[dict[str, Any]] = [
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get"]},
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale"],
            "verbs": ["update", "patch"],
            "resourceNames": ["served"],
        },
    ]
    rig.rbac.create_namespaced_role(rig.ns, {"metadata": {"name": "scaler"}, "rules": rules})
    rig.rbac.create_namespaced_role_binding(
        rig.ns,
        {
            "metadata": {"name": "scaler"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "scaler"},
            "subjects": [{"kind": "ServiceAccount", "name": "scaler", "namespace": rig.ns}],
        },
    )
    token = rig.core.create_namespaced_service_account_token(
        "scaler", rig.ns, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    configuration = client.Configuration()
    configuration.host = rig.kube.configuration.host
    configuration.ssl_ca_cert = rig.kube.configuration.ssl_ca_cert
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    rig.deployment("refused")
    rig.deployment("served")
    rig.start(ScaleClient(client.ApiClient(configuration)))
    rig.policy("refused", 300)
    rig.policy("served", 300)

    wait_for(lambda: rig.replicas("served") == 3, 30, "served scaled 1 → 3")
    ready = wait_for(
        lambda: (c := rig.ready("refused")).get("reason") == "ScaleFailed" and c, 20, "ScaleFailed"
    )
    assert ready["status"] == "False"
    assert "forbidden" in ready["message"] and f"system:serviceaccount:{rig.ns}:scaler" in ready["message"]
    [event] = wait_for(
        lambda: [e for e in rig.events("refused") if e["reason"] == "ScaleFailed"], 20, "a ScaleFailed Event"
    )
    assert event["type"] == "Warning" and "forbidden" in event["note"]
    # the other policy keeps being served while the refused one is retried once per sweep
    rig.load.values[rig.key("served")] = 500
    wait_for(lambda: rig.replicas("served") == 5, 20, "served scaled 3 → 5")
    wait_for(lambda: rig.failures("Permanent") >= 2, 10, "the refusal retried at the next sweep")
    # no scale that did not happen: not in the Deployment, the status, the policy's state or the events
    assert rig.replicas("refused") == 1
    status = rig.status("refused")
    assert "lastScaleTime" not in status and "state" not in status
    assert rig.controller.entries[rig.key("refused")].state is None
    assert rig.recorder.scaled(rig.key("refused")) == []
    assert len([e for e in rig.events("refused") if e["reason"] == "ScaleFailed"]) == 1

    # the Role is fixed: the next retry (within a sweep period) scales, and the policy is Ready again
    rules[1]["resourceNames"] = ["served", "refused"]
    rig.rbac.patch_namespaced_role("scaler", rig.ns, {"rules": rules})
    wait_for(lambda: rig.replicas("refused") == 3, 20, "refused scaled 1 → 3 once allowed")
    wait_for(lambda: rig.ready("refused").get("status") == "True", 10, "refused Ready again")
    assert rig.status("refused").get("lastScaleTime")
    assert rig.recorder.scaled(rig.key("refused")) == [3]


class StormyScaleClient(ScaleClient):
    """The real /scale client, with another writer updating one Deployment between each of the client's reads
    and its update (its resourceVersion moves every time): the API server answers each update 409 Conflict.
    The worst case of a busy object, made deterministic."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        super().__init__(api)
        self._apps = client.AppsV1Api(api)
        self._namespace, self._name = namespace, name
        self.storming = threading.Event()
        self.bumps = self.conflicts = 0

    def _call(self, path: str, method: str, what: str, body: Any = None) -> Any:
        if method == "PUT" and self.storming.is_set() and path.endswith(f"/deployments/{self._name}/scale"):
            self.bumps += 1
            patch = {"metadata": {"annotations": {"test.tidescale.io/storm": str(self.bumps)}}}
            self._apps.patch_namespaced_deployment(self._name, self._namespace, patch)
        try:
            return super()._call(path, method, what, body)
        except Conflict:
            self.conflicts += 1
            raise


def test_a_conflict_storm_is_retried_with_backoff_reported_and_scaled_once_it_calms(rig: Rig) -> None:
    rig.deployment("storm")
    rig.deployment("calm")
    stormy = StormyScaleClient(rig.kube, rig.ns, "storm")
    stormy.storming.set()
    rig.start(stormy)
    rig.policy("storm", 300)
    rig.policy("calm", 300)

    wait_for(lambda: rig.replicas("calm") == 3, 30, "calm scaled 1 → 3")
    # three retries (1 s, 2 s, 2 s: the sync period caps the backoff) fail silently; the fourth is reported
    ready = wait_for(
        lambda: (c := rig.ready("storm")).get("reason") == "ScaleFailed" and c,
        30,
        "ScaleFailed after retries",
    )
    assert (
        ready["status"] == "False"
        and "HTTP 409" in ready["message"]
        and "4 attempts failed" in ready["message"]
    )
    assert stormy.conflicts >= 4 * 4  # each attempt: the client's own 4 conflicting updates
    [event] = wait_for(
        lambda: [e for e in rig.events("storm") if e["reason"] == "ScaleFailed"], 20, "a ScaleFailed Event"
    )
    assert event["type"] == "Warning"
    rig.load.values[rig.key("calm")] = 500
    wait_for(lambda: rig.replicas("calm") == 5, 20, "calm scaled 3 → 5 during the storm")
    assert rig.failures("Conflict") >= 4
    assert rig.replicas("storm") == 1 and "lastScaleTime" not in rig.status("storm")
    assert rig.controller.entries[rig.key("storm")].state is None
    assert rig.recorder.scaled(rig.key("storm")) == []

    # the storm ends: the next retry scales; the backoff and the condition are reset
    stormy.storming.clear()
    wait_for(lambda: rig.replicas("storm") == 3, 20, "storm scaled 1 → 3 once calm")
    wait_for(lambda: rig.ready("storm").get("status") == "True", 10, "storm Ready again")
    entry = rig.controller.entries[rig.key("storm")]
    assert (entry.act_failures, entry.retry_at) == (0, None)
    assert rig.status("storm").get("lastScaleTime")
    assert rig.recorder.scaled(rig.key("storm")) == [3]


def test_a_node_pool_that_does_not_exist_is_a_condition_and_an_event_on_the_policy(rig: Rig) -> None:
    rig.deployment("nopool")
    rig.start()
    rig.load.values[rig.key("nopool")] = 100
    spec = {
        "targetRef": {"kind": "Deployment", "name": "nopool"},
        "minReplicas": 1,
        "maxReplicas": 4,
        "nodePool": "l40s",
        "triggers": [{"type": "Prometheus", "name": "rps", "query": "rps", "target": 100, "pollSeconds": 1}],
    }
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ScalingPolicy", "metadata": {"name": "nopool"}}
    rig.custom.create_namespaced_custom_object(
        GROUP, VERSION, rig.ns, "scalingpolicies", body | {"spec": spec}
    )

    def pool_condition() -> dict[str, Any]:
        for c in rig.status("nopool").get("conditions") or []:
            if c.get("type") == "NodePoolReady":
                return dict(c)
        return {}

    cond = wait_for(
        lambda: (c := pool_condition()).get("reason") == "NodePoolNotFound" and c, 20, "condition"
    )
    assert cond["status"] == "False" and "'l40s'" in cond["message"]
    [event] = wait_for(
        lambda: [e for e in rig.events("nopool") if e["reason"] == "NodePoolNotFound"],
        20,
        "a NodePoolNotFound Event",
    )
    assert event["type"] == "Warning" and event["regarding"]["kind"] == "ScalingPolicy"
    assert event["regarding"].get("uid")  # `kubectl describe scalingpolicy` finds it
    threading.Event().wait(2 * SYNC_SECONDS)  # more sweeps: still one Event, no repeats
    [event] = [e for e in rig.events("nopool") if e["reason"] == "NodePoolNotFound"]
    assert (event.get("series") or {}).get("count", 1) == 1
