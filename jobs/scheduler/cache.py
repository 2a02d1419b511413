"""The scheduler's memory of the cluster: nodes, every pod, PodGroups and Queues as the informers report
them, plus the assume cache — pods decided by a cycle whose binding has not been seen yet.

A pod is accounted on its node the moment a cycle decides it (`assume`), before the bind returns; the
assumption ends when the informer shows the pod bound (`spec.nodeName`), or is dropped (`forget`) when the
bind fails. Pods bound by anyone else (kube-scheduler, a static assignment) count against their node's
capacity and devices too. The device-level assignment of a pod is read from its annotations (those this
scheduler writes, or gpushare's): after a restart they are the truth, and an annotation that would book a
device twice is refused (counted in `double_booked`), never applied.

`build(now)` turns the memory into one cycle's input. Handlers return whether the change can alter a
decision, so that status-only updates (a pod turning Running) do not start a cycle.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.device_annotations import read_assignment
from jobs.devices import DeviceAssignment
from jobs.scheduler.groups import PendingPod
from jobs.scheduler.objects import (
    GroupSpec,
    QueueSpecView,
    group_key,
    group_spec_of,
    is_terminal,
    key_of,
    meta,
    node_name_of,
    node_of,
    pod_queue,
    priority_of,
    queue_of,
    request_of,
    wants_scheduler,
)
from jobs.snapshot import BoundPod, ClusterState, Node
from jobs.vocabulary import PodRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assumed:
    node: str
    pod: BoundPod


@dataclass
class CycleInput:
    """One cycle's view of the cluster."""

    state: ClusterState
    pending: list[PendingPod]
    requests: dict[str, PodRequest]
    groups: dict[str, GroupSpec]
    invalid_groups: dict[str, str]
    running: dict[str, int]  # group key -> bound or assumed pods
    queues: list[QueueSpecView]
    invalid_queues: dict[str, str]
    queues_served: bool = False
    freed: int = 0  # the cache's `freed` count when this input was taken
    group_objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    queue_objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods_by_key: dict[str, str] = field(default_factory=dict)  # "ns/name" -> uid


@dataclass
class _PodEntry:
    obj: dict[str, Any]
    seq: int
    request: PodRequest | None
    error: str = ""


