"""The FGD paper's trace simulator, reproduced on arrays.

hkust-adsl/kubernetes-scheduler-simulator as ../shared/reference/scheduling.md §5 describes it:
the pod list is sorted by name and shuffled with the seed, then topped up with pods drawn with
replacement until the arrived GPU demand would pass `tune` x the cluster's GPUs; nodes get a seeded
random order that breaks score ties; pods are placed one at a time, never retried and never removed.
After every pod the used and arrived GPU milli and the cluster's fragmentation are recorded, and the
paper's metric reads them at an arrival level.

Node state lives in arrays and is updated in place, one node per decision. Node states are grouped
into equivalence classes (model, GPU count, free CPU, sorted free GPU milli): a policy scores a class
once per pod shape, so a decision costs one gather over the nodes plus the scores of the classes
created since that shape was last seen.

Pure: no I/O, no clock; randomness comes only from the numpy Generator passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from jobs.fgd import F64, I64, MILLI, FragModel, Scored, TaskShape, TypicalTasks, fits, slot_values
from jobs.openb import NodeList, PodList

PolicyFactory = Callable[[FragModel], "SimPolicy"]

POD_CAP = 1001  # the simulator's nodes advertise `pods: 1001`
DEFAULT_TUNE = 1.3
FIRST_SEED = 42


def prepare_pods(pods: PodList, cluster_gpu_milli: int, tune: float, rng: np.random.Generator) -> PodList:
    """The submitted sequence: sorted by name, shuffled, then tuned to `tune` x cluster GPU milli.

    Tuning up appends copies drawn uniformly with replacement from the name-sorted list and stops at
    the first draw whose *per-GPU* share would pass the target (the paper's stop test; the running
    total adds the full request). Tuning down removes uniformly drawn pods until under the target.
    """
    by_name = np.asarray(sorted(range(len(pods)), key=lambda i: pods.names[i]), dtype=np.int64)
    n = len(by_name)
    order = list(by_name[rng.permutation(n)].tolist())
    demand = pods.num_gpu * pods.gpu_milli
    total = int(demand.sum())
    target = tune * float(cluster_gpu_milli)
    if total > target:
        while total > target and order:
            k = int(rng.integers(len(order)))
            total -= int(demand[order.pop(k)])
    elif total < target:
        while True:
            draws = rng.integers(n, size=1024)
            stop = False
            for d in draws.tolist():
                idx = int(by_name[d])
                if total + int(pods.gpu_milli[idx]) > target:
                    stop = True
                    break
                total += int(demand[idx])
                order.append(idx)
            if stop:
                break
    return pods.take(np.asarray(order, dtype=np.int64))


def node_order(nodes: NodeList, rng: np.random.Generator) -> I64:
    """Node indices in tie-break order: nodes sorted by name get a seeded random rank (the paper
    prefixes names with it and its modified `selectHost` takes the smallest name among ties)."""
    by_name = np.asarray(sorted(range(len(nodes)), key=lambda i: nodes.names[i]), dtype=np.int64)
    rank = rng.permutation(len(nodes))
    out: I64 = by_name[np.argsort(rank)]
    return out


@dataclass
class ClassView:
    """K node classes: their shared state (GPU rows sorted by free milli, descending)."""

    cpu: I64
    gpus: I64  # sorted descending per row
    model: I64
    ngpu: I64


CHUNK = 4096  # classes evaluated per numpy batch (bounds temporary memory on big clusters)


class ClassTable:
    """Interned node states (equivalence classes) with the number of nodes in each.

    Ids only grow: a state whose class has emptied gets a fresh id when it reappears, so a class that
    was empty when a policy skipped it never comes back to life under the same id.
    """

    def __init__(self, width: int, frag: FragModel) -> None:
        self.width = width
        self.frag_model = frag
        self.ids: dict[tuple[int, ...], int] = {}
        cap = 1024
        self.cpu = np.zeros(cap, dtype=np.int64)
        self.gpus = np.zeros((cap, width), dtype=np.int64)
        self.model = np.zeros(cap, dtype=np.int64)
        self.ngpu = np.zeros(cap, dtype=np.int64)
        self.count = np.zeros(cap, dtype=np.int64)
        self.frag = np.zeros(cap, dtype=np.float64)
        self.known = np.zeros(cap, dtype=np.bool_)  # frag measured (by a scorer or `ensure_frag`)
        self.n = 0

    def _grow(self) -> None:
        cap = 2 * len(self.cpu)
        self.cpu = np.resize(self.cpu, cap)
        self.model = np.resize(self.model, cap)
        self.ngpu = np.resize(self.ngpu, cap)
        self.count = np.resize(self.count, cap)
        self.frag = np.resize(self.frag, cap)
        known = np.zeros(cap, dtype=np.bool_)
        known[: self.n] = self.known[: self.n]
        self.known = known
        gpus = np.zeros((cap, self.width), dtype=np.int64)
        gpus[: self.n] = self.gpus[: self.n]
        self.gpus = gpus

    def intern(self, model: int, ngpu: int, cpu: int, free: list[int]) -> int:
        """The class of a node state, counting one more node in it."""
        free.sort(reverse=True)
        key = (model, ngpu, cpu, *free)
        found = self.ids.get(key)
        if found is not None and self.count[found] > 0:
            self.count[found] += 1
            return found
        if self.n == len(self.cpu):
            self._grow()
        k = self.n
        self.cpu[k] = cpu
        self.gpus[k] = free
        self.model[k] = model
        self.ngpu[k] = ngpu
        self.count[k] = 1
        self.ids[key] = k
        self.n += 1
        return k

    def leave(self, k: int) -> None:
        self.count[k] -= 1

    def ensure_frag(self) -> None:
        """Measure the classes no scorer has measured (for the event log)."""
        todo = np.flatnonzero(~self.known[: self.n])
        for c in range(0, len(todo), CHUNK):
            ids = todo[c : c + CHUNK]
            self.frag[ids] = self.frag_model.fragmentation(self.cpu[ids], self.gpus[ids], self.model[ids])
        self.known[todo] = True

    def view(self, ids: I64) -> ClassView:
        return ClassView(self.cpu[ids], self.gpus[ids], self.model[ids], self.ngpu[ids])


@dataclass
class NodeState:
    """Mutable per-node arrays, in tie-break order (index 0 wins ties)."""

    cpu_left: I64
    mem_left: I64
    pods: I64
    free: I64  # (N, G) free milli per GPU, by device index; 0 pads nodes with fewer GPUs
    ngpu: I64
    model: I64
    cls: I64
    affinity: I64  # (N, G + 1) hosted GPU pods per class: column 0 shared, column k = k whole GPUs

    @property
    def gpu_left(self) -> I64:
        out: I64 = self.free.sum(axis=1)
        return out


class SimPolicy(Protocol):
    """A node-scoring policy of the simulator. Higher scores win; ties go to the lower node index."""

    name: str

    def class_scores(self, view: ClassView, shape: TaskShape, ok: NDArray[np.bool_]) -> Scored:
        """Scores for classes where `ok` (the others are ignored), plus best GPU slots (shared tasks)."""
        ...

    def node_scores(self, state: NodeState, shape: TaskShape, scores: F64) -> F64:
        """Adjust the gathered class scores with node-level facts; -inf marks infeasible nodes."""
        ...

    def pick(self, scores: F64, rng: np.random.Generator) -> int:
        """The chosen node index, or -1 when every score is -inf."""
        ...

    def choose_gpus(
        self, free: I64, shape: TaskShape, hint: tuple[int, ...], rng: np.random.Generator
    ) -> list[int]:
        """Device indices on the chosen node (`free` is its free milli per GPU)."""
        ...


def pick_first_best(scores: F64) -> int:
    j = int(np.argmax(scores))
    return j if scores[j] > -np.inf else -1


def whole_gpus(free: I64, count: int) -> list[int]:
    """The lowest-index fully free GPUs."""
    return [int(i) for i in np.flatnonzero(free == MILLI)[:count]]


def tightest_gpu(free: I64, milli: int) -> list[int]:
    """The fitting GPU with the least free milli (lowest index on ties)."""
    masked = np.where(free >= milli, free, np.iinfo(np.int64).max)
    return [int(np.argmin(masked))]


@dataclass
class _ShapeCache:
    score: F64 = field(default_factory=lambda: np.full(1024, -np.inf))
    slots: I64 = field(default_factory=lambda: np.zeros(1024, dtype=np.int64))
    upto: int = 0


@dataclass(frozen=True)
class Events:
    """One entry per submitted pod, after it was placed or dropped."""

    used_milli: I64
    arrived_milli: I64
    frag_milli: F64
    placed: NDArray[np.bool_]
    classes_seen: int
    node: I64 | None = None  # the chosen node's index in tie-break order (-1: dropped)


class Simulation:
    """One seed's run: a cluster, a policy, the pods in submission order."""

    def __init__(
        self,
        nodes: NodeList,
        order: I64,
        frag: FragModel,
        policy: SimPolicy,
        rng: np.random.Generator,
        pod_cap: int = POD_CAP,
    ) -> None:
        self.policy = policy
        self.rng = rng
        self.pod_cap = pod_cap
        self.frag = frag
        width = max(1, int(nodes.gpus.max()) if len(nodes) else 1)
        n = len(order)
        gpus = nodes.gpus[order]
        free = np.zeros((n, width), dtype=np.int64)
        free[np.arange(width)[None, :] < gpus[:, None]] = MILLI
        models = np.asarray([frag.model_id(nodes.models[i]) for i in order.tolist()], dtype=np.int64)
        self.state = NodeState(
            cpu_left=nodes.cpu_milli[order].copy(),
            mem_left=nodes.memory_mib[order].copy(),
            pods=np.zeros(n, dtype=np.int64),
            free=free,
            ngpu=gpus.copy(),
            model=models,
            cls=np.zeros(n, dtype=np.int64),
            affinity=np.zeros((n, width + 1), dtype=np.int64),
        )
        self.classes = ClassTable(width, frag)
        for i in range(n):
            self.state.cls[i] = self._intern(i)
        self._caches: dict[TaskShape, _ShapeCache] = {}
        self.max_pods = 0

    def _intern(self, i: int) -> int:
        s = self.state
        return self.classes.intern(int(s.model[i]), int(s.ngpu[i]), int(s.cpu_left[i]), s.free[i].tolist())

    def _fill(self, cache: _ShapeCache, shape: TaskShape) -> None:
        """Score the classes created since this shape was last seen; empty ones stay -inf (their ids
        are never reused, see ClassTable)."""
        lo, hi = cache.upto, self.classes.n
        if hi > len(cache.score):
            cap = max(hi, 2 * len(cache.score))
            score = np.full(cap, -np.inf)
            score[:lo] = cache.score[:lo]
            slots = np.zeros(cap, dtype=np.int64)
            slots[:lo] = cache.slots[:lo]
            cache.score, cache.slots = score, slots
        cache.score[lo:hi] = -np.inf
        alive = lo + np.flatnonzero(self.classes.count[lo:hi] > 0)
        for c in range(0, len(alive), CHUNK):
            ids = alive[c : c + CHUNK]
            view = self.classes.view(ids)
            ok = fits(shape, view.cpu, view.gpus, view.model, self.frag.models)
            scored = self.policy.class_scores(view, shape, ok)
            cache.score[ids] = np.where(ok, scored.score, -np.inf)
            cache.slots[ids] = scored.best_slots
            if scored.frag is not None:
                self.classes.frag[ids] = scored.frag
                self.classes.known[ids] = True
        cache.upto = hi

    def scores(self, shape: TaskShape, memory_mib: int) -> F64:
        """Every node's score for one pod (-inf where it does not fit)."""
        cache = self._caches.get(shape)
        if cache is None:
            cache = self._caches[shape] = _ShapeCache()
        if cache.upto < self.classes.n:
            self._fill(cache, shape)
        s = self.state
        out = cache.score[s.cls]
        if memory_mib > 0:
            out = np.where(s.mem_left >= memory_mib, out, -np.inf)
        if self.max_pods >= self.pod_cap:
            out = np.where(s.pods < self.pod_cap, out, -np.inf)
        return self.policy.node_scores(s, shape, out)

    def hint(self, shape: TaskShape, node: int) -> tuple[int, ...]:
        """Free-milli values of the GPUs the policy found best on this node (shared tasks)."""
        k = int(self.state.cls[node])
        mask = int(self._caches[shape].slots[k])
        return slot_values(self.classes.gpus[k], mask) if mask else ()

    def place(self, node: int, shape: TaskShape, memory_mib: int, gpus: list[int]) -> None:
        s = self.state
        s.cpu_left[node] -= shape.cpu_milli
        s.mem_left[node] -= memory_mib
        s.pods[node] += 1
        self.max_pods = max(self.max_pods, int(s.pods[node]))
        if shape.num_gpu > 0:
            take = shape.gpu_milli if shape.is_shared else MILLI
            for g in gpus:
                s.free[node, g] -= take
            s.affinity[node, 0 if shape.is_shared else min(shape.num_gpu, s.affinity.shape[1] - 1)] += 1
        self.classes.leave(int(s.cls[node]))
        s.cls[node] = self._intern(node)

    def run(self, pods: PodList) -> Events:
        p = len(pods)
        used = np.zeros(p, dtype=np.int64)
        arrived = np.zeros(p, dtype=np.int64)
        placed = np.zeros(p, dtype=np.bool_)
        chosen = np.full(p, -1, dtype=np.int64)
        old_cls = np.zeros(p, dtype=np.int64)
        new_cls = np.zeros(p, dtype=np.int64)
        cls0 = self.state.cls.copy()
        shapes = [
            TaskShape(c, m if n > 0 else 0, n, sp)
            for c, m, n, sp in zip(
                pods.cpu_milli.tolist(),
                pods.gpu_milli.tolist(),
                pods.num_gpu.tolist(),
                pods.gpu_spec,
                strict=True,
            )
        ]
        mems = pods.memory_mib.tolist()
        used_now = 0
        arrived_now = 0
        for i, shape in enumerate(shapes):
            demand = shape.num_gpu * shape.gpu_milli
            arrived_now += demand
            scores = self.scores(shape, mems[i])
            j = self.policy.pick(scores, self.rng)
            if j >= 0:
                gpus = (
                    self.policy.choose_gpus(self.state.free[j], shape, self.hint(shape, j), self.rng)
                    if shape.num_gpu > 0
                    else []
                )
                old_cls[i] = self.state.cls[j]
                self.place(j, shape, mems[i], gpus)
                new_cls[i] = self.state.cls[j]
                placed[i] = True
                chosen[i] = j
                used_now += demand
            used[i] = used_now
            arrived[i] = arrived_now
        self.classes.ensure_frag()
        f = self.classes.frag
        start = float(f[cls0].sum())
        delta = np.where(placed, f[new_cls] - f[old_cls], 0.0)
        return Events(used, arrived, start + np.cumsum(delta), placed, self.classes.n, chosen)


