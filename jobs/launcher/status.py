"""A job's objects as the cluster holds them (plain JSON dicts) -> what `jobs list` and `jobs get` show.

The phase is computed from the children alone, so any machine with the kubeconfig sees the same:
- Failed: a Job of it has the condition `Failed=True`, or its Deployment gave up progressing
  (`Progressing=False`, `ProgressDeadlineExceeded`);
- Succeeded: every Job of it is `Complete=True` (never for an InferenceService);
- Running: every pod it should have now exists and is bound to a node (a Job: its parallelism, up to
  the completions still to go; a Deployment: its replicas);
- Pending: otherwise (the reason: how many are bound and the scheduler's message for one that is not);
- Terminating: the root is being deleted.

A local job (a process on the machine that submitted it) has its own phases (`jobs.launcher.local`),
Unknown among them when seen from another host; a pending job's place in its queue is
`jobs.launcher.queueing`'s.

Pure: no I/O, no clock (`now` is passed in).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobs.device_annotations import (
    ASSIGNED_FPGAS,
    ASSIGNED_GPUS,
    ASSIGNED_NICS,
    ASSIGNED_NPUS,
    ASSIGNED_SLICES,
)
from jobs.launcher.queueing import QueuePosition
from jobs.launcher.render import (
    INDEX_ANNOTATION,
    JOB_LABEL,
    KIND_LABEL,
    ROLE_LABEL,
    SPEC_KEY,
)
from jobs.scheduler.objects import request_of

PENDING, RUNNING, SUCCEEDED, FAILED, TERMINATING = "Pending", "Running", "Succeeded", "Failed", "Terminating"
UNKNOWN = "Unknown"  # a local job seen from another host
DEVICE_KEYS = {
    ASSIGNED_GPUS: "gpus",
    ASSIGNED_SLICES: "slices",
    ASSIGNED_NICS: "nics",
    ASSIGNED_NPUS: "npus",
    ASSIGNED_FPGAS: "fpgas",
}
ROLE_ORDER = {"master": 0, "worker": 1, "server": 1, "main": 1}
EVENTS_SHOWN = 10


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in (obj.get("status") or {}).get("conditions") or []}


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(created: str | None, now: datetime) -> str:
    """kubectl's age: `45s`, `12m`, `3h`, `2d`."""
    t = parse_time(created)
    if t is None:
        return "?"
    s = max(0, int((now - t).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


@dataclass(frozen=True)
class PodView:
    name: str
    role: str
    index: str  # the completion index of an Indexed Job's pod, else ""
    phase: str
    node: str
    gpus: float  # requested (a share of one GPU counts as its fraction)
    devices: Mapping[str, str]  # what the scheduler assigned: gpus, slices, nics, npus, fpgas
    scheduler: str
    bound_by_tidescale: bool  # the binding came with tidescale's assignment (`tidescale.io/node`)
    message: str  # a pending pod: the scheduler's PodScheduled reason and message
    created: str
    owner: str = ""  # `Kind/name` of its controller (a Job, a ReplicaSet)

    @property
    def bound(self) -> bool:
        return bool(self.node)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "index": self.index,
            "phase": self.phase,
            "node": self.node,
            "gpus": self.gpus,
            "devices": dict(self.devices),
            "schedulerName": self.scheduler,
            "message": self.message,
            "created": self.created,
        }


@dataclass(frozen=True)
class EventView:
    time: str
    type: str
    reason: str
    object: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "type": self.type,
            "reason": self.reason,
            "object": self.object,
            "message": self.message,
        }


@dataclass(frozen=True)
class JobView:
    name: str
    namespace: str
    kind: str
    phase: str
    reason: str  # a sentence: why this phase
    queue: str
    scheduler: str
    created: str
    pods: tuple[PodView, ...] = ()
    workloads: tuple[str, ...] = ()  # `Job/train 2/2 active`, `Deployment/llm 2/2 ready`
    podgroup: Mapping[str, Any] | None = None  # name, phase, minMember, running
    events: tuple[EventView, ...] = ()
    document: Mapping[str, Any] = field(default_factory=dict)
    position: QueuePosition | None = None  # a pending job's place in its queue
    local: Mapping[str, Any] | None = None  # a local job: host, pid, directory, log, command, exitCode

    @property
    def gpus_requested(self) -> float:
        return round(sum(p.gpus for p in self.pods if p.phase not in (SUCCEEDED, FAILED)), 3)

    @property
    def gpus_allocated(self) -> float:
        return round(sum(p.gpus for p in self.pods if p.bound and p.phase not in (SUCCEEDED, FAILED)), 3)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted({p.node for p in self.pods if p.node}))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "kind": self.kind,
            "phase": self.phase,
            "reason": self.reason,
            "queue": self.queue,
            "schedulerName": self.scheduler,
            "created": self.created,
            "gpusRequested": self.gpus_requested,
            "gpusAllocated": self.gpus_allocated,
            "nodes": list(self.nodes),
            "pods": [p.to_json() for p in self.pods],
            "workloads": list(self.workloads),
            "podGroup": dict(self.podgroup) if self.podgroup is not None else None,
            "events": [e.to_json() for e in self.events],
            "queuePosition": self.position.to_json() if self.position is not None else None,
            **({"local": dict(self.local)} if self.local is not None else {}),
        }


