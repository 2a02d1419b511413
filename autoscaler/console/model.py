"""The web console's view models: plain values in (ScalingPolicy objects, scaling-event records, the GPU views
of `tidescale top`, the cluster's pods, PodGroups and Queues) -> small JSON-ready dicts the page renders.

- A policy is one `PolicyRow`: its target and bounds from the spec, what the controller last decided from
  the status (currentReplicas, desiredReplicas, lastDecision, conditions) and, newer, from each scaling
  event's record (`autoscaler.core.events.record`): current -> desired, the sentence, and the rule that
  limited the decision (the limiting reason). A misconfiguration record (`failure`) is shown as the row's
  problem until its `recovery`.
- `policies_page` answers one page of rows (filtered, sorted) with a summary of all of them, so that the
  page stays small with thousands of policies.
- A policy's chart is a bounded `Series` of `Point`s (time, current, desired, and what the metrics asked
  for: the largest proposal of a trigger that read its metric), one per decision seen; `chart` cuts the last
  hour out of it.
- `nodes`, `jobs` and `queues` turn `jobs.launcher.views`' ClusterView and JobTops, and the pending pods
  with the scheduler's own queue readers (`jobs.launcher.queueing`), into the page's tables; a pending
  entry's "why" is its pod's PodScheduled message (`jobs.launcher.status.pod_view`).

Pure: no I/O, no clock (`now` is an argument).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NamedTuple

from jobs.cycle import line_order
from jobs.launcher.queueing import DEFAULT_POLICY, pending_entries, queue_policies
from jobs.launcher.status import pod_view
from jobs.launcher.views import ClusterView, JobTop
from jobs.scheduler.groups import entry_uid
from jobs.scheduler.objects import group_of, is_terminal, meta

HOUR = 3600.0
PAGE_LIMIT_MAX = 200
KUBE_SCHEDULER = "default-scheduler"
KUBE_SCHEDULER_ORDER = "Priority"  # kube-scheduler's PrioritySort: highest priority, then oldest
ENTRIES_SHOWN = 20  # pending entries listed per queue line (the count says how many there are)
SORTS = ("name", "recent", "gap")


def parse_time(text: object) -> float | None:
    """Epoch seconds of an RFC 3339 time (`2026-01-01T12:00:00.123456Z`); None when it is not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# -- policies -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyRow:
    key: str  # namespace/name
    target: str = ""  # Kind/name
    min_replicas: int | None = None
    max_replicas: int | None = None
    current: int | None = None
    desired: int | None = None
    rule: str = ""  # what limited the last decision (ScaleUpLimit, TooManyReplicas, …)
    reason: str = ""  # the last decision as a sentence with numbers
    decided: str = ""  # when (RFC 3339), from the last event or sampled decision
    ready: str = "Unknown"  # the Ready condition's status
    ready_reason: str = ""
    problem: str = ""  # a misconfiguration or failure told by the controller, until it clears
    fallback: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "target": self.target,
            "min": self.min_replicas,
            "max": self.max_replicas,
            "current": self.current,
            "desired": self.desired,
            "rule": self.rule,
            "reason": self.reason,
            "time": self.decided,
            "ready": self.ready,
            "readyReason": self.ready_reason,
            "problem": self.problem,
            "fallback": self.fallback,
        }


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def policy_key(obj: Mapping[str, Any]) -> str:
    m = meta(obj)
    return f"{m.get('namespace') or 'default'}/{m.get('name') or ''}"


