"""Targets as the loop sees them: Deployments and StatefulSets from informers (no API call per reconcile),
any other kind through /scale; the pods of each namespace indexed in memory for selector matches, with their
node and pod-deletion-cost (set here by a merge patch); and the pending GPU pods that should wake the policies
of their namespace.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client

from autoscaler.controller.kube.api import ScaleClient, workload_view
from autoscaler.controller.kube.selectors import Selector
from autoscaler.controller.ports import ScaleView
from autoscaler.core.deletion_cost import ANNOTATION, PlacedPod, parse_cost
from kernel.errors import PermanentError
from kernel.informer import Informer

GPU = "nvidia.com/gpu"


class _Pod:
    __slots__ = ("cost", "labels", "live", "name", "node")

    def __init__(self, obj: dict[str, Any]) -> None:
        meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {})
        self.name = str(meta.get("name", ""))
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.node: str | None = spec.get("nodeName") or None
        self.live = status.get("phase") not in ("Succeeded", "Failed") and not meta.get("deletionTimestamp")
        cost = (meta.get("annotations") or {}).get(ANNOTATION)
        self.cost = None if cost is None else parse_cost(cost)


def wants_gpu(obj: dict[str, Any]) -> bool:
    for c in (obj.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        if any(GPU in (res.get(k) or {}) for k in ("requests", "limits")):
            return True
    return False


def unschedulable(obj: dict[str, Any]) -> bool:
    """Pending, not bound, and the scheduler said it does not fit."""
    status = obj.get("status") or {}
    if status.get("phase") != "Pending" or (obj.get("spec") or {}).get("nodeName"):
        return False
    return any(
        c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
        for c in status.get("conditions") or []
    )


class ClusterTargets:
    """`Targets` over informers of Deployments, StatefulSets and Pods."""

    def __init__(self, api: client.ApiClient, scale: ScaleClient) -> None:
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        self.scale = scale
        self.deployments = Informer("deployments", apps.list_deployment_for_all_namespaces)
        self.statefulsets = Informer("statefulsets", apps.list_stateful_set_for_all_namespaces)
        self.pod_informer = Informer("pods", core.list_pod_for_all_namespaces, handlers=(self._on_pod,))
        self._pods: dict[str, dict[str, _Pod]] = {}
        self._lock = threading.Lock()
        self._pending_handlers: list[Callable[[str, dict[str, Any]], None]] = []

    def on_pending_gpu_pod(self, handler: Callable[[str, dict[str, Any]], None]) -> None:
        """Call `handler(namespace, pod)` when a GPU pod is found unschedulable (from the pod watch)."""
        self._pending_handlers.append(handler)

    def start(self, timeout: float = 30) -> None:
        for informer in (self.deployments, self.statefulsets, self.pod_informer):
            informer.start()
        for informer in (self.deployments, self.statefulsets, self.pod_informer):
            if not informer.wait_synced(timeout):
                raise PermanentError(f"the {informer.name} informer did not sync within {timeout:.0f} s")

    def stop(self) -> None:
        for informer in (self.deployments, self.statefulsets, self.pod_informer):
            informer.stop()

    def _on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata", {})
        ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        with self._lock:
            pods = self._pods.setdefault(ns, {})
            if kind == "DELETED":
                pods.pop(name, None)
            else:
                pods[name] = _Pod(obj)
        if kind != "DELETED" and unschedulable(obj) and wants_gpu(obj):
            for handler in self._pending_handlers:
                handler(ns, obj)

    def view(self, namespace: str, api_version: str, kind: str, name: str) -> ScaleView:
        informer = {
            ("apps/v1", "Deployment"): self.deployments,
            ("apps/v1", "StatefulSet"): self.statefulsets,
        }.get((api_version, kind))
        if informer is not None:
            obj = informer.get(f"{namespace}/{name}")
            if obj is not None:
                return workload_view(obj, kind, api_version)
        return self.scale.read(namespace, api_version, kind, name)

    def pods(self, namespace: str, selector: Selector, fresh: bool = False) -> list[PlacedPod]:
        if fresh:
            listed = self.scale.get_json(f"/api/v1/namespaces/{namespace}/pods", f"list pods in {namespace}")
            pods = [_Pod(obj) for obj in listed.get("items") or []]
        else:
            with self._lock:
                pods = list(self._pods.get(namespace, {}).values())
        return [
            PlacedPod(p.name, p.node, p.cost)
            for p in pods
            if p.live and selector.requirements and selector.matches(p.labels)
        ]

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        # a merge patch of the one annotation: no read, no conflict with the kubelet's status updates
        self.scale.merge_patch(
            f"/api/v1/namespaces/{namespace}/pods/{pod}",
            f"pod {pod} in {namespace}: setting its deletion cost to {cost}",
            {"metadata": {"annotations": {ANNOTATION: str(cost)}}},
        )