def _gpus(pod: Mapping[str, Any]) -> float:
    try:
        return request_of(pod).gpu_milli / 1000
    except ValueError:
        return 0.0


def pod_view(pod: Mapping[str, Any]) -> PodView:
    m, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    ann, labels = m.get("annotations") or {}, m.get("labels") or {}
    node = str(spec.get("nodeName") or "")
    phase = str(status.get("phase") or PENDING)
    if m.get("deletionTimestamp"):
        phase = TERMINATING
    message = ""
    if not node:
        cond = _conditions(pod).get("PodScheduled")
        if cond is not None and cond.get("status") == "False":
            message = f"{cond.get('reason') or 'Unschedulable'}: {cond.get('message') or ''}".strip()
        else:
            message = f"waiting for the scheduler {spec.get('schedulerName') or 'default-scheduler'}"
    return PodView(
        name=str(m.get("name")),
        role=str(labels.get(ROLE_LABEL) or ""),
        index=str(ann.get(INDEX_ANNOTATION) or ""),
        phase=phase,
        node=node,
        gpus=_gpus(pod),
        devices={short: str(ann[key]) for key, short in DEVICE_KEYS.items() if ann.get(key)},
        scheduler=str(spec.get("schedulerName") or ""),
        bound_by_tidescale=bool(node) and "tidescale.io/node" in ann,
        message=message,
        created=str(m.get("creationTimestamp") or ""),
        owner=next(
            (
                f"{o.get('kind')}/{o.get('name')}"
                for o in m.get("ownerReferences") or []
                if o.get("controller")
            ),
            "",
        ),
    )


def _pod_order(p: PodView) -> tuple[int, int, str]:
    return (ROLE_ORDER.get(p.role, 2), int(p.index) if p.index.isdigit() else 0, p.name)


def _expected(workload: Mapping[str, Any], pods: Sequence[PodView]) -> int:
    """How many pods the workload should have alive now (a Job: its parallelism, up to the completions
    still to go, counting pods seen Succeeded before the Job's status does)."""
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    if workload.get("kind") == "Deployment":
        return int(spec.get("replicas", 1))
    completions = int(spec.get("completions") or 1)
    me = f"Job/{_meta(workload).get('name')}"
    seen = sum(1 for p in pods if p.owner == me and p.phase == SUCCEEDED)
    left = completions - max(int(status.get("succeeded") or 0), seen)
    return max(0, min(int(spec.get("parallelism") or 1), left))


def _workload_line(w: Mapping[str, Any]) -> str:
    name, status, spec = _meta(w).get("name"), w.get("status") or {}, w.get("spec") or {}
    if w.get("kind") == "Deployment":
        return f"Deployment/{name}: {int(status.get('readyReplicas') or 0)}/{spec.get('replicas', 1)} ready"
    parts = [f"{int(status.get(k) or 0)} {k}" for k in ("active", "succeeded", "failed")]
    return f"Job/{name}: {', '.join(parts)} of {spec.get('completions') or 1}"


