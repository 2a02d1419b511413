"""Placement: where the pods of a group go on a cluster state, or why they cannot.

Plugins implement `PlacementPolicy`. Node scorers place one pod at a time on the best feasible node:
`Binpack` (fullest after placement), `Spread` (emptiest), `FGD` (least growth of GPU fragmentation,
the ATC '23 paper) and `Tidescale` (ours: exact fragmentation gradient plus a CPU/GPU balance term).
Wrappers constrain another policy: `Topology` (all pods in the fewest domains of a key such as rack
or hypernode; `hard` = exactly one), `Gang` (at least `minMember` pods or none, atomically) and
`Bundle` (all pods on one node or in one domain). Every "no" is an `Unschedulable` that counts nodes
per reason: `3 nodes: insufficient nvidia.com/gpu; 2 nodes: untolerated taint gpu=reserved`.

Policies are built from their YAML spec by a `PlacementRegistry` filled by `register_builtins()`.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from jobs.devices import MILLI, DeviceAssignment, GpuRequest
from jobs.fgd import FragModel, Gain, TaskShape, TypicalTasks, fgd_gain, tidescale_gain, workload_ratio
from jobs.resources import CPU, PODS
from jobs.snapshot import BoundPod, ClusterState, Receipt
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
    short = state.free(i).shortfall(pod.request.resources)
    if short:
        return "too many pods" if short[0] == PODS else f"insufficient {short[0]}"
    return state.dev[i].assign(pod.request.devices, prefer)


def _candidates(state: ClusterState, nodes: Sequence[int] | None) -> Sequence[int]:
    return range(len(state.nodes)) if nodes is None else nodes


class NodeScorer:
    """Base of the one-pod-at-a-time policies: best score wins, the lowest node index breaks ties."""

    def prepare(self, group: PodGroup, state: ClusterState) -> None:
        """Hook called once per `place` before any pod is scored."""

    def evaluate(self, pod: Pod, state: ClusterState, i: int) -> tuple[float, DeviceAssignment] | str:
        got = check(pod, state, i)
        if isinstance(got, str):
            return got
        return self.score(pod, state, i, got), got

    def score(self, pod: Pod, state: ClusterState, i: int, got: DeviceAssignment) -> float:
        return 0.0

    def place(self, group: PodGroup, state: ClusterState, nodes: Sequence[int] | None = None) -> Result:
        self.prepare(group, state)
        bindings: list[Binding] = []
        receipts: list[Receipt] = []
        pending: dict[str, Unschedulable] = {}
        for pod in group.pods:
            best: tuple[float, int, DeviceAssignment] | None = None
            reasons: Counter[str] = Counter()
            for i in _candidates(state, nodes):
                got = self.evaluate(pod, state, i)
                if isinstance(got, str):
                    reasons[got] += 1
                elif best is None or got[0] > best[0]:
                    best = (got[0], i, got[1])
            if best is None:
                pending[pod.name] = Unschedulable(dict(reasons))
                continue
            score, i, devices = best
            node = state.nodes[i].name
            bound = BoundPod(
                pod.name, node, pod.request, devices, group.namespace, group.queue, group.name, group.priority
            )
            receipts.append(state.bind(i, bound))
            bindings.append(Binding(pod.name, node, devices, score))
        if not bindings:
            first = next(iter(pending.values()), Unschedulable())
            return replace(first, message=f"no node fits pod {next(iter(pending))}" if pending else "no pods")
        return Placement(tuple(bindings), pending, tuple(receipts))


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


class FGD(NodeScorer):
    """Fragmentation Gradient Descent on a general snapshot.

    The typical tasks are learned from what the snapshot runs plus the group being placed; a node's
    state is its free CPU and free GPU milli per device; shared pods try every candidate GPU.
    """

    def prepare(self, group: PodGroup, state: ClusterState) -> None:
        self.gpu_memory = max((g.memory_mib for n in state.nodes for g in n.devices.gpus), default=0)
        counts: Counter[TaskShape] = Counter()
        for b in state.bound:
            counts[self.shape_of(b.request.devices.gpu, b.request.resources[CPU])] += 1
        for p in group.pods:
            counts[self.shape_of(p.request.devices.gpu, p.request.resources[CPU])] += 1
        models = sorted({g.model for n in state.nodes for g in n.devices.gpus} | {""})
        self.frag = FragModel(TypicalTasks.from_counts(counts), models)
        self.ratio = workload_ratio(self.frag.tasks)

    def shape_of(self, req: GpuRequest | None, cpu: int) -> TaskShape:
        return _shape(req, cpu, self.gpu_memory)

    def gain(self, whole: bool) -> Gain:
        return fgd_gain

    def evaluate(self, pod: Pod, state: ClusterState, i: int) -> tuple[float, DeviceAssignment] | str:
        got = check(pod, state, i)
        if isinstance(got, str):
            return got
        dev = state.dev[i]
        cpu_left = state.free(i)[CPU]
        free = list(dev.milli_free)
        req = pod.request.devices.gpu
        shape = self.shape_of(req, pod.request.resources[CPU])
        options: list[tuple[int, ...]] = [got.gpus]
        if req is not None and req.shared == 1 and not req.count and not req.vgpus:
            options = [(c,) for c in dev.shared_candidates(req)]
        gpus = state.nodes[i].devices.gpus
        model = self.frag.model_id(gpus[0].model if gpus else "")
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
        if best[1] != got.gpus:
            preferred = check(pod, state, i, prefer=list(best[1]))
            if not isinstance(preferred, str):
                got = preferred
        return best[0], got


class Tidescale(FGD):
    """Ours (see `jobs.fgd.tidescale_gain`): FGD's gradient plus the drop in GPU capacity a node's
    CPU could no longer feed, at the workload's CPU-per-GPU ratio."""

    def gain(self, whole: bool) -> Gain:
        return tidescale_gain(self.ratio, whole)


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
    return (sum(state.dev[i].gpu_milli_free for i in ids), sum(state.free(i)[CPU] for i in ids))


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


def register_builtins(registry: PlacementRegistry) -> PlacementRegistry:
    """Fill `registry` with the built-in plugins; called once by whoever composes the scheduler."""

    def binpack(spec: BinpackSpec, _: PlacementRegistry) -> PlacementPolicy:
        return Binpack(spec.weights)

    def spread(spec: SpreadSpec, _: PlacementRegistry) -> PlacementPolicy:
        return Spread(spec.weights)

    def fgd(spec: FGDSpec, _: PlacementRegistry) -> PlacementPolicy:
        return FGD()

    def tidescale(spec: TidescaleSpec, _: PlacementRegistry) -> PlacementPolicy:
        return Tidescale()

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
