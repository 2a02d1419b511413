"""Where a pending job stands in its queue, for `jobs get`: the order in which the tidescale scheduler
tries the pending entries of one queue, computed from the cluster's pods, PodGroups and Queues (plain
JSON dicts) with the scheduler's own readers (`jobs.scheduler.objects`) and queue policies (`jobs.queues`).

- The pending pods are those the scheduler would place (`wants_scheduler`: its name, unbound, not
  finished, not being deleted, ungated). They become entries as the scheduler builds them
  (`jobs.scheduler.groups.build_offer`): a pod that names a PodGroup joins its gang, whose queue is the
  PodGroup's (else its pod's), whose priority is the highest of its pods' and whose arrival is its oldest
  pod's; any other pod is an entry of its own in its pod's queue (the `scheduling.volcano.sh/queue-name`
  annotation or the `tidescale.io/queue` label, else `default`).
- Arrival is creation time; pods created within the same second (the API server's resolution) are
  taken by namespace and name, where the scheduler takes them in the order it first saw them.
- One queue's entries are sorted as the scheduler's cycle sorts a queue's line: by the queue policy's
  `order`, then the entry's uid. FIFO: oldest first; LIFO: newest first; Priority, and Capacity and
  FairShare (whose ordering is Priority): highest priority, then oldest. The policy is the Queue's
  `tidescale.io/queue-policy` annotation, else `default_policy` (the scheduler configuration's default,
  FIFO, unless the caller knows better).
- A launcher job is one unit whatever number of entries its pods make (the parallel pods of a BatchJob
  are one entry each): it stands where its first entry stands, and it is counted once among the pending
  units of its queue.

It is the order of trying, not a promise: an entry that does not fit is passed by later ones that do,
and a Capacity queue tries the entries that stay within its guarantee first (which depends on what
runs; not modelled here).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jobs.cycle import line_order
from jobs.launcher.render import JOB_LABEL
from jobs.queues import Entry, PerQueue, QueuePolicy
from jobs.scheduler.config import SchedulerConfig
from jobs.scheduler.groups import entry_uid
from jobs.scheduler.objects import (
    group_of,
    group_spec_of,
    meta,
    pod_queue,
    priority_of,
    queue_of,
    wants_scheduler,
)
from jobs.workload import PodGroup

DEFAULT_POLICY: str = SchedulerConfig.model_fields["queue_policy"].default


@dataclass(frozen=True)
class QueuePosition:
    """`position` (1: tried first) among the `pending` units of `queue`, ordered by `policy`."""

    queue: str
    position: int
    pending: int
    policy: str

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "position": self.position,
            "pending": self.pending,
            "policy": self.policy,
        }

    def text(self) -> str:
        return f"position {self.position} of {self.pending} pending"


def job_unit(namespace: str, job: str) -> str:
    """The unit key of a launcher job."""
    return f"job:{namespace}/{job}"


def _unit(pod: Mapping[str, Any], fallback: str) -> str:
    m = meta(pod)
    job = (m.get("labels") or {}).get(JOB_LABEL)
    return job_unit(str(m.get("namespace") or "default"), str(job)) if job else fallback


@dataclass
class _Gathered:
    """One entry under construction: its pods' queue, priority, arrival, and the unit it counts for."""

    name: str
    namespace: str
    queue: str
    priority: int
    seq: int
    unit: str


