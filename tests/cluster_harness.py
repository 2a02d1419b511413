"""The cluster tests' harness: one test's KWOK nodes, in-process tidescale scheduler(s), pods, PodGroups and
Queues on the real local control plane, all removed at the end (fixtures `volcano_crds` and `h` in
tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client

from autoscaler.controller.pools.node_manifest import kwok_node
from jobs.scheduler.config import SchedulerConfig
from jobs.scheduler.wiring import Options, Running
from jobs.workload import BinpackSpec
from tidescale.local import nodes as local_nodes

SHARED_CRDS = Path(__file__).resolve().parents[1].parent / "shared" / "crds"
VOLCANO_CRDS = [
    SHARED_CRDS / "scheduling.volcano.sh_podgroups.yaml",
    SHARED_CRDS / "scheduling.volcano.sh_queues.yaml",
]
VOLCANO = ("scheduling.volcano.sh", "v1beta1")
PARTITION = "tidescale.io/test-partition"


class Harness:
    """One test's nodes, scheduler(s), pods, PodGroups and Queues, all removed at the end."""

    def __init__(self, kubeconfig: str, api: Any, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.policy = client.PolicyV1Api(api)
        self.events = client.EventsV1Api(api)
        self.ns = namespace
        self.name = f"ts-{namespace}"
        self.nodes: list[str] = []
        self.queues: list[str] = []
        self.running: list[Running] = []

    # -- nodes ------------------------------------------------------------------------------

    def add_nodes(self, count: int, capacity: dict[str, str | int], prefix: str = "n") -> list[str]:
        names = []
        for _ in range(count):
            name = f"{self.ns}-{prefix}{len(self.nodes)}"
            labels = {PARTITION: self.ns, "tidescale.io/test-node": name}
            self.core.create_node(
                kwok_node(name, labels, {"cpu": "32", "memory": "128Gi", "pods": "110"} | capacity)
            )
            self.nodes.append(name)
            names.append(name)
        local_nodes.wait_ready(self.kubeconfig, names, 60)
        return names

    # -- the scheduler -----------------------------------------------------------------------

    def start(self, leader_elect: bool = False, identity: str | None = None, **config: Any) -> Running:
        cfg = SchedulerConfig(
            scheduler_name=self.name,
            node_selector={PARTITION: self.ns},
            placement=config.pop("placement", BinpackSpec()),
            **config,
        )
        options = Options(
            kubeconfig=self.kubeconfig,
            config=cfg,
            leader_elect=leader_elect,
            lease_namespace=self.ns,
            **({"identity": identity} if identity else {}),
        )
        running = Running(options).start()
        self.running.append(running)
        return running

    def stop(self, running: Running) -> None:
        running.stop()
        self.running.remove(running)

    # -- objects -----------------------------------------------------------------------------

    def pod(
        self,
        name: str,
        gpus: int | str = 0,
        cpu: str = "1",
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        scheduler: str | None = None,
        resources: dict[str, str] | None = None,
        node: str | None = None,
    ) -> dict[str, Any]:
        limits = {"cpu": cpu, "memory": "1Gi"} | ({"nvidia.com/gpu": str(gpus)} if gpus else {})
        limits |= resources or {}
        spec: dict[str, Any] = {
            "schedulerName": scheduler or self.name,
            "containers": [{"name": "main", "image": "model-server:1", "resources": {"limits": limits}}],
            "tolerations": [{"operator": "Exists"}],
        }
        if node:
            spec["nodeSelector"] = {"tidescale.io/test-node": node}
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}},
            "spec": spec,
        }
        return dict(self.core.create_namespaced_pod(self.ns, body).to_dict())

    def podgroup(self, name: str, min_member: int, queue: str = "default", **spec: Any) -> None:
        body = {
            "apiVersion": "scheduling.volcano.sh/v1beta1",
            "kind": "PodGroup",
            "metadata": {"name": name},
            "spec": {"minMember": min_member, "queue": queue, **spec},
        }
        self.custom.create_namespaced_custom_object(*VOLCANO, self.ns, "podgroups", body)

    def queue(self, name: str, annotations: dict[str, str] | None = None, **spec: Any) -> str:
        full = f"{self.ns}-{name}"
        body = {
            "apiVersion": "scheduling.volcano.sh/v1beta1",
            "kind": "Queue",
            "metadata": {"name": full, "annotations": annotations or {}},
            "spec": {"weight": 1, **spec},
        }
        self.custom.create_cluster_custom_object(*VOLCANO, "queues", body)
        self.queues.append(full)
        return full

    def podgroup_status(self, name: str) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(*VOLCANO, self.ns, "podgroups", name)
        return dict(obj.get("status") or {})

    def queue_status(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_cluster_custom_object(*VOLCANO, "queues", name).get("status") or {})

    def bound(self) -> dict[str, str]:
        return {
            p.metadata.name: p.spec.node_name
            for p in self.core.list_namespaced_pod(self.ns).items
            if p.spec.node_name and not p.metadata.deletion_timestamp
        }

    def pods(self) -> dict[str, Any]:
        return {p.metadata.name: p for p in self.core.list_namespaced_pod(self.ns).items}

    def condition(self, name: str) -> Any:
        pod = self.core.read_namespaced_pod(name, self.ns)
        return next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"), None)

    def event_reasons(self, name: str) -> dict[str, str]:
        items = self.events.list_namespaced_event(self.ns, field_selector=f"regarding.name={name}").items
        return {e.reason: e.note for e in items}

    def close(self) -> None:
        for r in list(self.running):
            r.stop()
        for q in self.queues:
            self.custom.delete_cluster_custom_object(*VOLCANO, "queues", q)
        for n in self.nodes:
            self.core.delete_node(n)


def leftovers(kube: Any, namespace: str) -> list[str]:
    """Everything in the namespace that a fresh namespace does not have."""
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    rbac, custom = client.RbacAuthorizationV1Api(kube), client.CustomObjectsApi(kube)
    found = [f"Pod/{p.metadata.name}" for p in core.list_namespaced_pod(namespace).items]
    found += [f"Service/{s.metadata.name}" for s in core.list_namespaced_service(namespace).items]
    found += [
        f"ConfigMap/{c.metadata.name}"
        for c in core.list_namespaced_config_map(namespace).items
        if c.metadata.name != "kube-root-ca.crt"
    ]
    found += [
        f"ServiceAccount/{a.metadata.name}"
        for a in core.list_namespaced_service_account(namespace).items
        if a.metadata.name != "default"
    ]
    found += [f"Deployment/{d.metadata.name}" for d in apps.list_namespaced_deployment(namespace).items]
    found += [f"ReplicaSet/{r.metadata.name}" for r in apps.list_namespaced_replica_set(namespace).items]
    found += [f"Role/{r.metadata.name}" for r in rbac.list_namespaced_role(namespace).items]
    found += [f"RoleBinding/{r.metadata.name}" for r in rbac.list_namespaced_role_binding(namespace).items]
    groups = custom.list_namespaced_custom_object(*VOLCANO, namespace, "podgroups")["items"]
    found += [f"PodGroup/{g['metadata']['name']}" for g in groups]
    return found
