"""Node scorers for the trace simulator: the FGD paper's baselines, FGD itself, and ours.

Each baseline follows ../shared/reference/scheduling.md §5.5 to the integer: the same normalisers
(128 cores, 8 GPUs), the same truncations, the same GPU choice on the chosen node. `tidescale` is
ours (see `Tidescale`). Scores are computed per node class (see `jobs.simulator`) unless a policy
needs per-node facts (GpuClustering's hosted pod kinds, Random's draw).

Pure: no I/O, no clock; randomness only from the Generator the simulator passes in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from jobs.fgd import (
    F64,
    I64,
    MILLI,
    SMALL_BATCH,
    FragModel,
    Gain,
    Scored,
    TaskShape,
    TidescaleWeights,
    balance_gain,
    best_per_state,
    fgd_gain,
    fgd_scores,
    gradient,
    scalar_scores,
    sigmoid_score,
    tidescale_gain,
    workload_ratio,
)
from jobs.simulator import ClassView, NodeState, SimPolicy, pick_first_best, tightest_gpu, whole_gpus

MAX_CPU = 128_000.0  # the paper's normalisers: the largest node shape
MAX_GPU = 8_000.0


def _none(k: int) -> I64:
    return np.zeros(k, dtype=np.int64)


class _Policy:
    """Defaults: no class score, highest score wins (lowest index on ties), tightest GPU."""

    name = ""

    def class_scores(self, view: ClassView, shape: TaskShape, ok: NDArray[np.bool_]) -> Scored:
        return Scored(np.zeros(len(view.cpu)), _none(len(view.cpu)))

    def node_scores(self, state: NodeState, shape: TaskShape, scores: F64) -> F64:
        return scores

    def pick(self, scores: F64, rng: np.random.Generator) -> int:
        return pick_first_best(scores)

    def choose_gpus(
        self, free: I64, shape: TaskShape, hint: tuple[int, ...], rng: np.random.Generator
    ) -> list[int]:
        if shape.is_shared:
            return tightest_gpu(free, shape.gpu_milli)
        return whole_gpus(free, shape.num_gpu)


class Random(_Policy):
    """One feasible node uniformly at random; a random fitting GPU for shared pods."""

    name = "random"

    def pick(self, scores: F64, rng: np.random.Generator) -> int:
        feasible = np.flatnonzero(scores > -np.inf)
        if len(feasible) == 0:
            return -1
        return int(feasible[int(rng.integers(len(feasible)))])

    def choose_gpus(
        self, free: I64, shape: TaskShape, hint: tuple[int, ...], rng: np.random.Generator
    ) -> list[int]:
        if shape.is_shared:
            fitting = np.flatnonzero(free >= shape.gpu_milli)
            return [int(fitting[int(rng.integers(len(fitting)))])]
        return whole_gpus(free, shape.num_gpu)


class DotProd(_Policy):
    """Tetris-style alignment: prefer the node whose free (CPU, GPU) aligns least with the request."""

    name = "dotprod"

    def class_scores(self, view: ClassView, shape: TaskShape, ok: NDArray[np.bool_]) -> Scored:
        gpu_left = view.gpus.sum(axis=1)
        req_gpu = float(shape.num_gpu * shape.gpu_milli)
        dot = (view.cpu / MAX_CPU) * (shape.cpu_milli / MAX_CPU) + (gpu_left / MAX_GPU) * (req_gpu / MAX_GPU)
        score = (100.0 * (1.0 - dot / 2.0)).astype(np.int64).astype(np.float64)
        return Scored(score, _none(len(view.cpu)))


class BestFit(_Policy):
    """Least leftover (CPU and GPU, equally weighted) after placement."""

    name = "bestfit"

    def class_scores(self, view: ClassView, shape: TaskShape, ok: NDArray[np.bool_]) -> Scored:
        gpu_left = view.gpus.sum(axis=1)
        req_gpu = float(shape.num_gpu * shape.gpu_milli)
        left = (view.cpu - shape.cpu_milli) / MAX_CPU * 0.5 + (gpu_left - req_gpu) / MAX_GPU * 0.5
        # The plugin min-max normalises over feasible nodes; that is strictly monotone on 0..100
        # integers, so the winner is the same as with the raw integer score.
        score = ((1.0 - left) * 100.0).astype(np.int64).astype(np.float64)
        return Scored(score, _none(len(view.cpu)))


class GpuPacking(_Policy):
    """Shared GPUs first, then free GPUs on used nodes, then empty nodes (small ones first)."""

    name = "gpupacking"

    def class_scores(self, view: ClassView, shape: TaskShape, ok: NDArray[np.bool_]) -> Scored:
        k = len(view.cpu)
        if shape.num_gpu == 0:
            return Scored(np.zeros(k), _none(k))
        g = view.gpus
        full = (g == MILLI).sum(axis=1)
        empty_node = np.maximum(100 // 3 - full, full)
        if shape.is_shared:
            # the least free fitting GPU: the last slot (rows sorted descending) with enough milli
            fitting = g >= shape.gpu_milli
            last = np.maximum(fitting.sum(axis=1) - 1, 0)
            chosen = g[np.arange(k), last]
            shared = np.maximum(100 - (chosen * 100 // MILLI) // 10, 50)
            used_node = np.where(chosen == MILLI, np.maximum(50 - 1, 33), shared)
        else:
            used_node = np.full(k, max(50 - shape.num_gpu, 100 // 3), dtype=np.int64)
        score = np.where(full == view.ngpu, empty_node, used_node).astype(np.float64)
        return Scored(score, _none(k))


class GpuClustering(_Policy):
    """Put GPU pods with pods of the same kind (shared, 1, 2, 4, 8 GPUs), fuller nodes first."""

    name = "gpuclustering"

    def node_scores(self, state: NodeState, shape: TaskShape, scores: F64) -> F64:
        if shape.num_gpu == 0:
            return scores
        kind = 0 if shape.is_shared else min(shape.num_gpu, state.affinity.shape[1] - 1)
        hosted = state.affinity > 0
        same = hosted[:, kind]
        kinds = hosted.sum(axis=1)
        tier = np.where(same, np.where(kinds == 1, 75, 50), np.where(kinds == 0, 25, 0))
        fill = 25 * (int(MAX_GPU) - state.gpu_left) // int(MAX_GPU)
        out: F64 = scores + tier + fill
        return out


class FGD(_Policy):
    """Fragmentation Gradient Descent: the node (and GPU) where expected fragmentation grows least."""

    name = "fgd"

    def __init__(self, frag: FragModel) -> None:
        self.frag = frag

    def gain(self, whole: bool) -> Gain:
        """The score of one candidate placement (what `class_scores` computes for many at once)."""
        return fgd_gain

    def class_scores(self, view: ClassView, shape: TaskShape, ok: NDArray[np.bool_]) -> Scored:
        if len(view.cpu) <= SMALL_BATCH:
            return self._scalar(view, shape, ok, fgd_gain)
        return fgd_scores(self.frag, shape, view.cpu, view.gpus, view.model, ok)

    def _scalar(self, view: ClassView, shape: TaskShape, ok: NDArray[np.bool_], gain: Gain) -> Scored:
        return scalar_scores(
            self.frag, shape, view.cpu.tolist(), view.gpus.tolist(), view.model.tolist(), ok.tolist(), gain
        )

    def choose_gpus(
        self, free: I64, shape: TaskShape, hint: tuple[int, ...], rng: np.random.Generator
    ) -> list[int]:
        if shape.is_shared:
            for i, f in enumerate(free.tolist()):
                if f >= shape.gpu_milli and f in hint:
                    return [i]
        return super().choose_gpus(free, shape, hint, rng)


class Tidescale(FGD):
    """Ours: FGD's fragmentation gradient plus the GPU capacity a node's CPU can no longer feed.

    FGD judges a node by what the typical tasks could still use *now*; a node whose free CPU is
    running out relative to its free GPUs (at the workload's CPU-per-GPU ratio) will strand those
    GPUs later, which FGD only notices once no typical task fits any more. The gain of a placement is
    FGD's drop in fragmentation plus the drop in projected stranded GPU milli; whole-GPU pods leave
    the balance term out (their placement is about keeping multi-GPU nodes whole). Scores keep FGD's
    integer sigmoid buckets, at a coarser scale, so near-equal nodes still tie and fall to the
    seeded node order rather than to a systematic tie-break (which packs CPU and GPU unevenly).
    """

    name = "tidescale"

    def __init__(self, frag: FragModel, weights: TidescaleWeights | None = None) -> None:
        super().__init__(frag)
        self.weights = weights or TidescaleWeights()
        self.ratio = workload_ratio(frag.tasks)

    def gain(self, whole: bool) -> Gain:
        return tidescale_gain(self.ratio, whole, self.weights)

    def class_scores(self, view: ClassView, shape: TaskShape, ok: NDArray[np.bool_]) -> Scored:
        whole = shape.num_gpu > 0 and not shape.is_shared
        if len(view.cpu) <= SMALL_BATCH:
            return self._scalar(view, shape, ok, self.gain(whole))
        g = gradient(self.frag, shape, view.cpu, view.gpus, view.model, ok)
        delta = g.delta
        if self.weights.balance and not whole:
            owner = g.after.owner
            gpu_before = view.gpus.sum(axis=1)[owner]
            gain = balance_gain(
                view.cpu[owner], gpu_before, g.after.cpu, g.after.gpus.sum(axis=1), self.ratio
            )
            delta = delta + self.weights.balance * gain
        cand = sigmoid_score(delta * (1000.0 / self.weights.scale)).astype(np.float64)
        return best_per_state(len(view.cpu), cand, g.after, g.before)


POLICY_NAMES = ("random", "dotprod", "gpuclustering", "gpupacking", "bestfit", "fgd", "tidescale")


def policy_factory(name: str) -> Callable[[FragModel], SimPolicy]:
    """The simulator policy for a name (see POLICY_NAMES); the FragModel is built per run."""
    simple: dict[str, type[_Policy]] = {
        "random": Random,
        "dotprod": DotProd,
        "gpuclustering": GpuClustering,
        "gpupacking": GpuPacking,
        "bestfit": BestFit,
    }
    if name in simple:
        cls = simple[name]
        return lambda frag: cls()
    if name == "fgd":
        return FGD
    if name == "tidescale":
        return Tidescale
    raise KeyError(f"no simulator policy {name!r} (known: {', '.join(POLICY_NAMES)})")
