"""The controller end to end on the real local environment: kube-apiserver with KWOK GPU nodes, Kafka, the
simulated DCGM exporter following the cluster's pods, and Prometheus scraping it every second.

One controller (in this process, the same wiring as `tidescale controller run`) serves the whole module; each
test has its own namespace, policies and workloads. The last test stops Prometheus (the next module that
asks for the `stack` starts it again).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from kubernetes import client, config

from autoscaler.controller.wiring import Options, Running
from kernel.clock import SYSTEM_CLOCK, Deadline
from tests.kube_objects import a_deployment
from tests.waiting import new_namespace, wait_for
from tidescale.local import environment, nodes
from tidescale.local import exporter as local_exporter
from tidescale.local.process import stop

pytestmark = pytest.mark.integration

POOL_LABEL = "tidescale.io/node-pool"


class E2E:
    def __init__(self, env: environment.Environment, running: Running, events_topic: str) -> None:
        self.env = env
        self.running = running
        self.events_topic = events_topic
        self.api = config.new_client_from_config(config_file=env.kubeconfig)
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def replicas(self, ns: str, name: str) -> int:
        return int(self.apps.read_namespaced_deployment(name, ns).spec.replicas)

    def policy_status(self, ns: str, name: str) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(
            "tidescale.io", "v1alpha1", ns, "scalingpolicies", name
        )
        return dict(obj.get("status") or {})

    def condition(self, ns: str, name: str, kind: str) -> dict[str, Any] | None:
        for c in self.policy_status(ns, name).get("conditions") or []:
            if c.get("type") == kind:
                return dict(c)
        return None

    def create_policy(self, ns: str, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": "tidescale.io/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object("tidescale.io", "v1alpha1", ns, "scalingpolicies", body)

    def create_deployment(
        self, ns: str, name: str, replicas: int, gpus: int, pool: str | None = None
    ) -> None:
        selector = {POOL_LABEL: pool} if pool else None
        self.apps.create_namespaced_deployment(ns, a_deployment(name, replicas, gpus, node_selector=selector))

    def running_pods(self, ns: str, name: str) -> list[Any]:
        pods = self.core.list_namespaced_pod(ns, label_selector=f"app={name}").items
        return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]

    def events_on(self, ns: str, name: str) -> list[dict[str, Any]]:
        """events.k8s.io/v1 Events about `name` (raw: the kube-controller-manager's core Events have no
        eventTime, which the generated model refuses)."""
        response = client.EventsV1Api(self.api).list_namespaced_event(ns, _preload_content=False)
        items = json.loads(response.data)["items"]
        return [e for e in items if (e.get("regarding") or {}).get("name") == name]


@pytest.fixture(scope="module")
def e2e(stack: environment.Environment) -> Iterator[E2E]:
    serve = nodes.add(stack.kubeconfig, nodes.gpu_pool(2, "serve"))
    topic = f"scaling-events-{uuid.uuid4().hex[:8]}"
    running: Running | None = None
    try:
        options = Options(
            kubeconfig=stack.kubeconfig,
            prometheus_url=stack.prometheus_url,
            kafka_bootstrap=stack.kafka_bootstrap,
            events_topic=topic,
            sync_seconds=60.0,  # the safety net is slow here: what the tests see comes from events and polls
            prometheus_scrape_seconds=1.0,
        )
        running = Running(options).start()
        yield E2E(stack, running, topic)
    finally:
        if running is not None:
            running.stop()
        nodes.delete(stack.kubeconfig, serve)


@pytest.fixture
def ns(e2e: E2E) -> Iterator[str]:
    name = new_namespace(e2e.core, "e2e")
    yield name
    e2e.core.delete_namespace(name)


def gpu_policy(deployment: str, **extra: Any) -> dict[str, Any]:
    return {
        "targetRef": {"kind": "Deployment", "name": deployment},
        "minReplicas": 1,
        "maxReplicas": 4,
        "triggers": [{"type": "GPUUtilization", "name": "gpu", "target": 70, "pollSeconds": 1}],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}},
        **extra,
    }


def read_events_topic(
    bootstrap: str, topic: str, match: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> dict[str, Any] | None:
    """The first scaling record on `topic` that `match` accepts (None at the deadline)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    deadline = Deadline(timeout)
    try:
        while not deadline.expired():
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                value = json.loads(message.value() or b"{}")
                if match(value):
                    return dict(value)
    finally:
        consumer.close()
    return None