def row_of(obj: Mapping[str, Any], previous: PolicyRow | None = None) -> PolicyRow:
    """A ScalingPolicy object as a row; what only events tell (the rule, the decision's time) is kept from
    `previous`, and the status's replicas replace the previous ones only when the status has them."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    assert isinstance(spec, Mapping) and isinstance(status, Mapping)
    ref = spec.get("targetRef") if isinstance(spec.get("targetRef"), Mapping) else {}
    assert isinstance(ref, Mapping)
    conditions = {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}
    ready = conditions.get("Ready") or {}
    fallback = conditions.get("Fallback") or {}
    problems = [
        f"{c.get('reason')}: {c.get('message')}"
        for t, c in conditions.items()
        if c.get("status") == "False" and t not in ("Active", "Fallback")
    ]
    base = previous or PolicyRow(policy_key(obj))
    current, desired = _int(status.get("currentReplicas")), _int(status.get("desiredReplicas"))
    return replace(
        base,
        key=policy_key(obj),
        target=f"{ref.get('kind') or 'Deployment'}/{ref.get('name') or ''}",
        min_replicas=_int(spec.get("minReplicas")),
        max_replicas=_int(spec.get("maxReplicas")),
        current=current if current is not None else base.current,
        desired=desired if desired is not None else base.desired,
        reason=str(status.get("lastDecision") or base.reason),
        ready=str(ready.get("status") or "Unknown"),
        ready_reason=str(ready.get("reason") or ""),
        problem="; ".join(problems),
        fallback=fallback.get("status") == "True" or (base.fallback and not fallback),
    )


def is_problem(record: Mapping[str, Any]) -> bool:
    """A record that tells a failure or a recovery rather than a decision applied."""
    return "failure" in record or "recovery" in record or record.get("kind") == "ScalingProblem"


def with_record(row: PolicyRow, record: Mapping[str, Any]) -> PolicyRow:
    """The row after a scaling-event record (a decision, or a problem that started or cleared)."""
    failure, recovery = record.get("failure"), record.get("recovery")
    if isinstance(failure, Mapping):
        return replace(row, problem=f"{failure.get('reason')}: {failure.get('message')}")
    if isinstance(recovery, Mapping):
        return replace(row, problem="")
    if is_problem(record):
        return row
    replicas = record.get("replicas") if isinstance(record.get("replicas"), Mapping) else {}
    assert isinstance(replicas, Mapping)
    return replace(
        row,
        target=str(record.get("target") or row.target),
        current=_int(replicas.get("current")) if _int(replicas.get("current")) is not None else row.current,
        desired=_int(replicas.get("desired")) if _int(replicas.get("desired")) is not None else row.desired,
        rule=str(record.get("rule") or ""),
        reason=str(record.get("reason") or ""),
        decided=str(record.get("time") or row.decided),
        fallback=bool(record.get("fallback")),
    )


def summary(rows: Iterable[PolicyRow]) -> dict[str, Any]:
    """Counts over every policy: how many, ready, scaling up or down, at their maximum, in fallback, with a
    problem, and the rules that limit them most often."""
    out = {"policies": 0, "ready": 0, "up": 0, "down": 0, "atMax": 0, "fallback": 0, "problems": 0}
    rules: dict[str, int] = {}
    for r in rows:
        out["policies"] += 1
        out["ready"] += r.ready == "True"
        if r.current is not None and r.desired is not None:
            out["up"] += r.desired > r.current
            out["down"] += r.desired < r.current
        out["atMax"] += r.max_replicas is not None and r.desired is not None and r.desired >= r.max_replicas
        out["fallback"] += r.fallback
        out["problems"] += bool(r.problem)
        if r.rule:
            rules[r.rule] = rules.get(r.rule, 0) + 1
    top = sorted(rules.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
    return {**out, "rules": dict(top)}


def _sort_key(sort: str) -> Any:
    if sort == "recent":
        return lambda r: ("" if not r.decided else _invert(r.decided), r.key)
    if sort == "gap":
        return lambda r: (-abs((r.desired or 0) - (r.current or 0)), not r.problem, r.key)
    return lambda r: r.key


def _invert(text: str) -> str:
    """A string that sorts in the reverse order of `text` (newest time first)."""
    return "".join(chr(0x10FFFF - ord(c)) for c in text)


def policies_page(
    rows: Iterable[PolicyRow], query: str = "", offset: int = 0, limit: int = 50, sort: str = "name"
) -> dict[str, Any]:
    """One page of rows matching `query` (in the key, the target, the rule or the problem), sorted by name,
    most recent decision (`recent`) or gap between desired and current (`gap`); with the summary of all."""
    if sort not in SORTS:
        raise ValueError(f"sort: {sort!r} is not one of {', '.join(SORTS)}")
    everything = list(rows)
    needle = query.strip().lower()
    matched = [
        r
        for r in everything
        if not needle or any(needle in s.lower() for s in (r.key, r.target, r.rule, r.problem))
    ]
    matched.sort(key=_sort_key(sort))
    offset = max(0, offset)
    limit = max(1, min(limit, PAGE_LIMIT_MAX))
    return {
        "total": len(everything),
        "matched": len(matched),
        "offset": offset,
        "limit": limit,
        "sort": sort,
        "items": [r.to_json() for r in matched[offset : offset + limit]],
        "summary": summary(everything),
    }


# -- events ---------------------------------------------------------------------------------------------


def event_of(record: Mapping[str, Any], seq: int) -> dict[str, Any]:
    """A scaling-event record as the page's event list shows it (the full record stays in Kubernetes and on
    the Kafka topic): which policy, current -> desired, the Event's reason and type, the sentence."""
    replicas = record.get("replicas") if isinstance(record.get("replicas"), Mapping) else {}
    assert isinstance(replicas, Mapping)
    current, desired = _int(replicas.get("current")), _int(replicas.get("desired"))
    told = record.get("failure") or record.get("recovery")
    way = "none"
    if not is_problem(record) and current is not None and desired is not None:
        way = "up" if desired > current else "down" if desired < current else "none"
    out: dict[str, Any] = {
        "id": seq,
        "time": str(record.get("time") or ""),
        "policy": str(record.get("policy") or ""),
        "target": str(record.get("target") or ""),
        "current": current,
        "desired": desired,
        "way": way,
        "rule": str(record.get("rule") or ""),
        "reason": str(record.get("eventReason") or record.get("rule") or ""),
        "type": str(record.get("eventType") or ("Warning" if record.get("failure") else "Normal")),
        "note": str(told.get("message") if isinstance(told, Mapping) else record.get("reason") or ""),
        "acted": bool(record.get("acted", False)),
    }
    if (record.get("count") or 1) != 1:
        out["count"] = record.get("count")
    return out


