"""One scheduling cycle: pending pod groups, queues and a snapshot in; decisions out.

`schedule_cycle(queues, snapshot)` decides against a copy of the snapshot and returns a
`CycleResult`; nothing outside is touched. Steps, repeated until no entry is left:

1. every queue offers its best entry under the queue policy; the policy's key (then the uid)
   picks one across queues, re-evaluated after each admission so fair shares stay current;
2. the policy's quota verdict (max, guarantee, cohort borrowing) admits or refuses it;
3. the group's placement plugin places it on the working copy of the cluster;
4. if it does not fit but its queue is entitled to capacity that borrowers hold, the borrowers'
   workloads to reclaim are named (they must finish first; the group waits for the next cycle).

Deterministic: the same inputs give the same result (total orders, final tie-break by uid).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from jobs.placement import Placement, PlacementRegistry, default_registry
from jobs.queues import Book, Entry, Queue, QueuePolicy, Running, demand
from jobs.resources import CPU, EPHEMERAL, MEMORY, Resources
from jobs.snapshot import ClusterState

ADMITTED = "Admitted"
UNSCHEDULABLE = "Unschedulable"
OVER_QUOTA = "OverQuota"
RECLAIMING = "Reclaiming"


@dataclass(frozen=True)
class QueueState:
    """Queue definitions, the policy over them, and the pending entries (in arrival order)."""

    policy: QueuePolicy
    queues: Sequence[Queue] = ()
    pending: Sequence[Entry] = ()


@dataclass(frozen=True)
class Decision:
    uid: str
    queue: str
    outcome: str  # Admitted, Unschedulable, OverQuota, Reclaiming
    detail: str = ""
    placement: Placement | None = field(default=None, compare=False)
    borrowing: bool = False


@dataclass(frozen=True)
class Reclaim:
    victim: str
    victim_queue: str
    beneficiary: str
    reason: str


@dataclass(frozen=True)
class CycleResult:
    decisions: tuple[Decision, ...]
    reclaims: tuple[Reclaim, ...] = ()

    @property
    def admitted(self) -> tuple[str, ...]:
        return tuple(d.uid for d in self.decisions if d.outcome == ADMITTED)

    def outcome(self, uid: str) -> Decision:
        return next(d for d in self.decisions if d.uid == uid)


def running_from(snapshot: ClusterState) -> list[Running]:
    """Groups already running in the snapshot, charged to their queues; a group's priority is its
    pods' highest and its age the position of its first pod in the snapshot."""
    usage: dict[tuple[str, str], Resources] = {}
    priority: dict[tuple[str, str], int] = {}
    first: dict[tuple[str, str], int] = {}
    for order, pod in enumerate(snapshot.bound):
        if pod.queue is None:
            continue
        key = (pod.queue, f"{pod.namespace}/{pod.group or pod.name}")
        r = pod.request.resources
        amounts = {k: r[k] for k in (CPU, MEMORY, EPHEMERAL) if r[k]}
        if pod.request.gpu_milli:
            amounts["gpu"] = pod.request.gpu_milli
        usage[key] = usage.get(key, Resources()) + Resources(amounts)
        priority[key] = max(priority.get(key, pod.priority), pod.priority)
        first.setdefault(key, order)
    return [
        Running(uid, q, use, priority[(q, uid)], first[(q, uid)]) for (q, uid), use in sorted(usage.items())
    ]


def _capacity(snapshot: ClusterState) -> Resources:
    cap = snapshot.capacity
    gpu = sum(1000 * len(n.devices.gpus) for n in snapshot.nodes)
    return Resources({k: cap[k] for k in (CPU, MEMORY, EPHEMERAL) if cap[k]} | ({"gpu": gpu} if gpu else {}))


def schedule_cycle(
    queues: QueueState, snapshot: ClusterState, registry: PlacementRegistry | None = None
) -> CycleResult:
    registry = registry or default_registry()
    policy = queues.policy
    state = snapshot.copy()
    book = Book(queues.queues, _capacity(snapshot), running_from(snapshot))
    left = sorted(queues.pending, key=lambda e: (e.seq, e.uid))
    decisions: list[Decision] = []
    reclaims: list[Reclaim] = []
    reclaimed: set[str] = set()
    while left:
        # 1. each queue's best entry, then the best across queues
        heads: dict[str, Entry] = {}
        for e in left:
            cur = heads.get(e.queue)
            if cur is None or (policy.key(e, book), e.uid) < (policy.key(cur, book), cur.uid):
                heads[e.queue] = e
        entry = min(heads.values(), key=lambda e: (policy.key(e, book), e.uid))
        left.remove(entry)
        # 2. quota
        verdict = policy.admit(entry, book)
        if not verdict.ok:
            decisions.append(Decision(entry.uid, entry.queue, OVER_QUOTA, verdict.reason))
            continue
        # 3. placement on the working copy
        result = registry.build(entry.group.placement).place(entry.group, state)
        if isinstance(result, Placement):
            placed = {b.pod for b in result.bindings}
            book.charge(entry.queue, _placed_demand(entry, placed))
            detail = ", ".join(f"{b.pod}->{b.node}" for b in result.bindings)
            decisions.append(Decision(entry.uid, entry.queue, ADMITTED, detail, result, verdict.borrowing))
            continue
        # 4. entitled but no room: name what borrowers must give back
        victims = _pick_victims(entry, verdict.reclaim, reclaimed)
        if victims:
            for v in victims:
                reclaimed.add(v.uid)
                reclaims.append(
                    Reclaim(
                        v.uid,
                        v.queue,
                        entry.uid,
                        f"queue {entry.queue} reclaims its guarantee from {v.queue}",
                    )
                )
            decisions.append(
                Decision(
                    entry.uid,
                    entry.queue,
                    RECLAIMING,
                    f"waiting for {', '.join(v.uid for v in victims)}: {result}",
                )
            )
            continue
        decisions.append(Decision(entry.uid, entry.queue, UNSCHEDULABLE, str(result)))
    return CycleResult(tuple(decisions), tuple(reclaims))


def _placed_demand(entry: Entry, placed: set[str]) -> Resources:
    return demand(replace(entry.group, pods=tuple(p for p in entry.group.pods if p.name in placed)))


def _pick_victims(entry: Entry, candidates: Sequence[Running], taken: set[str]) -> list[Running]:
    """Borrowers' workloads, in reclaim order, until their usage covers the entry's demand (none if
    all of them together would not)."""
    need = demand(entry.group)
    got = Resources()
    out: list[Running] = []
    for v in candidates:
        if got.fits(need):
            break
        if v.uid in taken:
            continue
        out.append(v)
        got = got + v.usage
    return out if got.fits(need) else []