def test_raising_the_simulated_gpu_load_scales_the_deployment_up_and_tells_operators(
    e2e: E2E, ns: str
) -> None:
    e2e.create_deployment(ns, "llm", replicas=1, gpus=1)
    wait_for(lambda: e2e.running_pods(ns, "llm"), 60, "the llm pod running on a KWOK GPU node")
    e2e.create_policy(ns, "llm", gpu_policy("llm"))
    wait_for(lambda: e2e.condition(ns, "llm", "Ready"), 30, "the policy's Ready condition")
    local_exporter.set_load(e2e.env.exporter_url, 0.95, namespace=ns, deployment="llm")
    wait_for(lambda: e2e.replicas(ns, "llm") >= 2, 30, "the Deployment scaled up from 1")
    # a Kubernetes Event on the Deployment, a record on the Kafka topic, and the policy's status
    events = wait_for(
        lambda: [e for e in e2e.events_on(ns, "llm") if e.get("reportingController")], 20, "a scaling Event"
    )
    ours = [e for e in events if e.get("reportingController") == "tidescale.io/controller"]
    assert any("1 → " in e.get("note", "") for e in ours), [e.get("note") for e in events]
    scaled = read_events_topic(
        e2e.env.kafka_bootstrap,
        e2e.events_topic,
        lambda r: r["policy"] == f"{ns}/llm" and r["replicas"]["desired"] > r["replicas"]["current"],
    )
    assert scaled is not None and scaled["acted"] and scaled["replicas"]["current"] == 1
    status = wait_for(
        lambda: (s := e2e.policy_status(ns, "llm")).get("desiredReplicas", 0) >= 2 and s, 20, "status"
    )
    assert status["lastScaleTime"] and status["state"]["history"]["upEvents"]

    # the load drops: after the 5 s scale-down window the Deployment goes back to its minimum
    local_exporter.set_load(e2e.env.exporter_url, 0.05, namespace=ns, deployment="llm")
    wait_for(lambda: e2e.replicas(ns, "llm") == 1, 60, "the Deployment scaled back down to 1")


def test_an_alertmanager_alert_wakes_its_policy_at_once(e2e: E2E, ns: str) -> None:
    e2e.create_deployment(ns, "api", replicas=1, gpus=0)
    spec = {
        "targetRef": {"kind": "Deployment", "name": "api"},
        "minReplicas": 1,
        "maxReplicas": 5,
        # polled once a minute, swept once a minute: only the alert can make this fast
        "triggers": [
            {"type": "Prometheus", "name": "rps", "query": "vector(300)", "target": 100, "pollSeconds": 600}
        ],
    }
    # created with the metric already at 3 × target, but the first reconcile is what the alert forces:
    # first let the controller settle on the policy, then make its target go back to 1
    e2e.create_policy(ns, "api", spec)
    wait_for(lambda: e2e.replicas(ns, "api") == 3, 30, "the first reconcile (policy created)")
    e2e.apps.patch_namespaced_deployment_scale("api", ns, {"spec": {"replicas": 1}})
    response = httpx.post(
        f"{e2e.running.http.url}/alerts",
        json={
            "version": "4",
            "status": "firing",
            "alerts": [
                {"status": "firing", "labels": {"alertname": "HighRPS", "namespace": ns, "deployment": "api"}}
            ],
        },
        timeout=5,
    )
    assert response.status_code == 200 and response.json()["woken"] == [f"{ns}/api"]
    wait_for(lambda: e2e.replicas(ns, "api") == 3, 10, "the woken policy scaling 1 → 3")


def test_a_kafka_lag_burst_scales_up_within_seconds(e2e: E2E, ns: str) -> None:
    topic, group = f"docs-{uuid.uuid4().hex[:8]}", "embed"
    admin = AdminClient({"bootstrap.servers": e2e.env.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=8, replication_factor=1)])[topic].result(30)
    consumer = Consumer({"bootstrap.servers": e2e.env.kafka_bootstrap, "group.id": group})
    consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in range(8)], asynchronous=False)
    consumer.close()
    e2e.create_deployment(ns, "embed", replicas=1, gpus=0)
    e2e.create_policy(
        ns,
        "embed",
        {
            "targetRef": {"kind": "Deployment", "name": "embed"},
            "minReplicas": 1,
            "maxReplicas": 8,
            "triggers": [
                {"type": "KafkaLag", "name": "lag", "topic": topic, "group": group, "lagPerReplica": 100}
            ],
        },
    )
    wait_for(lambda: e2e.condition(ns, "embed", "Ready"), 30, "the policy reconciled once")
    producer = Producer({"bootstrap.servers": e2e.env.kafka_bootstrap})
    for i in range(1000):
        producer.produce(topic, f"doc-{i}".encode(), partition=i % 8)
    assert producer.flush(15) == 0
    # 1000 lag / 100 per replica = 10, capped at 8 partitions; HPA's default rate: 1 → 5 in the first step
    wait_for(lambda: e2e.replicas(ns, "embed") >= 5, 10, "a scale-up within seconds of the lag burst")
    scaled = read_events_topic(
        e2e.env.kafka_bootstrap,
        e2e.events_topic,
        lambda r: r["policy"] == f"{ns}/embed" and r["replicas"]["desired"] > r["replicas"]["current"],
    )
    assert scaled is not None and "lag" in scaled["reason"]