# -- the replicas-vs-metric chart -------------------------------------------------------------------------


class Point(NamedTuple):
    t: float  # epoch seconds
    current: int
    desired: int
    wanted: int | None  # the largest proposal of a trigger that read its metric; None: none did
    load: float | None = None  # the largest measured load, in replicas' worth of work; None: none measured


def point_of(record: Mapping[str, Any]) -> Point | None:
    """A decision's record as a chart point; None for a problem record or one without replicas or time."""
    if is_problem(record):
        return None
    t = parse_time(record.get("time"))
    replicas = record.get("replicas") if isinstance(record.get("replicas"), Mapping) else {}
    assert isinstance(replicas, Mapping)
    current, desired = _int(replicas.get("current")), _int(replicas.get("desired"))
    if t is None or current is None or desired is None:
        return None
    read = [p for p in record.get("proposals") or [] if isinstance(p, Mapping) and not p.get("failed")]
    asked = [n for p in read if (n := _int(p.get("replicas"))) is not None]
    loads = [float(d) for p in read if isinstance(d := p.get("demand"), (int, float))]
    return Point(t, current, desired, max(asked) if asked else None, max(loads) if loads else None)


class Series:
    """One policy's points, oldest first, at most `capacity` of them and at most one per `resolution` seconds
    (a newer point within it replaces the last, unless the last changed the replicas: a step is kept)."""

    def __init__(self, capacity: int = 720, resolution: float = 5.0) -> None:
        self.points: deque[Point] = deque(maxlen=capacity)
        self.resolution = resolution

    def add(self, p: Point) -> None:
        if self.points:
            last = self.points[-1]
            if p.t < last.t or p == last:
                return  # an older decision seen late (a sampled one after its event): nothing new
            before = self.points[-2] if len(self.points) > 1 else None
            steady = (p.current, p.desired) == (last.current, last.desired)
            last_is_step = before is not None and (before.current, before.desired) != (
                last.current,
                last.desired,
            )
            if p.t - last.t < self.resolution and steady and not last_is_step:
                self.points[-1] = p
                return
        self.points.append(p)

    def window(self, now: float, seconds: float = HOUR) -> list[Point]:
        return [p for p in self.points if p.t >= now - seconds]


def chart(key: str, points: Sequence[Point], now: float, seconds: float = HOUR) -> dict[str, Any]:
    """The last `seconds` of one policy: `points` as [t, current, desired, wanted, load] (t relative to
    `to`)."""
    shown = [p for p in points if now - seconds <= p.t <= now + 60]
    return {
        "policy": key,
        "from": round(now - seconds, 3),
        "to": round(now, 3),
        "points": [[round(p.t - now, 1), p.current, p.desired, p.wanted, p.load] for p in shown],
    }


# -- GPU nodes, applications, queues ----------------------------------------------------------------------


def nodes(view: ClusterView) -> dict[str, Any]:
    """`top node`'s view: per node its allocation and DCGM's usage; per GPU what holds it (`top node -d`'s
    allocation text), its utilization and memory."""
    out = []
    for n in view.nodes:
        usage = n.usage
        out.append(
            {
                "name": n.name,
                "status": n.status,
                "model": n.model,
                "gpuTotal": n.total,
                "gpuAllocated": n.allocated,
                "mode": n.mode,
                "pods": n.pods,
                "util": usage.util if usage else None,
                "memoryUsedMiB": usage.used_mib if usage else None,
                "memoryTotalMiB": usage.total_mib if usage else None,
                "gpus": [
                    {
                        "index": g.index,
                        "memoryTotalMiB": g.memory_total_mib,
                        "allocated": g.allocated,
                        "allocation": g.allocation_text(),
                        "mode": g.mode,
                        "pods": list(dict.fromkeys(h.ref for h in g.holders)),
                        "util": g.metric.util if g.metric else None,
                        "memoryUsedMiB": g.metric.used_mib if g.metric else None,
                    }
                    for g in n.gpus
                ],
                "unassigned": [u.to_json() for u in n.unassigned],
            }
        )
    return {
        "nodes": out,
        "gpuTotal": view.total,
        "gpuAllocated": view.allocated,
        "metrics": view.metrics,
        "problems": list(view.problems),
    }


