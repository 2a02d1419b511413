"""One scheduling cycle: pending pod groups, queues and a snapshot in; decisions out.

`schedule_cycle(queues, snapshot)` decides against a copy of the snapshot and returns a
`CycleResult`; nothing outside is touched. Each distinct placement policy is built once per cycle and
learns the workload once (`PlacementPolicy.learn`: the snapshot's pods plus every pending pod), so
what it caches (node-class scores) serves every group. Steps, repeated until no entry is left:

1. every queue offers its best entry under the queue policy (its first of tier 0 in the queue's
   order, else its first); the policy's key (then the uid) picks one across queues, re-evaluated
   for the queue that just changed so fair shares stay current;
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
from typing import Any

from jobs.placement import Placement, PlacementPolicy, PlacementRegistry, Unschedulable, default_registry
from jobs.queues import Book, Entry, Queue, QueuePolicy, Running, demand
from jobs.resources import CPU, EPHEMERAL, MEMORY, Resources
from jobs.snapshot import ClusterState
from jobs.workload import PlacementSpec

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
    why: Unschedulable | None = field(default=None, compare=False)  # nodes counted per reason, when placed


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


class _Line:
    """One queue's pending entries in the policy's order, with what was taken out.

    `scan` only moves forward: entries it passed were of tier 1, and tiers never drop in a cycle
    (usage only grows), so a queue's next entry costs amortised O(1)."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.taken = [False] * len(entries)
        self.first = 0
        self.scan = 0
        self.left = len(entries)

    def head(self, policy: QueuePolicy, book: Book) -> Entry:
        n = len(self.entries)
        while self.scan < n and (self.taken[self.scan] or policy.tier(self.entries[self.scan], book)):
            self.scan += 1
        if self.scan < n:
            return self.entries[self.scan]
        while self.taken[self.first]:
            self.first += 1
        return self.entries[self.first]

    def take(self, entry: Entry) -> None:
        k = self.scan if self.scan < len(self.entries) and self.entries[self.scan] is entry else self.first
        assert self.entries[k] is entry
        self.taken[k] = True
        self.left -= 1


def line_order(policy: QueuePolicy, entry: Entry) -> tuple[Any, str]:
    """Where `entry` stands in its queue's line: the policy's order, then its uid (a total order)."""
    return policy.order(entry), entry.uid


def _lines(pending: Sequence[Entry], policy: QueuePolicy) -> dict[str, _Line]:
    by_queue: dict[str, list[Entry]] = {}
    for e in pending:
        by_queue.setdefault(e.queue, []).append(e)
    return {q: _Line(sorted(entries, key=lambda e: line_order(policy, e))) for q, entries in by_queue.items()}


def _placements(
    pending: Sequence[Entry], registry: PlacementRegistry, state: ClusterState
) -> dict[int, PlacementPolicy]:
    """One policy per distinct placement spec (by the spec's id), each taught the workload once."""
    by_spec: dict[int, PlacementPolicy] = {}
    by_text: dict[str, PlacementPolicy] = {}
    specs: dict[int, PlacementSpec] = {}
    for e in pending:
        spec = e.group.placement
        if id(spec) in by_spec:
            continue
        specs[id(spec)] = spec  # keeps the spec alive, so its id stays its own
        text = spec.model_dump_json()
        if text not in by_text:
            by_text[text] = registry.build(spec)
        by_spec[id(spec)] = by_text[text]
    pods = [p for e in pending for p in e.group.pods]
    for policy in by_text.values():
        policy.learn(state, pods)
    return by_spec


def schedule_cycle(
    queues: QueueState, snapshot: ClusterState, registry: PlacementRegistry | None = None
) -> CycleResult:
    registry = registry or default_registry()
    policy = queues.policy
    state = snapshot.copy()
    book = Book(queues.queues, _capacity(snapshot), running_from(snapshot))
    placements = _placements(queues.pending, registry, state)
    lines = _lines(queues.pending, policy)
    heads: dict[str, tuple[tuple[Any, ...], str, Entry]] = {}
    decisions: list[Decision] = []
    reclaims: list[Reclaim] = []
    reclaimed: set[str] = set()
    changed = set(lines)
    while lines:
        # 1. each queue's best entry (only the queue that changed needs a new look), then the best
        for q in changed:
            if q in lines:
                head = lines[q].head(policy, book)
                heads[q] = (policy.key(head, book), head.uid, head)
        _, _, entry = min(heads.values(), key=lambda h: (h[0], h[1]))
        line = lines[entry.queue]
        line.take(entry)
        del heads[entry.queue]
        if not line.left:
            del lines[entry.queue]
        changed = {entry.queue}
        # 2. quota
        verdict = policy.admit(entry, book)
        if not verdict.ok:
            decisions.append(Decision(entry.uid, entry.queue, OVER_QUOTA, verdict.reason))
            continue
        # 3. placement on the working copy
        result = placements[id(entry.group.placement)].place(entry.group, state)
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
                    why=result,
                )
            )
            continue
        decisions.append(Decision(entry.uid, entry.queue, UNSCHEDULABLE, str(result), why=result))
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
