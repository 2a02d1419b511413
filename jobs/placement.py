"""Placement: where the pods of a group go on a cluster state, or why they cannot.

Plugins implement `PlacementPolicy`. Node scorers place one pod at a time on the best feasible node:
`Binpack` (fullest after placement), `Spread` (emptiest), `FGD` (least growth of GPU fragmentation,
the ATC '23 paper) and `Tidescale` (ours: exact fragmentation gradient plus a CPU/GPU balance term).
They ask one node per equivalence class (`jobs.snapshot`) and keep the answers per pod shape and
class, so a decision costs the classes that changed plus one gather over the nodes; FGD and Tidescale
score with the trace simulator's scorers (`jobs.scorers`), so the live scheduler, `explain`, the
node-pool planner and the benchmark share one implementation and place alike.
Wrappers constrain another policy: `Topology` (all pods in the fewest domains of a key such as rack
or hypernode; `hard` = exactly one), `Gang` (at least `minMember` pods or none, atomically) and
`Bundle` (all pods on one node or in one domain). Every "no" is an `Unschedulable` that counts nodes
per reason: `3 nodes: insufficient nvidia.com/gpu; 2 nodes: untolerated taint gpu=reserved`.

Policies are built from their YAML spec by a `PlacementRegistry` filled by `register_builtins()`.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from jobs import scorers
from jobs.devices import MILLI, DeviceAssignment, GpuRequest
from jobs.fgd import F64, I64, FragModel, Gain, TaskShape, TypicalTasks, slot_values, workload_ratio
from jobs.resources import CPU, PODS
from jobs.simulator import ClassView
from jobs.snapshot import PER_NODE_LABELS, BoundPod, ClusterState, Receipt
from jobs.workload import (
    BinpackSpec,
    BundleSpec,
    FGDSpec,
    GangSpec,
    PlacementSpec,
    Pod,
    PodGroup,
    SpreadSpec,
    TidescaleSpec,
    TopologySpec,
)


@dataclass(frozen=True)
class Binding:
    pod: str
    node: str
    devices: DeviceAssignment
    score: float


def _plural(n: int) -> str:
    return f"{n} node" if n == 1 else f"{n} nodes"


@dataclass(frozen=True)
class Unschedulable:
    """Why a pod (or a group) cannot be placed: reason -> number of nodes that gave it."""

    reasons: Mapping[str, int] = field(default_factory=dict)
    message: str = ""

    def counted(self) -> str:
        ordered = sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        return "; ".join(f"{_plural(n)}: {r}" for r, n in ordered)

    def __str__(self) -> str:
        counted = self.counted()
        if self.message and counted:
            return f"{self.message} ({counted})"
        return self.message or counted or "no nodes to consider"


@dataclass(frozen=True)
class Placement:
    """Pods placed (and applied to the state), and the pods of the group that were not."""

    bindings: tuple[Binding, ...]
    pending: Mapping[str, Unschedulable] = field(default_factory=dict)
    receipts: tuple[Receipt, ...] = field(default=(), compare=False, repr=False)

    @property
    def complete(self) -> bool:
        return not self.pending


Result = Placement | Unschedulable


class PlacementPolicy(Protocol):
    def learn(self, state: ClusterState, pods: Sequence[Pod]) -> None:
        """Called once per scheduling cycle, before any `place`, with every pending pod: policies that
        model the workload (FGD's typical tasks) learn it here once instead of once per group."""
        ...

    def place(self, group: PodGroup, state: ClusterState, nodes: Sequence[int] | None = None) -> Result:
        """Place `group` on `state` (restricted to `nodes` when given), applying what it places."""
        ...


def rollback(state: ClusterState, result: Result) -> None:
    """Undo everything a result applied to the state."""
    if isinstance(result, Placement):
        for r in reversed(result.receipts):
            state.unbind(r)


def check(
    pod: Pod, state: ClusterState, i: int, prefer: Sequence[int] | None = None
) -> DeviceAssignment | str:
    """Whether node `i` can take `pod` now: its devices, or the first reason it cannot."""
    node = state.nodes[i]
    if node.unschedulable:
        return "node unschedulable"
    for k, v in pod.node_selector.items():
        if node.labels.get(k) != v:
            return "node selector mismatch"
    for t in node.taints:
        if t.effect in ("NoSchedule", "NoExecute") and not any(tol.tolerates(t) for tol in pod.tolerations):
            return f"untolerated taint {t}"
    # the first name (in name order) the request asks for more of than is free
    cap = node.capacity.amounts
    used = state.used[i].amounts
    for name in sorted(pod.request.resources.amounts):
        if pod.request.resources.amounts[name] > cap.get(name, 0) - used.get(name, 0):
            return "too many pods" if name == PODS else f"insufficient {name}"
    return state.dev[i].assign(pod.request.devices, prefer)


def _free_cpu(state: ClusterState, i: int) -> int:
    return state.nodes[i].capacity[CPU] - state.used[i][CPU]


def _candidates(state: ClusterState, nodes: Sequence[int] | None) -> Sequence[int]:
    return range(len(state.nodes)) if nodes is None else nodes


# A node's answer to one pod: its score and devices, or the first reason it cannot take the pod.
Outcome = tuple[float, DeviceAssignment] | str


def pod_key(pod: Pod) -> Hashable:
    """Everything about a pod that a node's answer depends on (not its name)."""
    return (
        tuple(sorted(pod.request.resources.amounts.items())),
        pod.request.devices,
        tuple(sorted(pod.node_selector.items())),
        pod.tolerations,
    )


def _per_node_selector(pod: Pod) -> tuple[dict[str, str], Pod]:
    """The pod's selector terms on per-node labels, and the pod without them (see PER_NODE_LABELS)."""
    local = {k: v for k, v in pod.node_selector.items() if k in PER_NODE_LABELS}
    if not local:
        return local, pod
    rest = {k: v for k, v in pod.node_selector.items() if k not in PER_NODE_LABELS}
    return local, replace(pod, node_selector=rest)


class _Answers:
    """One pod shape's answer per node class id, filled for the classes created since the last look."""

    def __init__(self) -> None:
        self.score: F64 = np.full(64, -np.inf)
        self.reason: I64 = np.full(64, -1, dtype=np.int64)
        self.devices: list[DeviceAssignment | None] = []
        self.reasons: list[str] = []
        self.codes: dict[str, int] = {}
        self.upto = 0

    def grow(self, n: int) -> None:
        if n > len(self.score):
            cap = max(n, 2 * len(self.score))
            score = np.full(cap, -np.inf)
            score[: self.upto] = self.score[: self.upto]
            reason = np.full(cap, -1, dtype=np.int64)
            reason[: self.upto] = self.reason[: self.upto]
            self.score, self.reason = score, reason
        self.devices.extend([None] * (n - len(self.devices)))

    def record(self, c: int, outcome: Outcome) -> None:
        if isinstance(outcome, str):
            code = self.codes.get(outcome)
            if code is None:
                code = self.codes[outcome] = len(self.reasons)
                self.reasons.append(outcome)
            self.reason[c] = code
        else:
            self.score[c] = outcome[0]
            self.devices[c] = outcome[1]

    def count(self, ids: I64) -> Counter[str]:
        codes, counts = np.unique(self.reason[ids], return_counts=True)
        return Counter({self.reasons[int(k)]: int(n) for k, n in zip(codes, counts, strict=True) if k >= 0})


class NodeScorer:
    """Base of the one-pod-at-a-time policies: best score wins, the lowest node index breaks ties.

    A node's answer to a pod depends only on the node's equivalence class (see `jobs.snapshot`), so
    the answers are kept per pod shape and class id: a pod costs the evaluation of one representative
    per class created since its shape was last seen, plus one gather over the candidate nodes. The
    result is exactly that of asking every candidate node (`evaluate`) in order.
    """

    def __init__(self) -> None:
        self._answers: dict[Hashable, _Answers] = {}
        self._token: object | None = None

    def learn(self, state: ClusterState, pods: Sequence[Pod]) -> None:
        """Hook called once per cycle with every pending pod (see `PlacementPolicy.learn`)."""

    def prepare(self, group: PodGroup, state: ClusterState) -> None:
        """Hook called once per `place` before any pod is scored."""

    def forget(self) -> None:
        """Drop the cached answers (a subclass calls it when its scores change meaning)."""
        self._answers = {}

    def evaluate(self, pod: Pod, state: ClusterState, i: int) -> Outcome:
        got = check(pod, state, i)
        if isinstance(got, str):
            return got
        return self.score(pod, state, i, got), got

    def evaluate_many(self, pod: Pod, state: ClusterState, nodes: Sequence[int]) -> list[Outcome]:
        """`evaluate` on each node; subclasses may score them together."""
        return [self.evaluate(pod, state, i) for i in nodes]

    def score(self, pod: Pod, state: ClusterState, i: int, got: DeviceAssignment) -> float:
        return 0.0

    def answers(self, pod: Pod, state: ClusterState) -> _Answers:
        """The pod shape's answers, brought up to date with the state's classes."""
        key = pod_key(pod)
        a = self._answers.get(key)
        if a is None:
            a = self._answers[key] = _Answers()
        n = state.classes
        if a.upto < n:
            a.grow(n)
            alive = [c for c in range(a.upto, n) if state.members[c]]
            # every member answers alike; the lowest index stands for the class
            outcomes = self.evaluate_many(pod, state, [min(state.members[c]) for c in alive])
            for c, outcome in zip(alive, outcomes, strict=True):
                a.record(c, outcome)
            a.upto = n
        return a

    def place(self, group: PodGroup, state: ClusterState, nodes: Sequence[int] | None = None) -> Result:
        self.prepare(group, state)
        if self._token is not state.token:
            self.forget()
            self._token = state.token
        cand = None if nodes is None else np.asarray(nodes, dtype=np.int64)
        bindings: list[Binding] = []
        receipts: list[Receipt] = []
        pending: dict[str, Unschedulable] = {}
        for pod in group.pods:
            local, general = _per_node_selector(pod)
            a = self.answers(general, state)
            ids = state.cls if cand is None else state.cls[cand]
            scores = a.score[ids]
            if local:
                where = cand if cand is not None else np.arange(len(state.nodes))
                labels = [state.nodes[i].labels for i in where.tolist()]
                ok = np.asarray(
                    [all(lab.get(k) == v for k, v in local.items()) for lab in labels], dtype=np.bool_
                ).reshape(len(where))
                scores = np.where(ok, scores, -np.inf)
            j = int(np.argmax(scores)) if len(scores) else -1
            if j < 0 or scores[j] == -np.inf:
                if local:
                    reasons = a.count(ids[ok])
                    for i in where[~ok].tolist():
                        reasons[_selector_reason(state, i)] += 1
                else:
                    reasons = a.count(ids)
                pending[pod.name] = Unschedulable(dict(reasons))
                continue
            i = j if cand is None else int(cand[j])
            c = int(ids[j])
            devices = a.devices[c]
            assert devices is not None
            node = state.nodes[i].name
            bound = BoundPod(
                pod.name, node, pod.request, devices, group.namespace, group.queue, group.name, group.priority
            )
            receipts.append(state.bind(i, bound))
            bindings.append(Binding(pod.name, node, devices, float(a.score[c])))
        if not bindings:
            first = next(iter(pending.values()), Unschedulable())
            return replace(first, message=f"no node fits pod {next(iter(pending))}" if pending else "no pods")
        return Placement(tuple(bindings), pending, tuple(receipts))


def _selector_reason(state: ClusterState, i: int) -> str:
    return "node unschedulable" if state.nodes[i].unschedulable else "node selector mismatch"


def _gpu_util(state: ClusterState, i: int, extra: int) -> float | None:
    dev = state.dev[i]
    total = MILLI * len(dev.devices.gpus)
    if not total:
        return None
    return (total - dev.gpu_milli_free + extra) / total


def _utilisation(state: ClusterState, i: int, pod: Pod, weights: Mapping[str, int]) -> float:
    """Weighted mean utilisation of the node after placing `pod` (resources the node has)."""
    cap = state.nodes[i].capacity
    used = state.used[i] + pod.request.resources
    num = 0.0
    den = 0.0
    for name, w in weights.items():
        if name == "gpu":
            u = _gpu_util(state, i, pod.request.gpu_milli)
        else:
            u = used[name] / cap[name] if cap[name] else None
        if u is not None:
            num += w * u
            den += w
    return 100.0 * num / den if den else 0.0


class Binpack(NodeScorer):
    """The node that is fullest after placement (Kubernetes MostAllocated, weighted)."""

    def __init__(self, weights: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.weights = dict(weights or {"cpu": 1, "memory": 1, "gpu": 2})

    def score(self, pod: Pod, state: ClusterState, i: int, got: DeviceAssignment) -> float:
        return _utilisation(state, i, pod, self.weights)


class Spread(Binpack):
    """The node that is emptiest after placement (Kubernetes LeastAllocated, weighted)."""

    def score(self, pod: Pod, state: ClusterState, i: int, got: DeviceAssignment) -> float:
        return 100.0 - _utilisation(state, i, pod, self.weights)


def _shape(req: GpuRequest | None, cpu: int, gpu_memory: int) -> TaskShape:
    """A pod's fragmentation shape: per-GPU share in milli (memory-only shares by their fraction)."""
    if req is None or not req.gpus_touched:
        return TaskShape(cpu, 0, 0)
    if req.count:
        return TaskShape(cpu, MILLI, req.count, "|".join(req.models))
    if req.vgpus:
        return TaskShape(cpu, MILLI // req.vgpu_ratio, req.vgpus, "|".join(req.models))
    milli = req.milli
    if req.memory_pct:
        milli = max(milli, req.memory_pct * 10)
    elif req.memory_mib and gpu_memory:
        milli = max(milli, -(-req.memory_mib * MILLI // gpu_memory))
    milli = min(max(milli, 1), MILLI)
    return TaskShape(cpu, milli, req.shared, "|".join(req.models))


# a node the simulator's scores model exactly: (position in the batch, node index, its devices)
Batched = tuple[int, int, DeviceAssignment]


def _node_model(state: ClusterState, i: int) -> str:
    gpus = state.nodes[i].devices.gpus
    return gpus[0].model if gpus else ""


class FGD(NodeScorer):
    """Fragmentation Gradient Descent on a general snapshot.

    The typical tasks are given, or learned from what the snapshot runs plus the pods to place: all
    pending pods once per cycle (`learn`), else the group being placed. A node's state is its free
    CPU and free GPU milli per device. The scores are the simulator's (`jobs.scorers`), on the node
    classes as it scores its own; requests the simulator does not model (vGPU slices, shares of
    several GPUs or of GPU memory, GPU models that differ within a node) try every candidate GPU with
    the same gain function.
    """

    def __init__(self, tasks: TypicalTasks | None = None) -> None:
        super().__init__()
        self.tasks = tasks
        self.gpu_memory = 0
        self._learned: object | None = None  # the state `learn` fitted the model to
        self._fitted: Hashable = None
        self._set_model(FragModel(TypicalTasks((), ()), ("",)))

    def make_scorer(self, frag: FragModel) -> scorers.FGD:
        return scorers.FGD(frag)

    def _set_model(self, frag: FragModel) -> None:
        self.frag = frag
        self.scorer = self.make_scorer(frag)
        self.ratio = workload_ratio(frag.tasks)
        self.forget()

    def learn(self, state: ClusterState, pods: Sequence[Pod]) -> None:
        self._fit(state, pods)
        self._learned = state.token

    def prepare(self, group: PodGroup, state: ClusterState) -> None:
        if self._learned is not state.token:
            self._fit(state, group.pods)

    def _fit(self, state: ClusterState, pods: Sequence[Pod]) -> None:
        self.gpu_memory = max((g.memory_mib for n in state.nodes for g in n.devices.gpus), default=0)
        tasks = self.tasks
        if tasks is None:
            counts: Counter[TaskShape] = Counter()
            for b in state.bound:
                counts[self.shape_of(b.request.devices.gpu, b.request.resources[CPU])] += 1
            for p in pods:
                counts[self.shape_of(p.request.devices.gpu, p.request.resources[CPU])] += 1
            tasks = TypicalTasks.from_counts(counts)
        models = tuple(sorted({g.model for n in state.nodes for g in n.devices.gpus} | {""}))
        fitted = (tasks, models, self.gpu_memory)
        if fitted != self._fitted:
            self._fitted = fitted
            self._set_model(FragModel(tasks, models))

    def shape_of(self, req: GpuRequest | None, cpu: int) -> TaskShape:
        return _shape(req, cpu, self.gpu_memory)

    def gain(self, whole: bool) -> Gain:
        return self.scorer.gain(whole)

    def evaluate(self, pod: Pod, state: ClusterState, i: int) -> Outcome:
        got = check(pod, state, i)
        if isinstance(got, str):
            return got
        return self._each_gpu(pod, state, i, got)

    def _each_gpu(self, pod: Pod, state: ClusterState, i: int, got: DeviceAssignment) -> Outcome:
        """The score of every candidate GPU choice on one node, in plain Python."""
        dev = state.dev[i]
        cpu_left = _free_cpu(state, i)
        free = list(dev.milli_free)
        req = pod.request.devices.gpu
        shape = self.shape_of(req, pod.request.resources[CPU])
        options: list[tuple[int, ...]] = [got.gpus]
        if req is not None and req.shared == 1 and not req.count and not req.vgpus:
            options = [(c,) for c in dev.shared_candidates(req)]
        model = self.frag.model_id(_node_model(state, i))
        before = self.frag.fragmentation_one(cpu_left, sorted(free, reverse=True), model)
        gain = self.gain(req is not None and bool(req.count))
        best: tuple[float, tuple[int, ...]] | None = None
        for opt in options:
            g = list(free)
            for c in opt:
                g[c] -= min(g[c], shape.gpu_milli)  # a share, a vGPU slice, or the whole GPU
            after = self.frag.fragmentation_one(cpu_left - shape.cpu_milli, sorted(g, reverse=True), model)
            s = gain(before - after, cpu_left, sum(free), cpu_left - shape.cpu_milli, sum(g))
            if best is None or s > best[0]:
                best = (s, opt)
        assert best is not None
        return best[0], self._prefer(pod, state, i, got, best[1])

    @staticmethod
    def _prefer(
        pod: Pod, state: ClusterState, i: int, got: DeviceAssignment, gpus: tuple[int, ...]
    ) -> DeviceAssignment:
        if gpus == got.gpus:
            return got
        preferred = check(pod, state, i, prefer=list(gpus))
        return got if isinstance(preferred, str) else preferred

    @staticmethod
    def _like_the_simulator(req: GpuRequest | None, state: ClusterState, i: int) -> bool:
        """Whether the simulator's model of a node and a pod is exact here: CPU-only and whole-GPU
        pods, and one share of one GPU's compute on a node without vGPU slicing whose GPUs are all
        of an allowed model (then the candidate GPUs are exactly those with enough free milli)."""
        if req is None or not req.gpus_touched or req.count:
            return True
        if req.shared != 1 or req.vgpus or req.memory_mib or req.memory_pct or not 0 < req.milli < MILLI:
            return False
        dev = state.dev[i]
        if any(dev.ratio):
            return False
        return not req.models or all(g.model in req.models for g in dev.devices.gpus)

    def evaluate_many(self, pod: Pod, state: ClusterState, nodes: Sequence[int]) -> list[Outcome]:
        req = pod.request.devices.gpu
        out: list[Outcome] = []
        batch: list[Batched] = []
        for k, i in enumerate(nodes):
            got = check(pod, state, i)
            if isinstance(got, str):
                out.append(got)
            elif self._like_the_simulator(req, state, i):
                out.append("")  # scored below, together
                batch.append((k, i, got))
            else:
                out.append(self._each_gpu(pod, state, i, got))
        if batch:
            self._score_together(pod, state, batch, out)
        return out

    def _score_together(
        self, pod: Pod, state: ClusterState, batch: list[Batched], out: list[Outcome]
    ) -> None:
        """The simulator's class scores for nodes it models exactly, and its GPU choice: the
        lowest-index GPU whose free milli is one of the best after-states'."""
        req = pod.request.devices.gpu
        shape = self.shape_of(req, pod.request.resources[CPU])
        k = len(batch)
        width = max(1, *(len(state.dev[i].milli_free) for _, i, _ in batch))
        cpu = np.empty(k, dtype=np.int64)
        gpus = np.zeros((k, width), dtype=np.int64)
        model = np.empty(k, dtype=np.int64)
        ngpu = np.empty(k, dtype=np.int64)
        for r, (_, i, _) in enumerate(batch):
            free = sorted(state.dev[i].milli_free, reverse=True)
            cpu[r] = _free_cpu(state, i)
            gpus[r, : len(free)] = free
            model[r] = self.frag.model_id(_node_model(state, i))
            ngpu[r] = len(free)
        view = ClassView(cpu, gpus, model, ngpu)
        scored = self.scorer.class_scores(view, shape, np.ones(k, dtype=np.bool_))
        share = req is not None and req.shared == 1 and not req.count
        for r, (pos, i, got) in enumerate(batch):
            devices = got
            if share and req is not None:
                values = set(slot_values(gpus[r], int(scored.best_slots[r])))
                milli = state.dev[i].milli_free
                c = next(c for c, f in enumerate(milli) if f >= req.milli and f in values)
                devices = self._prefer(pod, state, i, got, (c,))
            out[pos] = (float(scored.score[r]), devices)


class Tidescale(FGD):
    """Ours (see `jobs.scorers.Tidescale`): FGD's gradient plus the drop in GPU capacity a node's
    CPU could no longer feed, at the workload's CPU-per-GPU ratio."""

    def make_scorer(self, frag: FragModel) -> scorers.FGD:
        return scorers.Tidescale(frag)


def _domains(state: ClusterState, nodes: Sequence[int], key: str) -> tuple[dict[str, list[int]], list[int]]:
    out: dict[str, list[int]] = {}
    missing: list[int] = []
    for i in nodes:
        d = state.nodes[i].domain(key)
        if d is None:
            missing.append(i)
        else:
            out.setdefault(d, []).append(i)
    return out, missing


def _tightness(state: ClusterState, ids: list[int]) -> tuple[int, int]:
    return (sum(state.dev[i].gpu_milli_free for i in ids), sum(_free_cpu(state, i) for i in ids))


class Topology:
    """All pods of the group in as few domains of `key` as possible; `hard` demands exactly one.

    A single domain is chosen tightest-first (least free GPU, then CPU) so that roomy domains stay
    whole for bigger groups; `soft` falls back to filling the roomiest domains one after another.
    """

    def __init__(self, key: str, hard: bool, inner: PlacementPolicy, what: str = "") -> None:
        self.key = key
        self.hard = hard
        self.inner = inner
        self.what = what or f"one {key}"

    def learn(self, state: ClusterState, pods: Sequence[Pod]) -> None:
        self.inner.learn(state, pods)

    def place(self, group: PodGroup, state: ClusterState, nodes: Sequence[int] | None = None) -> Result:
        domains, missing = _domains(state, _candidates(state, nodes), self.key)
        best: tuple[int, str, Result] | None = None
        for name in sorted(domains, key=lambda d: (*_tightness(state, domains[d]), d)):
            result = self.inner.place(group, state, domains[name])
            if isinstance(result, Placement) and result.complete:
                return result
            placed = len(result.bindings) if isinstance(result, Placement) else 0
            rollback(state, result)
            if best is None or placed > best[0]:
                best = (placed, name, result)
        if not self.hard:
            return self._soft(group, state, domains, missing)
        reasons: Counter[str] = Counter()
        if missing:
            reasons[f"no {self.key} topology"] += len(missing)
        if best is None:
            return Unschedulable(dict(reasons), f"no {self.key} domain to place {group.name} in")
        placed, name, result = best
        detail = result if isinstance(result, Unschedulable) else next(iter(result.pending.values()))
        reasons.update(detail.reasons)
        return Unschedulable(
            dict(reasons),
            f"no {self.what} can hold all {len(group.pods)} pods of {group.name}"
            f" (best: {self.key} {name} holds {placed})",
        )

    def _soft(
        self, group: PodGroup, state: ClusterState, domains: dict[str, list[int]], loose: list[int]
    ) -> Result:
        """Roomiest domains first, then the nodes that have no value for the key."""

        def roomiest(d: str) -> tuple[int, int, str]:
            gpu, cpu = _tightness(state, domains[d])
            return (-gpu, -cpu, d)

        order = sorted(domains, key=roomiest)
        domains = {**domains, "": loose} if loose else domains
        if loose:
            order.append("")
        left = list(group.pods)
        bindings: list[Binding] = []
        receipts: list[Receipt] = []
        last: Result = Unschedulable()
        for name in order:
            if not left:
                break
            sub = replace(group, pods=tuple(left))
            last = self.inner.place(sub, state, domains[name])
            if isinstance(last, Placement):
                bindings += last.bindings
                receipts += last.receipts
                done = {b.pod for b in last.bindings}
                left = [p for p in left if p.name not in done]
        if not bindings:
            return last if isinstance(last, Unschedulable) else Unschedulable(message="nothing fits")
        pending = dict(last.pending) if isinstance(last, Placement) else {}
        for p in left:
            pending.setdefault(p.name, last if isinstance(last, Unschedulable) else Unschedulable())
        return Placement(tuple(bindings), pending, tuple(receipts))


class Gang:
    """At least `min_member` pods of the group (default: all) are placed, or none is."""

    def __init__(self, inner: PlacementPolicy, min_member: int | None = None) -> None:
        self.inner = inner
        self.min_member = min_member

    def learn(self, state: ClusterState, pods: Sequence[Pod]) -> None:
        self.inner.learn(state, pods)

    def place(self, group: PodGroup, state: ClusterState, nodes: Sequence[int] | None = None) -> Result:
        need = min(self.min_member or len(group.pods), len(group.pods))
        result = self.inner.place(group, state, nodes)
        placed = len(result.bindings) if isinstance(result, Placement) else 0
        if placed >= need and isinstance(result, Placement):
            return result
        rollback(state, result)
        detail = result if isinstance(result, Unschedulable) else next(iter(result.pending.values()))
        return Unschedulable(
            detail.reasons,
            f"gang {group.name} needs {need} of {len(group.pods)} pods placed together, only {placed} fit"
            + (f": {detail.message}" if detail.message else ""),
        )


def Bundle(key: str, inner: PlacementPolicy) -> Topology:
    """The whole set co-located on one node (`key: node`) or in one domain."""
    return Topology(key, True, inner, what="single node" if key == "node" else f"single {key}")


Builder = Callable[[Any, "PlacementRegistry"], PlacementPolicy]


class PlacementRegistry:
    """Placement plugins by their YAML `type:`."""

    def __init__(self) -> None:
        self._builders: dict[str, Builder] = {}

    def register(self, type_name: str, builder: Builder) -> None:
        if type_name in self._builders:
            raise ValueError(f"placement type {type_name!r} registered twice")
        self._builders[type_name] = builder

    def known(self) -> tuple[str, ...]:
        return tuple(sorted(self._builders))

    def build(self, spec: PlacementSpec) -> PlacementPolicy:
        builder = self._builders.get(spec.type)
        if builder is None:
            raise KeyError(f"no placement type {spec.type!r} (known: {', '.join(self.known())})")
        return builder(spec, self)


def register_builtins(registry: PlacementRegistry, typical: TypicalTasks | None = None) -> PlacementRegistry:
    """Fill `registry` with the built-in plugins; called once by whoever composes the scheduler.
    `typical` fixes FGD's and Tidescale's typical tasks (else they learn them from the cycle)."""

    def binpack(spec: BinpackSpec, _: PlacementRegistry) -> PlacementPolicy:
        return Binpack(spec.weights)

    def spread(spec: SpreadSpec, _: PlacementRegistry) -> PlacementPolicy:
        return Spread(spec.weights)

    def fgd(spec: FGDSpec, _: PlacementRegistry) -> PlacementPolicy:
        return FGD(typical)

    def tidescale(spec: TidescaleSpec, _: PlacementRegistry) -> PlacementPolicy:
        return Tidescale(typical)

    def topology(spec: TopologySpec, reg: PlacementRegistry) -> PlacementPolicy:
        return Topology(spec.key, spec.mode == "hard", reg.build(spec.inner))

    def gang(spec: GangSpec, reg: PlacementRegistry) -> PlacementPolicy:
        return Gang(reg.build(spec.inner), spec.min_member)

    def bundle(spec: BundleSpec, reg: PlacementRegistry) -> PlacementPolicy:
        return Bundle(spec.key, reg.build(spec.inner))

    builders: dict[str, Builder] = {
        "Binpack": binpack,
        "Spread": spread,
        "FGD": fgd,
        "Tidescale": tidescale,
        "Topology": topology,
        "Gang": gang,
        "Bundle": bundle,
    }
    for name, b in builders.items():
        registry.register(name, b)
    return registry


def default_registry() -> PlacementRegistry:
    return register_builtins(PlacementRegistry())