def jobs(tops: Sequence[JobTop]) -> dict[str, Any]:
    """`top job`'s view: per job (training, batch, inference service, pipeline) its GPUs and usage."""
    out = []
    for t in tops:
        usage = t.usage
        out.append(
            {
                "name": t.name,
                "namespace": t.namespace,
                "kind": t.kind,
                "phase": t.phase,
                "gpuRequested": t.requested,
                "gpuAllocated": t.allocated,
                "nodes": list(t.nodes),
                "instances": len(t.instances),
                "util": usage.util if usage else None,
                "memoryUsedMiB": usage.used_mib if usage else None,
                "memoryTotalMiB": usage.total_mib if usage else None,
            }
        )
    return {"jobs": out, "metrics": any(t.usage is not None for t in tops)}


def _waiting(pod: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    return not spec.get("nodeName") and not is_terminal(pod) and not meta(pod).get("deletionTimestamp")


def _entry_of(pod: Mapping[str, Any]) -> str:
    """The scheduler entry a pending pod belongs to: its gang's, else its own (`jobs.scheduler.groups`)."""
    m = meta(pod)
    try:
        ref = group_of(pod)
    except ValueError:
        ref = None
    if ref is not None:
        return entry_uid(ref.namespace, ref.name)
    return entry_uid(str(m.get("namespace") or "default"), str(m.get("name") or ""))


def queues(
    pods: Sequence[Mapping[str, Any]],
    podgroups: Sequence[Mapping[str, Any]],
    queue_objects: Sequence[Mapping[str, Any]],
    default_policy: str = DEFAULT_POLICY,
    shown: int = ENTRIES_SHOWN,
) -> dict[str, Any]:
    """The queues with pending work, per scheduler and queue, in the order the scheduler tries them (the
    queue's policy: a Queue's `tidescale.io/queue-policy`, else `default_policy`; kube-scheduler's pods by
    priority, then age), each entry with why it waits; and every Volcano Queue with its status counts."""
    waiting = [p for p in pods if _waiting(p)]
    why: dict[tuple[str, str], tuple[str, int]] = {}  # (scheduler, entry uid) -> (first message, pods)
    for pod in waiting:
        scheduler = str((pod.get("spec") or {}).get("schedulerName") or KUBE_SCHEDULER)
        key = (scheduler, _entry_of(pod))
        message, count = why.get(key, (pod_view(pod).message, 0))
        why[key] = (message, count + 1)
    policies = queue_policies(queue_objects, default_policy)
    kube_order = queue_policies((), KUBE_SCHEDULER_ORDER)
    statuses = {
        str(meta(q).get("name")): dict(q.get("status") or {}) for q in queue_objects if meta(q).get("name")
    }
    lines: list[dict[str, Any]] = []
    for scheduler in sorted({s for s, _ in why}):
        per_scheduler = kube_order if scheduler == KUBE_SCHEDULER else policies
        by_queue: dict[str, list[Any]] = {}
        for entry, unit in pending_entries(waiting, podgroups, scheduler):
            by_queue.setdefault(entry.queue, []).append((entry, unit))
        for queue, entries in sorted(by_queue.items()):
            entries.sort(key=lambda t: line_order(per_scheduler, t[0]))
            items = []
            for position, (entry, unit) in enumerate(entries[:shown], start=1):
                message, count = why.get((scheduler, entry.uid), ("", 0))
                items.append(
                    {
                        "position": position,
                        "namespace": entry.group.namespace,
                        "name": entry.group.name,
                        "unit": unit.split(":", 1)[0],  # job, gang or pod
                        "priority": entry.group.priority,
                        "pods": count,
                        "why": message,
                    }
                )
            lines.append(
                {
                    "scheduler": scheduler,
                    "queue": queue,
                    "policy": per_scheduler.policy(queue).name,
                    "pending": len(entries),
                    "entries": items,
                    **({"status": statuses[queue]} if queue in statuses else {}),
                }
            )
    listed = {line["queue"] for line in lines}
    for name, status in sorted(statuses.items()):
        if name not in listed:
            lines.append(
                {
                    "scheduler": "",
                    "queue": name,
                    "policy": policies.policy(name).name,
                    "pending": 0,
                    "entries": [],
                    "status": status,
                }
            )
    return {"queues": lines, "pendingPods": len(waiting)}