def phase_of(
    kind: str, workloads: Sequence[Mapping[str, Any]], pods: Sequence[PodView], deleting: bool = False
) -> tuple[str, str]:
    """The job's phase and a sentence saying why (see the module's docstring)."""
    if deleting:
        return TERMINATING, "the job is being deleted"
    for w in workloads:
        conds = _conditions(w)
        failed = conds.get("Failed")
        if failed is not None and failed.get("status") == "True":
            why = failed.get("message") or failed.get("reason") or "failed"
            return FAILED, f"Job/{_meta(w).get('name')}: {why}"
        progressing = conds.get("Progressing")
        if (
            progressing is not None
            and progressing.get("status") == "False"
            and progressing.get("reason") == "ProgressDeadlineExceeded"
        ):
            return FAILED, f"Deployment/{_meta(w).get('name')}: {progressing.get('message') or 'no progress'}"
    if not workloads:
        return PENDING, "its workload does not exist (yet)"
    jobs = [w for w in workloads if w.get("kind") == "Job"]
    if kind != "InferenceService" and jobs and len(jobs) == len(workloads):
        done = [j for j in jobs if (_conditions(j).get("Complete") or {}).get("status") == "True"]
        if len(done) == len(jobs):
            return SUCCEEDED, "every pod completed"
    expected = sum(_expected(w, pods) for w in workloads)
    live = [p for p in pods if p.phase not in (SUCCEEDED, FAILED, TERMINATING)]
    bound = [p for p in live if p.bound]
    if len(bound) >= expected:
        return RUNNING, f"{len(bound)}/{expected} pods bound"
    waiting = next((p for p in sorted(live, key=_pod_order) if not p.bound), None)
    why = f"{len(bound)}/{expected} pods bound"
    if waiting is not None:
        why += f"; {waiting.name}: {waiting.message}"
    else:
        why += f"; {expected - len(live)} not created yet"
    return PENDING, why


def _event_time(e: Mapping[str, Any]) -> str:
    series = e.get("series") or {}
    t = (
        series.get("lastObservedTime")
        or e.get("lastTimestamp")
        or e.get("eventTime")
        or e.get("firstTimestamp")
        or _meta(e).get("creationTimestamp")
        or ""
    )
    return str(t)[:19]


def event_views(
    events: Iterable[Mapping[str, Any]], names: set[str], shown: int = EVENTS_SHOWN
) -> tuple[EventView, ...]:
    """The most recent `shown` events about the objects named `names`, oldest first."""
    out = []
    for e in events:
        involved = e.get("involvedObject") or e.get("regarding") or {}
        if involved.get("name") not in names:
            continue
        out.append(
            EventView(
                time=_event_time(e),
                type=str(e.get("type") or ""),
                reason=str(e.get("reason") or ""),
                object=f"{involved.get('kind')}/{involved.get('name')}",
                message=str(e.get("message") or e.get("note") or ""),
            )
        )
    out.sort(key=lambda v: v.time)
    return tuple(out[-shown:])


def podgroup_view(group: Mapping[str, Any]) -> dict[str, Any]:
    status = group.get("status") or {}
    return {
        "name": _meta(group).get("name"),
        "phase": status.get("phase") or PENDING,
        "minMember": (group.get("spec") or {}).get("minMember"),
        "running": int(status.get("running") or 0),
        "queue": (group.get("spec") or {}).get("queue"),
    }


def job_view(
    root: Mapping[str, Any],
    workloads: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    podgroups: Sequence[Mapping[str, Any]] = (),
    events: Sequence[Mapping[str, Any]] = (),
) -> JobView:
    """One job from its root (the ConfigMap) and its children as listed by the job's label."""
    m = _meta(root)
    labels = m.get("labels") or {}
    try:
        document = json.loads((root.get("data") or {}).get(SPEC_KEY) or "{}")
    except json.JSONDecodeError:
        document = {}
    spec = document.get("spec") or {}
    name = str(labels.get(JOB_LABEL) or "")
    kind = str(labels.get(KIND_LABEL) or document.get("kind") or "")
    views = tuple(sorted((pod_view(p) for p in pods), key=_pod_order))
    phase, reason = phase_of(kind, workloads, views, deleting=bool(m.get("deletionTimestamp")))
    group = next((podgroup_view(g) for g in podgroups if _meta(g).get("name") == name), None)
    names = {p.name for p in views} | {str(_meta(w).get("name")) for w in workloads} | {name}
    names |= {str(o.get("name")) for p in pods for o in _meta(p).get("ownerReferences") or []}  # ReplicaSets
    return JobView(
        name=name,
        namespace=str(m.get("namespace") or ""),
        kind=kind,
        phase=phase,
        reason=reason,
        queue=str(spec.get("queue") or ""),
        scheduler=str(spec.get("schedulerName") or ""),
        created=str(m.get("creationTimestamp") or ""),
        pods=views,
        workloads=tuple(_workload_line(w) for w in workloads),
        podgroup=group,
        events=event_views(events, names),
        document=document,
    )
