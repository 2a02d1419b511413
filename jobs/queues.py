"""Queues and queue policies: in which order pending pod groups are tried, and whether quota allows them.

A `QueuePolicy` orders the entries within a queue (`order`, fixed for a cycle, and `tier`), gives
each queue's next entry a sort key across queues (smaller goes first; the cycle re-asks after each
admission, so dynamic orders such as fair share stay current) and a quota verdict:

- `FIFO` (oldest first), `LIFO` (newest first), `Priority` (highest priority, then oldest);
- `Capacity`: per queue `guaranteed` and `max`; a queue may borrow what others in its `cohort`
  leave idle below their guarantee, and a queue that needs its guarantee back reclaims it from
  borrowers (lowest priority, newest first; never from a queue that is not `reclaimable`);
- `FairShare`: weighted dominant-resource fairness (DRF): the queue with the smallest dominant
  share / weight goes first;
- `PerQueue`: one of the above per queue (a default for the rest).

Quotas count `cpu` (milli), `memory` (bytes) and `gpu` (GPU milli; in documents, GPUs such as "1.5").
Every key ends with the entry's uid, so the order is total and runs are deterministic.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field, field_validator

from jobs.resources import CPU, EPHEMERAL, MEMORY, Resources, to_milli, to_units
from jobs.workload import PodGroup
from kernel.documents import Spec

GPU = "gpu"
QUOTA_RESOURCES = (CPU, MEMORY, EPHEMERAL, GPU)


def quota_vector(raw: Mapping[str, str | int | float]) -> Resources:
    """A quota from a document: cpu and gpu in thousandths, memory and storage in bytes."""
    out = {}
    for name, value in raw.items():
        if name not in QUOTA_RESOURCES:
            raise ValueError(f"{name}: not a quota resource (known: {', '.join(QUOTA_RESOURCES)})")
        out[name] = to_milli(value) if name in (CPU, GPU) else to_units(value)
    return Resources({k: v for k, v in out.items() if v})


def demand(group: PodGroup) -> Resources:
    """What a group counts against quota when all its pods run."""
    total: dict[str, int] = {}
    for p in group.pods:
        for name in (CPU, MEMORY, EPHEMERAL):
            total[name] = total.get(name, 0) + p.request.resources[name]
        total[GPU] = total.get(GPU, 0) + p.request.gpu_milli
    return Resources({k: v for k, v in total.items() if v})


@dataclass(frozen=True)
class Queue:
    """A queue's quota. Capacity governs the resources named in `guaranteed` (a zero guarantee
    included: such a queue runs only on what it borrows); `max` caps the resources it names. A queue
    that is not `reclaimable` (Volcano's `reclaimable: false`) never gives its workloads back, even
    when it borrows."""

    name: str
    cohort: str | None = None
    guaranteed: Resources = field(default_factory=Resources)
    max: Resources | None = None
    weight: int = 1
    governs: tuple[str, ...] = ()
    reclaimable: bool = True

    @staticmethod
    def of(
        name: str,
        guaranteed: Mapping[str, str | int | float] | None = None,
        max: Mapping[str, str | int | float] | None = None,
        cohort: str | None = None,
        weight: int = 1,
        reclaimable: bool = True,
    ) -> Queue:
        g = dict(guaranteed or {})
        return Queue(
            name,
            cohort,
            quota_vector(g),
            quota_vector(max) if max is not None else None,
            weight,
            tuple(sorted(g)),
            reclaimable,
        )

    @property
    def governed(self) -> tuple[str, ...]:
        return self.governs or tuple(self.guaranteed)


@dataclass(frozen=True)
class Entry:
    """A pending pod group and when it arrived (a sequence number; the cycle has no clock)."""

    group: PodGroup
    seq: int

    @property
    def uid(self) -> str:
        return f"{self.group.namespace}/{self.group.name}"

    @property
    def queue(self) -> str:
        return self.group.queue


@dataclass(frozen=True)
class Running:
    """An admitted group that holds resources (a reclaim candidate)."""

    uid: str
    queue: str
    usage: Resources
    priority: int = 0
    seq: int = 0


class Book:
    """Quota usage per queue during one cycle."""

    def __init__(self, queues: Sequence[Queue], capacity: Resources, running: Sequence[Running]) -> None:
        self.queues = {q.name: q for q in queues}
        self.capacity = capacity
        self.running = list(running)
        self.usage: dict[str, Resources] = {q.name: Resources() for q in queues}
        for r in running:
            self.usage[r.queue] = self.usage.get(r.queue, Resources()) + r.usage

    def queue(self, name: str) -> Queue:
        return self.queues.get(name) or Queue(name)

    def charge(self, queue: str, amount: Resources) -> None:
        self.usage[queue] = self.usage.get(queue, Resources()) + amount

    def release(self, queue: str, amount: Resources) -> None:
        self.usage[queue] = self.usage.get(queue, Resources()) - amount

    def cohort(self, queue: str) -> list[Queue]:
        c = self.queue(queue).cohort
        return [q for q in self.queues.values() if c is not None and q.cohort == c]

    def dominant_share(self, queue: str) -> float:
        use = self.usage.get(queue, Resources())
        return max((use[r] / self.capacity[r] for r in QUOTA_RESOURCES if self.capacity[r]), default=0.0)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""
    borrowing: bool = False
    reclaim: tuple[Running, ...] = ()  # what to take back if placement fails for lack of room


def _fmt(name: str, amount: int) -> str:
    if name in (CPU, GPU):
        return f"{amount / 1000:g}"
    return f"{amount / 2**30:g}Gi"


def _over(use: Resources, limit: Resources, names: Sequence[str] | None = None) -> list[str]:
    names = tuple(limit.amounts) if names is None else names
    return [r for r in QUOTA_RESOURCES if r in names and use[r] > limit[r]]


def check_max(entry: Entry, book: Book) -> Verdict | None:
    q = book.queue(entry.queue)
    if q.max is None:
        return None
    after = book.usage.get(q.name, Resources()) + demand(entry.group)
    over = _over(after, q.max)
    if over:
        r = over[0]
        return Verdict(
            False, f"queue {q.name} would exceed its max {r}: {_fmt(r, after[r])} > {_fmt(r, q.max[r])}"
        )
    return None


class QueuePolicy(Protocol):
    """How pending entries are ordered and admitted. The cycle relies on three facts: `order` is
    fixed for a cycle; `tier` and `key` depend only on the entry, its queue and that queue's usage;
    an entry's tier never drops as its queue's usage grows. Within one queue, `key` orders entries as
    (tier, order) does, so a queue's next entry is its first of tier 0, else its first."""

    name: str

    def order(self, entry: Entry) -> tuple[Any, ...]:
        """Where the entry stands within its queue (smaller goes first)."""
        ...

    def tier(self, entry: Entry, book: Book) -> int:
        """0 when the entry may pass its queue's earlier entries of tier 1, else 1."""
        ...

    def key(self, entry: Entry, book: Book) -> tuple[Any, ...]:
        """Sort key across queues: smaller goes first. The cycle appends the uid as the final tie-break."""
        ...

    def admit(self, entry: Entry, book: Book) -> Verdict:
        """Whether quota lets the entry in now."""
        ...


class FIFO:
    name = "FIFO"

    def order(self, entry: Entry) -> tuple[Any, ...]:
        return (entry.seq,)

    def tier(self, entry: Entry, book: Book) -> int:
        return 0

    def key(self, entry: Entry, book: Book) -> tuple[Any, ...]:
        return self.order(entry)

    def admit(self, entry: Entry, book: Book) -> Verdict:
        return check_max(entry, book) or Verdict(True)


class LIFO(FIFO):
    name = "LIFO"

    def order(self, entry: Entry) -> tuple[Any, ...]:
        return (-entry.seq,)


class Priority(FIFO):
    name = "Priority"

    def order(self, entry: Entry) -> tuple[Any, ...]:
        return (-entry.group.priority, entry.seq)


ORDERINGS: dict[str, Callable[[], QueuePolicy]] = {"FIFO": FIFO, "LIFO": LIFO, "Priority": Priority}


def _within(entry: Entry, book: Book) -> bool:
    """The entry's demand stays within its queue's guarantee (a queue without one: never)."""
    q = book.queue(entry.queue)
    if not q.governed:
        return False
    after = book.usage.get(q.name, Resources()) + demand(entry.group)
    return not _over(after, q.guaranteed, q.governed)


class Capacity:
    """Guaranteed and max per queue, borrowing idle guarantee within a cohort, reclaim by lenders."""

    name = "Capacity"

    def __init__(self, ordering: QueuePolicy | None = None) -> None:
        self.ordering = ordering or Priority()

    def order(self, entry: Entry) -> tuple[Any, ...]:
        return self.ordering.order(entry)

    def tier(self, entry: Entry, book: Book) -> int:
        return 0 if _within(entry, book) else 1

    def key(self, entry: Entry, book: Book) -> tuple[Any, ...]:
        q = book.queue(entry.queue)
        use = book.usage.get(q.name, Resources())
        ratio = max((use[r] / q.guaranteed[r] if q.guaranteed[r] else 1.0 for r in q.governed), default=1.0)
        return (self.tier(entry, book), ratio, *self.order(entry))

    def idle_in_cohort(self, queue: str, book: Book) -> Resources:
        idle: dict[str, int] = {}
        for q in book.cohort(queue):
            if q.name == queue:
                continue
            use = book.usage.get(q.name, Resources())
            for r in q.governed:
                idle[r] = idle.get(r, 0) + max(0, q.guaranteed[r] - use[r])
        return Resources({k: v for k, v in idle.items() if v})

    def admit(self, entry: Entry, book: Book) -> Verdict:
        capped = check_max(entry, book)
        if capped:
            return capped
        q = book.queue(entry.queue)
        use = book.usage.get(q.name, Resources())
        after = use + demand(entry.group)
        over = _over(after, q.guaranteed, q.governed)
        if not over:
            return Verdict(True, reclaim=self.reclaimable(entry, book))
        idle = self.idle_in_cohort(q.name, book)
        for r in over:
            need = after[r] - q.guaranteed[r]
            if need > idle[r]:
                return Verdict(
                    False,
                    f"queue {q.name} is above its guaranteed {r}"
                    f" ({_fmt(r, after[r])} > {_fmt(r, q.guaranteed[r])})"
                    f" and cohort {q.cohort or '(none)'} has only {_fmt(r, idle[r])} idle to lend",
                )
        return Verdict(True, borrowing=True)

    def reclaimable(self, entry: Entry, book: Book) -> tuple[Running, ...]:
        """Borrowers' workloads that could be taken back to make room for an entitled entry (none
        from queues that are not reclaimable)."""
        borrowers = []
        for q in book.cohort(entry.queue):
            if q.name == entry.queue or not q.reclaimable:
                continue
            if _over(book.usage.get(q.name, Resources()), q.guaranteed, q.governed):
                borrowers.append(q.name)
        victims = [r for r in book.running if r.queue in borrowers]
        victims.sort(key=lambda r: (r.priority, -r.seq, r.uid))
        return tuple(victims)


class FairShare:
    """Weighted DRF across queues; within a queue, the given ordering (default Priority)."""

    name = "FairShare"

    def __init__(self, ordering: QueuePolicy | None = None) -> None:
        self.ordering = ordering or Priority()

    def order(self, entry: Entry) -> tuple[Any, ...]:
        return self.ordering.order(entry)

    def tier(self, entry: Entry, book: Book) -> int:
        return 0

    def share(self, queue: str, book: Book) -> float:
        return book.dominant_share(queue) / max(1, book.queue(queue).weight)

    def key(self, entry: Entry, book: Book) -> tuple[Any, ...]:
        return (self.share(entry.queue, book), *self.order(entry))

    def admit(self, entry: Entry, book: Book) -> Verdict:
        return check_max(entry, book) or Verdict(True)


POLICIES: dict[str, Callable[[], QueuePolicy]] = {**ORDERINGS, "Capacity": Capacity, "FairShare": FairShare}


def policy_named(name: str) -> QueuePolicy:
    """A queue policy by its name, with its default ordering (Capacity, FairShare: Priority)."""
    make = POLICIES.get(name)
    if make is None:
        raise KeyError(f"no queue policy {name!r} (known: {', '.join(POLICIES)})")
    return make()


class PerQueue:
    """A policy per queue (by name or built), `default` for queues not named.

    Within a queue, entries go in that queue's order (Capacity queues: entries within the guarantee
    first). Across queues the key is (capacity tier: 0 when a Capacity queue's entry stays within its
    guarantee, else 1, and 0 for other queues; dominant share / weight for FairShare queues, 0.0 for
    others; the queue's ordering key). Capacity queues are admitted by Capacity's rules (guarantee,
    cohort borrowing, reclaim), the others by their `max` alone.
    """

    name = "PerQueue"

    def __init__(
        self, default: str | QueuePolicy = "FIFO", queues: Mapping[str, str | QueuePolicy] | None = None
    ) -> None:
        self.default = _built(default)
        self.policies = {q: _built(p) for q, p in (queues or {}).items()}

    def policy(self, queue: str) -> QueuePolicy:
        return self.policies.get(queue, self.default)

    def order(self, entry: Entry) -> tuple[Any, ...]:
        return self.policy(entry.queue).order(entry)

    def tier(self, entry: Entry, book: Book) -> int:
        return self.policy(entry.queue).tier(entry, book)

    def key(self, entry: Entry, book: Book) -> tuple[Any, ...]:
        p = self.policy(entry.queue)
        share = p.share(entry.queue, book) if isinstance(p, FairShare) else 0.0
        return (p.tier(entry, book), share, *p.order(entry))

    def admit(self, entry: Entry, book: Book) -> Verdict:
        return self.policy(entry.queue).admit(entry, book)


def _built(policy: str | QueuePolicy) -> QueuePolicy:
    if isinstance(policy, str):
        return policy_named(policy)
    if isinstance(policy, PerQueue):
        raise ValueError("a PerQueue policy cannot name another PerQueue policy for a queue")
    return policy


# -- documents and the registry ----------------------------------------------------------------

Ordering = Literal["FIFO", "LIFO", "Priority"]


class FIFOSpec(Spec):
    type: Literal["FIFO"] = "FIFO"


class LIFOSpec(Spec):
    type: Literal["LIFO"] = "LIFO"


class PrioritySpec(Spec):
    type: Literal["Priority"] = "Priority"


class CapacitySpec(Spec):
    type: Literal["Capacity"] = "Capacity"
    ordering: Ordering = "Priority"


class FairShareSpec(Spec):
    type: Literal["FairShare"] = "FairShare"
    ordering: Ordering = "Priority"


PolicyName = Literal["FIFO", "LIFO", "Priority", "Capacity", "FairShare"]


class PerQueueSpec(Spec):
    type: Literal["PerQueue"] = "PerQueue"
    default: PolicyName = "FIFO"
    queues: dict[str, PolicyName] = {}


QueuePolicySpec = Annotated[
    FIFOSpec | LIFOSpec | PrioritySpec | CapacitySpec | FairShareSpec | PerQueueSpec,
    Field(discriminator="type"),
]


class QueueSpec(Spec):
    name: str = Field(min_length=1)
    cohort: str | None = None
    guaranteed: dict[str, str | int | float] = {}
    max: dict[str, str | int | float] | None = None
    weight: int = Field(1, ge=1)
    reclaimable: bool = True

    @field_validator("guaranteed", "max")
    @classmethod
    def _quota(cls, v: dict[str, str | int | float] | None) -> dict[str, str | int | float] | None:
        if v is not None:
            quota_vector(v)
        return v

    def build(self) -> Queue:
        return Queue.of(self.name, self.guaranteed, self.max, self.cohort, self.weight, self.reclaimable)


class QueuesSpec(Spec):
    api_version: Literal["tidescale.io/v1alpha1"] = "tidescale.io/v1alpha1"
    kind: Literal["QueueConfig"] = "QueueConfig"
    policy: QueuePolicySpec = Field(default_factory=FIFOSpec)
    queues: list[QueueSpec] = []


Builder = Callable[[Any], QueuePolicy]


class QueueRegistry:
    """Queue policies by their YAML `type:`."""

    def __init__(self) -> None:
        self._builders: dict[str, Builder] = {}

    def register(self, type_name: str, builder: Builder) -> None:
        if type_name in self._builders:
            raise ValueError(f"queue policy {type_name!r} registered twice")
        self._builders[type_name] = builder

    def known(self) -> tuple[str, ...]:
        return tuple(sorted(self._builders))

    def build(self, spec: QueuePolicySpec) -> QueuePolicy:
        builder = self._builders.get(spec.type)
        if builder is None:
            raise KeyError(f"no queue policy {spec.type!r} (known: {', '.join(self.known())})")
        return builder(spec)


def register_builtins(registry: QueueRegistry) -> QueueRegistry:
    registry.register("FIFO", lambda spec: FIFO())
    registry.register("LIFO", lambda spec: LIFO())
    registry.register("Priority", lambda spec: Priority())
    registry.register("Capacity", lambda spec: Capacity(ORDERINGS[spec.ordering]()))
    registry.register("FairShare", lambda spec: FairShare(ORDERINGS[spec.ordering]()))
    registry.register("PerQueue", lambda spec: PerQueue(spec.default, spec.queues))
    return registry


def default_registry() -> QueueRegistry:
    return register_builtins(QueueRegistry())