class SchedulerCache:
    def __init__(self, scheduler_name: str, node_selector: Mapping[str, str] | None = None) -> None:
        self.scheduler_name = scheduler_name
        self.node_selector = dict(node_selector or {})
        self._lock = threading.Lock()
        self._nodes: dict[str, Node] = {}
        self._node_errors: dict[str, str] = {}
        self._pods: dict[str, _PodEntry] = {}  # uid -> pod
        self._groups: dict[str, dict[str, Any]] = {}
        self._queues: dict[str, dict[str, Any]] = {}
        self.queues_served = False  # set by the wiring when the API server serves Volcano's Queue
        self._assumed: dict[str, Assumed] = {}
        self._seq = 0
        self.double_booked = 0
        # bumped by every change that can make a waiting pod fit (capacity freed or added, a group's or a
        # queue's spec changed, an assumption dropped); pods found unschedulable wait for the next bump
        self.freed = 0

    # -- informer handlers (return: whether a cycle could decide differently now) ------------

    def on_node(self, kind: str, obj: dict[str, Any]) -> bool:
        name = str(meta(obj).get("name"))
        with self._lock:
            old = self._nodes.get(name)
            labels = meta(obj).get("labels") or {}
            if any(labels.get(k) != v for k, v in self.node_selector.items()):
                kind = "DELETED"  # not one of ours (any more)
            if kind == "DELETED":
                self._nodes.pop(name, None)
                self._node_errors.pop(name, None)
                return old is not None
            try:
                node = node_of(obj)
            except ValueError as e:
                self._node_errors[name] = str(e)
                self._nodes.pop(name, None)
                log.warning("node %s ignored: %s", name, e)
                return old is not None
            self._node_errors.pop(name, None)
            self._nodes[name] = node
            if old != node:
                self.freed += 1
                return True
            return False

    @staticmethod
    def _shape(obj: Mapping[str, Any], scheduler_name: str) -> tuple[Any, ...]:
        """The facts of a pod that decisions depend on."""
        return (
            node_name_of(obj),
            is_terminal(obj),
            wants_scheduler(obj, scheduler_name),
            bool(meta(obj).get("deletionTimestamp")),
        )

    def on_pod(self, kind: str, obj: dict[str, Any]) -> bool:
        uid = str(meta(obj).get("uid") or key_of(obj))
        with self._lock:
            old = self._pods.get(uid)
            if kind == "DELETED" or (is_terminal(obj) and not wants_scheduler(obj, self.scheduler_name)):
                self._pods.pop(uid, None)
                self._assumed.pop(uid, None)
                if old is not None and node_name_of(old.obj):
                    self.freed += 1
                return old is not None and (bool(node_name_of(old.obj)) or self._is_ours(old.obj))
            if old is None:
                self._seq += 1
                entry = _PodEntry(obj, self._seq, None)
            else:
                entry = _PodEntry(obj, old.seq, old.request, old.error)
                if old.obj.get("spec", {}).get("containers") != obj.get("spec", {}).get("containers"):
                    entry.request, entry.error = None, ""  # resized in place: read the request again
            self._pods[uid] = entry
            if node_name_of(obj):
                self._assumed.pop(uid, None)  # the bind is seen: the annotations now speak for it
            relevant = node_name_of(obj) or self._is_ours(obj)
            if old is None:
                return bool(relevant)
            return self._shape(old.obj, self.scheduler_name) != self._shape(obj, self.scheduler_name)

    def _is_ours(self, obj: Mapping[str, Any]) -> bool:
        return wants_scheduler(obj, self.scheduler_name)

    def on_group(self, kind: str, obj: dict[str, Any]) -> bool:
        key = key_of(obj)
        with self._lock:
            old = self._groups.get(key)
            if kind == "DELETED":
                self._groups.pop(key, None)
                self.freed += 1
                return True
            self._groups[key] = obj
            if old is None or old.get("spec") != obj.get("spec"):
                self.freed += 1
                return True
            return False

    def on_queue(self, kind: str, obj: dict[str, Any]) -> bool:
        key = key_of(obj)
        with self._lock:
            old = self._queues.get(key)
            if kind == "DELETED":
                self._queues.pop(key, None)
                self.freed += 1
                return True
            self._queues[key] = obj
            old_ann = (meta(old).get("annotations") or {}) if old else None
            if old is None or old.get("spec") != obj.get("spec") or old_ann != meta(obj).get("annotations"):
                self.freed += 1
                return True
            return False

    # -- the assume cache ---------------------------------------------------------------------

    def assume(self, uid: str, pod: BoundPod) -> None:
        with self._lock:
            self._assumed[uid] = Assumed(pod.node, pod)

    def forget(self, uid: str) -> None:
        with self._lock:
            if self._assumed.pop(uid, None) is not None:
                self.freed += 1

    def is_assumed(self, uid: str) -> bool:
        with self._lock:
            return uid in self._assumed

    def has_node(self, name: str) -> bool:
        with self._lock:
            return name in self._nodes

    def pod(self, uid: str) -> dict[str, Any] | None:
        with self._lock:
            e = self._pods.get(uid)
            return e.obj if e else None

    @property
    def node_count(self) -> int:
        with self._lock:
            return len(self._nodes)

    # -- one cycle's input ---------------------------------------------------------------------

    def _request(self, uid: str, e: _PodEntry) -> PodRequest | None:
        if e.request is None and not e.error:
            try:
                e.request = request_of(e.obj)
            except ValueError as err:
                e.error = str(err)
        return e.request

    def build(self) -> CycleInput:
        with self._lock:
            nodes = [self._nodes[n] for n in sorted(self._nodes)]
            pods = list(self._pods.items())
            groups = dict(self._groups)
            queues = dict(self._queues)
            freed = self.freed
            assumed = dict(self._assumed)
            requests: dict[str, PodRequest] = {}
            for uid, e in pods:
                r = self._request(uid, e)
                if r is not None:
                    requests[uid] = r
        state = ClusterState(nodes)
        specs: dict[str, GroupSpec] = {}
        invalid: dict[str, str] = {}
        for key, group_obj in groups.items():
            try:
                specs[key] = group_spec_of(group_obj)
            except ValueError as e:
                invalid[key] = str(e)
        views: list[QueueSpecView] = []
        bad_queues: dict[str, str] = {}
        for key, queue_obj in sorted(queues.items()):
            try:
                views.append(queue_of(queue_obj))
            except ValueError as e:
                bad_queues[key] = str(e)
        running: dict[str, int] = {}
        pending: list[PendingPod] = []
        by_key: dict[str, str] = {}
        explicit: list[tuple[Mapping[str, Any], PodRequest, DeviceAssignment]] = []
        implicit: list[tuple[Mapping[str, Any], PodRequest]] = []
        for uid, entry in pods:
            obj: Mapping[str, Any] = entry.obj
            m = meta(obj)
            by_key[f"{m.get('namespace')}/{m.get('name')}"] = uid
            node = node_name_of(obj)
            if not node:
                if wants_scheduler(obj, self.scheduler_name) and uid not in assumed:
                    pending.append(
                        PendingPod(uid, str(m.get("namespace")), str(m.get("name")), entry.seq, obj)
                    )
                continue
            gk = group_key(obj)
            if gk:
                running[gk] = running.get(gk, 0) + 1
            request = requests.get(uid)
            if request is None or node not in state.index:
                continue
            try:
                got = read_assignment(dict(m.get("annotations") or {}))
            except ValueError as err:
                log.warning("pod %s: device annotations ignored: %s", key_of(obj), err)
                got = None
            if got is not None:
                explicit.append((obj, request, got))
            else:
                implicit.append((obj, request))
        # 1. what annotations say (the truth after a restart), 2. what the assume cache holds,
        # 3. pods bound by others, given the devices a device plugin would pick
        for obj, request, claimed in explicit:
            i = state.index[node_name_of(obj)]
            problem = state.dev[i].conflict(request.devices, claimed)
            if problem:
                self.double_booked += 1
                log.error("pod %s: its device annotations would double-book: %s", key_of(obj), problem)
                claimed = DeviceAssignment()  # noqa: PLW2901 - counted by its scalars only
            state.bind(i, self._bound(obj, request, claimed, specs, self.scheduler_name))
        for _, a in sorted(assumed.items()):
            at = state.index.get(a.node)
            if at is None:
                continue
            state.bind(at, a.pod)
            gk = f"{a.pod.namespace}/{a.pod.group}" if a.pod.group else ""
            if gk:
                running[gk] = running.get(gk, 0) + 1
        for obj, request in implicit:
            i = state.index[node_name_of(obj)]
            found = state.dev[i].assign(request.devices)
            devices = found if isinstance(found, DeviceAssignment) else None
            state.bind(i, self._bound(obj, request, devices, specs, self.scheduler_name))
        pending.sort(key=lambda p: (str(meta(p.obj).get("creationTimestamp") or ""), p.seq))
        pending = [PendingPod(p.uid, p.namespace, p.name, k, p.obj) for k, p in enumerate(pending)]
        return CycleInput(
            state,
            pending,
            requests,
            specs,
            invalid,
            running,
            views,
            bad_queues,
            self.queues_served,
            freed,
            groups,
            queues,
            by_key,
        )

    @staticmethod
    def _bound(
        obj: Mapping[str, Any],
        request: PodRequest,
        got: DeviceAssignment | None,
        specs: Mapping[str, GroupSpec],
        scheduler_name: str,
    ) -> BoundPod:
        """A bound pod in the core's terms; only pods of this scheduler are charged to a queue."""
        m = meta(obj)
        gk = group_key(obj)
        spec = specs.get(gk) if gk else None
        ours = (obj.get("spec") or {}).get("schedulerName") == scheduler_name
        queue = (spec.queue if spec else pod_queue(obj)) if ours else None
        return BoundPod(
            str(m.get("name")),
            node_name_of(obj),
            request,
            got or DeviceAssignment(),
            str(m.get("namespace")),
            queue,
            gk.partition("/")[2] if gk else None,
            priority_of(obj),
        )