@dataclass(frozen=True)
class LevelReading:
    arrival_pct: int
    allocated_pct: float
    unallocated_pct: float
    fragmentation_pct: float


def read_level(events: Events, cluster_gpu_milli: int, level_pct: int) -> LevelReading:
    """The paper's metric at one arrival level: the mean allocation over the events whose rounded
    arrival equals the level (falling back to level +-1), each rounded to 2 decimals."""
    gpus = cluster_gpu_milli / MILLI
    arrive = np.round(events.arrived_milli / gpus / 10.0)
    alloc = np.round(events.used_milli / gpus / 10.0, 2)
    frag = events.frag_milli / gpus / 10.0
    sel = arrive == level_pct
    if not sel.any():
        sel = (arrive >= level_pct - 1) & (arrive <= level_pct + 1)
    if not sel.any():
        return LevelReading(level_pct, float("nan"), float("nan"), float("nan"))
    allocated = round(float(alloc[sel].mean()), 2)
    return LevelReading(level_pct, allocated, round(100.0 - allocated, 2), round(float(frag[sel].mean()), 2))


@dataclass(frozen=True)
class SeedRun:
    seed: int
    pods: int
    events: Events


def simulate(
    nodes: NodeList,
    pods: PodList,
    policy_factory: PolicyFactory,
    seed: int,
    tune: float = DEFAULT_TUNE,
    typical: TypicalTasks | None = None,
    limit: int | None = None,
) -> SeedRun:
    """One seed of the paper's experiment: tune and order the workload, then place it pod by pod
    (only the first `limit` submitted pods when given: for timing runs)."""
    rng = np.random.default_rng(seed)
    tasks = typical or TypicalTasks.from_arrays(pods.cpu_milli, pods.gpu_milli, pods.num_gpu, pods.gpu_spec)
    models = sorted(set(nodes.models))
    frag = FragModel(tasks, models)
    submitted = prepare_pods(pods, nodes.total_gpu_milli, tune, rng)
    if limit is not None and limit < len(submitted):
        submitted = submitted.take(np.arange(limit, dtype=np.int64))
    order = node_order(nodes, rng)
    sim = Simulation(nodes, order, frag, policy_factory(frag), rng)
    return SeedRun(seed, len(submitted), sim.run(submitted))
