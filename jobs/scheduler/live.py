"""`tidescale jobs explain --kubeconfig K --pod NS/NAME`: why a pending pod (or its gang) is where it is, read
from the live cluster with one list of each resource, through the same cache, offer and placement the
scheduler runs (nothing is written).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from jobs.explain import Explanation, explain
from jobs.placement import PlacementRegistry
from jobs.scheduler.cache import CycleInput, SchedulerCache
from jobs.scheduler.config import SchedulerConfig
from jobs.scheduler.groups import Held, build_offer, entry_uid
from jobs.scheduler.kube import VOLCANO
from jobs.scheduler.loop import _free
from kernel.errors import PermanentError, TemporaryError


@dataclass(frozen=True)
class LiveExplanation:
    pod: str
    bound_to: str = ""
    held: Held | None = None
    explanation: Explanation | None = None

    def lines(self) -> list[str]:
        if self.bound_to:
            return [f"pod {self.pod} is bound to {self.bound_to}"]
        if self.held is not None:
            return [
                f"pod {self.pod} is not offered to the scheduler: {self.held.reason}: {self.held.message}"
            ]
        assert self.explanation is not None
        return self.explanation.lines()

    @property
    def complete(self) -> bool:
        return bool(self.bound_to) or (self.explanation is not None and self.explanation.complete)


def _items(call: Any, *args: Any) -> list[dict[str, Any]]:
    import json

    try:
        response = call(*args, _preload_content=False)
    except ApiException as e:
        if e.status == 404:
            return []
        raise TemporaryError(f"cannot list from the API server: {e.status} {e.reason}") from e
    return list(json.loads(response.data).get("items", []))


def read_cluster(api: Any, config: SchedulerConfig) -> CycleInput:
    """One cycle's input from one list of nodes, pods, PodGroups and Queues."""
    cache = SchedulerCache(config.scheduler_name, config.node_selector)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    for obj in _items(core.list_node):
        cache.on_node("ADDED", obj)
    for obj in _items(core.list_pod_for_all_namespaces):
        cache.on_pod("ADDED", obj)
    group, version = VOLCANO
    groups = _items(custom.list_cluster_custom_object, group, version, "podgroups")
    queues = _items(custom.list_cluster_custom_object, group, version, "queues")
    cache.queues_served = bool(queues)
    for obj in groups:
        cache.on_group("ADDED", obj)
    for obj in queues:
        cache.on_queue("ADDED", obj)
    return cache.build()


def explain_pod(
    api: Any, pod: str, config: SchedulerConfig | None = None, registry: PlacementRegistry | None = None
) -> LiveExplanation:
    cfg = config or SchedulerConfig()
    namespace, _, name = pod.partition("/")
    if not name:
        raise PermanentError(f"--pod: NAMESPACE/NAME, got {pod!r}")
    inp = read_cluster(api, cfg)
    uid = inp.pods_by_key.get(pod)
    if uid is None:
        raise PermanentError(f"no pod {pod}")
    waiting = {p.uid: p for p in inp.pending}
    if uid not in waiting:
        return LiveExplanation(pod, bound_to=_bound_node(inp, namespace, name) or "(not ours, or finished)")
    known = {v.queue.name for v in inp.queues} | set(inp.invalid_queues) if inp.queues_served else None
    offer = build_offer(
        inp.pending,
        inp.groups,
        inp.invalid_groups,
        inp.running,
        cfg.placement,
        _free(inp),
        inp.requests,
        known,
    )
    for held in offer.held.values():
        if uid in held.pods:
            return LiveExplanation(pod, held=held)
    for entry in offer.entries:
        if any(p.uid == uid for p in offer.members.get(entry.uid, ())):
            return LiveExplanation(pod, explanation=explain(entry.group, inp.state, registry))
    return LiveExplanation(pod, held=Held("Unknown", f"{entry_uid(namespace, name)} is not pending", (uid,)))


def _bound_node(inp: CycleInput, namespace: str, name: str) -> str:
    return next((b.node for b in inp.state.bound if b.namespace == namespace and b.name == name), "")