def pending_entries(
    pods: Iterable[Mapping[str, Any]],
    podgroups: Iterable[Mapping[str, Any]],
    scheduler_name: str,
) -> list[tuple[Entry, str]]:
    """(entry, unit key) of every entry the scheduler `scheduler_name` has pending (the module's rules)."""
    mine = [p for p in pods if wants_scheduler(p, scheduler_name)]
    mine.sort(
        key=lambda p: (
            str(meta(p).get("creationTimestamp") or ""),
            str(meta(p).get("namespace") or ""),
            str(meta(p).get("name") or ""),
        )
    )
    group_queues: dict[str, str] = {}
    for obj in podgroups:
        try:
            spec = group_spec_of(obj)
        except ValueError:
            continue  # the scheduler holds such a gang back; it keeps its pods' queue here
        group_queues[spec.key] = spec.queue
    gathered: dict[str, _Gathered] = {}
    for seq, pod in enumerate(mine):
        m = meta(pod)
        namespace, name = str(m.get("namespace") or "default"), str(m.get("name") or "")
        try:
            ref = group_of(pod)
        except ValueError:
            ref = None  # an unreadable gang label: the scheduler reports the pod; it waits alone here
        if ref is None:
            uid = entry_uid(namespace, name)
            unit = _unit(pod, f"pod:{uid}")
            gathered[uid] = _Gathered(name, namespace, pod_queue(pod), priority_of(pod), seq, unit)
            continue
        uid = entry_uid(ref.namespace, ref.name)
        found = gathered.get(uid)
        if found is None:
            queue = group_queues.get(ref.key, pod_queue(pod))
            gathered[uid] = _Gathered(
                ref.name, ref.namespace, queue, priority_of(pod), seq, _unit(pod, f"gang:{ref.key}")
            )
        else:  # pods arrive oldest first: the gang's arrival is its first pod's
            found.priority = max(found.priority, priority_of(pod))
    return [
        (
            Entry(PodGroup(g.name, (), namespace=g.namespace, queue=g.queue, priority=g.priority), g.seq),
            g.unit,
        )
        for g in gathered.values()
    ]


def queue_policies(queues: Iterable[Mapping[str, Any]], default_policy: str = DEFAULT_POLICY) -> PerQueue:
    """The scheduler's policy per queue: a Queue's `tidescale.io/queue-policy`, else `default_policy`."""
    named: dict[str, str | QueuePolicy] = {}
    for obj in queues:
        try:
            view = queue_of(obj)
        except ValueError:
            continue  # the scheduler refuses such a queue's entries; they stand in the default order here
        if view.policy:
            named[view.queue.name] = view.policy
    return PerQueue(default_policy, named)


def queue_positions(
    pods: Iterable[Mapping[str, Any]],
    podgroups: Iterable[Mapping[str, Any]],
    queues: Iterable[Mapping[str, Any]],
    scheduler_name: str,
    default_policy: str = DEFAULT_POLICY,
) -> dict[str, QueuePosition]:
    """Unit key (`job_unit(namespace, job)` for a launcher job) -> where it stands in its queue."""
    policy = queue_policies(queues, default_policy)
    by_queue: dict[str, list[tuple[Entry, str]]] = {}
    for entry, unit in pending_entries(pods, podgroups, scheduler_name):
        by_queue.setdefault(entry.queue, []).append((entry, unit))
    out: dict[str, QueuePosition] = {}
    for queue, entries in by_queue.items():
        entries.sort(key=lambda t: line_order(policy, t[0]))  # as the cycle sorts a queue's line
        units = list(dict.fromkeys(unit for _, unit in entries))
        name = policy.policy(queue).name
        for k, unit in enumerate(units):
            out[unit] = QueuePosition(queue, k + 1, len(units), name)
    return out


def position_of(
    namespace: str,
    job: str,
    pods: Iterable[Mapping[str, Any]],
    podgroups: Iterable[Mapping[str, Any]],
    queues: Iterable[Mapping[str, Any]],
    scheduler_name: str,
    default_policy: str = DEFAULT_POLICY,
) -> QueuePosition | None:
    """Where the launcher job `namespace/job` stands in its queue; None when it has no pending pod."""
    positions = queue_positions(pods, podgroups, queues, scheduler_name, default_policy)
    return positions.get(job_unit(namespace, job))


__all__ = [
    "DEFAULT_POLICY",
    "QueuePosition",
    "job_unit",
    "pending_entries",
    "position_of",
    "queue_policies",
    "queue_positions",
]
