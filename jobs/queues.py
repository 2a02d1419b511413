"""Queues and queue policies: in which order pending pod groups are tried, and whether quota allows them.

A `QueuePolicy` gives every pending entry a sort key (smaller goes first; the cycle re-asks after
each admission, so dynamic orders such as fair share stay current) and a quota verdict:

- `FIFO` (oldest first), `LIFO` (newest first), `Priority` (highest priority, then oldest);
- `Capacity`: per queue `guaranteed` and `max`; a queue may borrow what others in its `cohort`
  leave idle below their guarantee, and a queue that needs its guarantee back reclaims it from
  borrowers (lowest priority, newest first);
- `FairShare`: weighted dominant-resource fairness (DRF): the queue with the smallest dominant
  share / weight goes first.

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
    included: such a queue runs only on what it borrows); `max` caps the resources it names."""

    name: str
    cohort: str | None = None
    guaranteed: Resources = field(default_factory=Resources)
    max: Resources | None = None
    weight: int = 1
    governs: tuple[str, ...] = ()

    @staticmethod
    def of(
        name: str,
        guaranteed: Mapping[str, str | int | float] | None = None,
        max: Mapping[str, str | int | float] | None = None,
        cohort: str | None = None,
        weight: int = 1,
    ) -> Queue:
        g = dict(guaranteed or {})
        return Queue(
            name,
            cohort,
            quota_vector(g),
            quota_vector(max) if max is not None else None,
            weight,
            tuple(sorted(g)),
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
    name: str

    def key(self, entry: Entry, book: Book) -> tuple[Any, ...]:
        """Sort key: smaller goes first. The cycle appends the uid as the final tie-break."""
        ...

    def admit(self, entry: Entry, book: Book) -> Verdict:
        """Whether quota lets the entry in now."""
        ...


class FIFO:
    name = "FIFO"

    def key(self, entry: Entry, book: Book) -> tuple[Any, ...]:
        return (entry.seq,)

    def admit(self, entry: Entry, book: Book) -> Verdict:
        return check_max(entry, book) or Verdict(True)


class LIFO(FIFO):
    name = "LIFO"

    def key(self, entry: Entry, book: Book) -> tuple[Any, ...]:
        return (-entry.seq,)


class Priority(FIFO):
    name = "Priority"

    def key(self, entry: Entry, book: Book) -> tuple[Any, ...]:
        return (-entry.group.priority, entry.seq)


ORDERINGS: dict[str, Callable[[], QueuePolicy]] = {"FIFO": FIFO, "LIFO": LIFO, "Priority": Priority}


class Capacity:
    """Guaranteed and max per queue, borrowing idle guarantee within a cohort, reclaim by lenders."""

    name = "Capacity"

    def __init__(self, ordering: QueuePolicy | None = None) -> None:
        self.ordering = ordering or Priority()

    def key(self, entry: Entry, book: Book) -> tuple[Any, ...]:
        q = book.queue(entry.queue)
        after = book.usage.get(q.name, Resources()) + demand(entry.group)
        within = not _over(after, q.guaranteed, q.governed) if q.governed else False
        use = book.usage.get(q.name, Resources())
        ratio = max((use[r] / q.guaranteed[r] if q.guaranteed[r] else 1.0 for r in q.governed), default=1.0)
        return (0 if within else 1, ratio, *self.ordering.key(entry, book))

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
        """Borrowers' workloads that could be taken back to make room for an entitled entry."""
        borrowers = []
        for q in book.cohort(entry.queue):
            if q.name == entry.queue:
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

    def key(self, entry: Entry, book: Book) -> tuple[Any, ...]:
        weight = max(1, book.queue(entry.queue).weight)
        return (book.dominant_share(entry.queue) / weight, *self.ordering.key(entry, book))

    def admit(self, entry: Entry, book: Book) -> Verdict:
        return check_max(entry, book) or Verdict(True)


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


QueuePolicySpec = Annotated[
    FIFOSpec | LIFOSpec | PrioritySpec | CapacitySpec | FairShareSpec, Field(discriminator="type")
]


class QueueSpec(Spec):
    name: str = Field(min_length=1)
    cohort: str | None = None
    guaranteed: dict[str, str | int | float] = {}
    max: dict[str, str | int | float] | None = None
    weight: int = Field(1, ge=1)

    @field_validator("guaranteed", "max")
    @classmethod
    def _quota(cls, v: dict[str, str | int | float] | None) -> dict[str, str | int | float] | None:
        if v is not None:
            quota_vector(v)
        return v

    def build(self) -> Queue:
        return Queue.of(self.name, self.guaranteed, self.max, self.cohort, self.weight)


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
    return registry


def default_registry() -> QueueRegistry:
    return register_builtins(QueueRegistry())