def test_pending_gpu_pods_bring_kwok_nodes_in_the_policys_pool(e2e: E2E, ns: str) -> None:
    pool = f"burst-{uuid.uuid4().hex[:6]}"
    e2e.custom.create_cluster_custom_object(
        "tidescale.io",
        "v1alpha1",
        "nodepools",
        {
            "apiVersion": "tidescale.io/v1alpha1",
            "kind": "NodePool",
            "metadata": {"name": pool},
            "spec": {
                "node": {
                    "gpuModel": "NVIDIA H100 80GB HBM3",
                    "gpus": 4,
                    "gpuMemoryMiB": 81559,
                    "cpu": "48",
                    "memory": "512Gi",
                },
                "maxNodes": 3,
                "hourlyPrice": 49.16,
                "provisioningSeconds": 0,
                "provider": {"type": "KWOK"},
            },
        },
    )
    try:
        e2e.create_deployment(ns, "trainer", replicas=2, gpus=4, pool=pool)
        e2e.create_policy(
            ns,
            "trainer",
            {
                "targetRef": {"kind": "Deployment", "name": "trainer"},
                "minReplicas": 2,
                "maxReplicas": 2,
                "nodePool": pool,
                "podRequests": {"nvidia.com/gpu": 4, "cpu": "8", "memory": "64Gi"},
                "triggers": [{"type": "Prometheus", "name": "q", "query": "vector(1)", "target": 1}],
            },
        )
        added = wait_for(
            lambda: e2e.core.list_node(label_selector=f"{POOL_LABEL}={pool}").items, 60, f"a node in {pool}"
        )
        assert all(n.status.capacity["nvidia.com/gpu"] == "4" for n in added)
        try:
            wait_for(lambda: len(e2e.running_pods(ns, "trainer")) == 2, 60, "both trainer pods running")
        except AssertionError:
            pods = e2e.core.list_namespaced_pod(ns, label_selector="app=trainer").items
            placed = [(p.metadata.name, p.status.phase, p.spec.node_name) for p in pods]
            last = e2e.running.controller.entries[f"{ns}/trainer"].last
            raise AssertionError(f"pods {placed}; the last decision: {last}") from None
        assert len(e2e.core.list_node(label_selector=f"{POOL_LABEL}={pool}").items) == 2
    finally:
        e2e.custom.delete_cluster_custom_object("tidescale.io", "v1alpha1", "nodepools", pool)
        for n in e2e.core.list_node(label_selector=f"{POOL_LABEL}={pool}").items:
            e2e.core.delete_node(n.metadata.name)


def test_an_invalid_policy_is_not_ready_and_names_the_field(e2e: E2E, ns: str) -> None:
    e2e.create_deployment(ns, "web", replicas=1, gpus=0)
    # a cron the API server's schema cannot check (it is a string there); the controller's model can
    spec = gpu_policy("web")
    spec["triggers"] = [
        *spec["triggers"],
        {"type": "Schedule", "windows": [{"cron": "61 * * * *", "durationSeconds": 600, "replicas": 2}]},
    ]
    e2e.create_policy(ns, "web", spec)
    ready = wait_for(lambda: e2e.condition(ns, "web", "Ready"), 30, "the Ready condition")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "cron" in ready["message"], ready["message"]
    assert e2e.replicas(ns, "web") == 1


def test_prometheus_stopped_brings_the_fallback_replicas_and_a_fallback_condition(e2e: E2E, ns: str) -> None:
    e2e.create_deployment(ns, "chat", replicas=2, gpus=1)
    e2e.create_policy(
        ns,
        "chat",
        gpu_policy("chat", fallback={"failureThreshold": 2, "replicas": 3}),
    )
    wait_for(lambda: (c := e2e.condition(ns, "chat", "Ready")) and c["status"] == "True", 30, "reconciled")
    for process in e2e.env.components["prometheus"].processes:
        stop(process.pid, process.name)
    try:
        wait_for(lambda: e2e.replicas(ns, "chat") == 3, 30, "the fallback replicas")
    except AssertionError:
        entry = e2e.running.controller.entries[f"{ns}/chat"]
        ready = e2e.condition(ns, "chat", "Ready")
        raise AssertionError(f"replicas {e2e.replicas(ns, 'chat')}; {ready}; last {entry.last}") from None
    fallback = wait_for(
        lambda: (c := e2e.condition(ns, "chat", "Fallback")) and c["status"] == "True" and c, 20, "Fallback"
    )
    assert fallback["reason"] == "MetricFailing"
    SYSTEM_CLOCK.sleep(3)
    assert e2e.replicas(ns, "chat") == 3  # held: no scale-down on a metric that cannot be read
