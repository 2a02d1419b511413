"""Fragmentation of GPU nodes, as the FGD paper measures it, over node states held in arrays.

Weng et al., "Beware of Fragmentation", USENIX ATC '23 (see ../shared/reference/scheduling.md §5.6):
a node's fragmentation is the GPU capacity that the *typical tasks* of the workload could not use
there, weighted by how often each task occurs. FGD places a pod where that expected fragmentation
grows least. This module holds the typical-task distribution, the vectorised fragmentation measure
(many node states at once) and the FGD score; both the trace simulator and the placement plugins use
it.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
from numpy.typing import NDArray

MILLI = 1000
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]


@dataclass(frozen=True, order=True)
class TaskShape:
    """What a task asks for, as far as fragmentation is concerned (memory is deliberately ignored)."""

    cpu_milli: int
    gpu_milli: int  # per GPU; 0 for CPU-only
    num_gpu: int
    gpu_spec: str = ""  # allowed models, `|`-separated; empty = any

    @property
    def is_gpu(self) -> bool:
        return self.num_gpu > 0 and self.gpu_milli > 0

    @property
    def is_shared(self) -> bool:
        return self.num_gpu == 1 and 0 < self.gpu_milli < MILLI


@dataclass(frozen=True)
class TypicalTasks:
    """The target workload as a distribution over task shapes; `shares` sum to 1."""

    shapes: tuple[TaskShape, ...]
    shares: tuple[float, ...]

    @staticmethod
    def from_counts(counts: Counter[TaskShape], popularity_pct: int = 95) -> TypicalTasks:
        """The most popular shapes that together cover `popularity_pct` % of all tasks, renormalised.

        Order and cut follow the paper's simulator: by count (descending), ties by the larger shape
        first, adding one shape at a time until the running count reaches the threshold.
        """
        if not counts:
            return TypicalTasks((), ())
        ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        total = float(sum(counts.values()))
        expected = float(popularity_pct) * total / 100.0
        kept: list[tuple[TaskShape, int]] = []
        cum = 0.0
        for shape, count in ranked:
            if cum >= expected:
                break
            kept.append((shape, count))
            cum += count
        return TypicalTasks(tuple(s for s, _ in kept), tuple(c / cum for _, c in kept))

    @staticmethod
    def from_arrays(
        cpu_milli: I64,
        gpu_milli: I64,
        num_gpu: I64,
        gpu_spec: Sequence[str],
        popularity_pct: int = 95,
    ) -> TypicalTasks:
        counts: Counter[TaskShape] = Counter()
        for c, m, n, s in zip(
            cpu_milli.tolist(), gpu_milli.tolist(), num_gpu.tolist(), gpu_spec, strict=True
        ):
            counts[TaskShape(int(c), int(m) if n > 0 else 0, int(n), s)] += 1
        return TypicalTasks.from_counts(counts, popularity_pct)


def model_allowed(spec: str, model: str) -> bool:
    """A `|`-separated allow-list of GPU models admits `model`; an empty list admits any model."""
    if not spec:
        return True
    if not model:
        return False
    return model in spec.split("|")


class FragModel:
    """The fragmentation measure compiled for fast evaluation over many node states at once.

    For node state (free CPU `c`, free milli per GPU `g`, model) and a GPU task `m` that the node can
    host (enough GPUs with free >= m's share, enough CPU, model allowed), the fragment is the free
    milli on GPUs too small for m; otherwise (and for CPU-only tasks) all free GPU milli is fragment.
    So F = total_free - sum_m p_m * host_m * (free milli on GPUs >= m's share). Tasks are grouped by
    (share, count, spec); within a group the CPU condition is a step function of `c`, tabulated.
    """

    def __init__(self, tasks: TypicalTasks, models: Sequence[str]) -> None:
        self.tasks = tasks
        self.models = tuple(models)
        gpu = [(s, p) for s, p in zip(tasks.shapes, tasks.shares, strict=True) if s.is_gpu]
        self.shares_u = np.asarray(sorted({s.gpu_milli for s, _ in gpu}), dtype=np.int64)
        self.cpu_steps = np.asarray(sorted({s.cpu_milli for s, _ in gpu}), dtype=np.int64)
        groups: dict[tuple[int, int, str], int] = {}
        for s, _ in gpu:
            groups.setdefault((s.gpu_milli, s.num_gpu, s.gpu_spec), len(groups))
        self.group_u = np.asarray(
            [int(np.searchsorted(self.shares_u, u)) for (u, _, _) in groups], dtype=np.int64
        )
        self.group_num = np.asarray([n for (_, n, _) in groups], dtype=np.int64)
        steps = len(self.cpu_steps)
        self.weight = np.zeros((len(groups), steps + 1), dtype=np.float64)
        for s, p in gpu:
            g = groups[(s.gpu_milli, s.num_gpu, s.gpu_spec)]
            j = int(np.searchsorted(self.cpu_steps, s.cpu_milli))
            self.weight[g, j + 1 :] += p
        self.allowed = np.asarray(
            [[model_allowed(spec, m) for m in self.models] for (_, _, spec) in groups], dtype=np.float64
        ).reshape(len(groups), len(self.models))
        # the same tables as Python lists, for the scalar path (a few states: no numpy call overhead)
        self._u = self.shares_u.tolist()
        self._steps = self.cpu_steps.tolist()
        self._groups = [
            (int(self.group_u[g]), int(self.group_num[g]), self.weight[g].tolist(), self.allowed[g].tolist())
            for g in range(len(groups))
        ]

    def model_id(self, model: str) -> int:
        return self.models.index(model)

    def fragmentation_one(self, cpu: int, gpus: Sequence[int], model: int) -> float:
        """F of one state, in plain Python; `gpus` sorted by free milli, descending."""
        prefix = list(accumulate(gpus, initial=0))
        total = float(prefix[-1])
        if not self._groups:
            return total
        # shares ascending against GPUs descending: one merge pass gives, per share, how many GPUs
        # can take it (p) and their free milli (prefix[p])
        count = []
        p = len(gpus)
        for u in self._u:
            while p and gpus[p - 1] < u:
                p -= 1
            count.append(p)
        step = bisect_right(self._steps, cpu)
        relief = 0.0
        for ui, num, weights, allowed in self._groups:
            c = count[ui]
            if c >= num:
                relief += weights[step] * allowed[model] * prefix[c]
        return total - relief

    def fragmentation(self, cpu: I64, gpus: I64, model: I64) -> F64:
        """F for K node states: `cpu` (K,), `gpus` (K, G) free milli per GPU (0 pads), `model` (K,) ids."""
        total: F64 = gpus.sum(axis=1).astype(np.float64)
        if len(self.group_u) == 0 or len(cpu) == 0:
            return total
        ge = gpus[:, None, :] >= self.shares_u[None, :, None]
        count = ge.sum(axis=2)
        usable = np.where(ge, gpus[:, None, :], 0).sum(axis=2)
        host = count[:, self.group_u] >= self.group_num[None, :]
        step = np.searchsorted(self.cpu_steps, cpu, side="right")
        w = self.weight[:, step].T * self.allowed[:, model].T
        relief = (host * w * usable[:, self.group_u]).sum(axis=1)
        out: F64 = total - relief
        return out


def sigmoid_score(delta: F64) -> I64:
    """FGD's node score: `int(100 * sigmoid(delta / 1000))`, truncated as the paper's plugin does."""
    out: I64 = (1.0 / (1.0 + np.exp(-delta / 1000.0)) * 100.0).astype(np.int64)
    return out


@dataclass(frozen=True)
class AfterStates:
    """Candidate node states after placing one task on K sorted node states."""

    owner: I64  # which input state each candidate came from
    cpu: I64
    gpus: I64
    slot: I64  # the (sorted) GPU slot a share was taken from (-1: not a shared placement)


def fits(
    shape: TaskShape, cpu: I64, gpus_sorted: I64, model: I64, models: Sequence[str]
) -> NDArray[np.bool_]:
    """Whether each sorted state (GPUs by free milli, descending) can host `shape` (CPU, model, GPUs)."""
    ok = cpu >= shape.cpu_milli
    if shape.num_gpu <= 0:
        return ok
    if shape.gpu_spec:
        allowed = np.asarray([model_allowed(shape.gpu_spec, m) for m in models], dtype=np.bool_)
        ok = ok & allowed[model]
    n = shape.num_gpu
    if gpus_sorted.shape[1] < n:
        return np.zeros_like(ok)
    return ok & (gpus_sorted[:, n - 1] >= (shape.gpu_milli if shape.is_shared else MILLI))


def after_states(shape: TaskShape, cpu: I64, gpus_sorted: I64, ok: NDArray[np.bool_]) -> AfterStates:
    """Every distinct way to place `shape` on each fitting sorted state.

    A shared task may go on any GPU with enough free milli (GPUs with equal free milli give equal
    states, so one per distinct value); whole-GPU tasks take fully free GPUs; CPU-only tasks take CPU.
    """
    if shape.is_shared:
        g = gpus_sorted
        distinct = np.ones_like(g, dtype=np.bool_)
        distinct[:, 1:] = g[:, 1:] != g[:, :-1]
        ks, js = np.nonzero((g >= shape.gpu_milli) & distinct & ok[:, None])
        after = g[ks].copy()
        after[np.arange(len(ks)), js] -= shape.gpu_milli
        return AfterStates(ks.astype(np.int64), cpu[ks] - shape.cpu_milli, after, js.astype(np.int64))
    ks = np.flatnonzero(ok).astype(np.int64)
    after = gpus_sorted[ks].copy()
    if shape.num_gpu > 0:
        after[:, : shape.num_gpu] = 0  # sorted descending: the first `num_gpu` are the fully free ones
    return AfterStates(ks, cpu[ks] - shape.cpu_milli, after, np.full(len(ks), -1, dtype=np.int64))


def slot_values(gpus_sorted_row: I64, mask: int) -> tuple[int, ...]:
    """The free-milli values of the sorted slots whose bits are set in `mask`."""
    return tuple(int(gpus_sorted_row[j]) for j in range(len(gpus_sorted_row)) if mask >> j & 1)


@dataclass(frozen=True)
class Scored:
    """Per input state: the best score (-inf when the task does not fit), for shared tasks a bitmask
    of the sorted GPU slots that reach it (the caller takes the lowest-index GPU whose free milli
    equals one of those slots'), and the states' own fragmentation when the scorer measured it."""

    score: F64
    best_slots: I64
    frag: F64 | None = None


def best_per_state(k: int, cand_score: F64, after: AfterStates, frag: F64 | None = None) -> Scored:
    if k and len(after.owner) == k and after.slot[0] < 0:
        # one candidate per state, in order (whole-GPU and CPU-only tasks on fitting states)
        return Scored(cand_score, np.zeros(k, dtype=np.int64), frag)
    score = np.full(k, -np.inf)
    np.maximum.at(score, after.owner, cand_score)
    mask = np.zeros(k, dtype=np.int64)
    if len(after.owner) and after.slot[0] >= 0:
        winners = cand_score >= score[after.owner]
        np.bitwise_or.at(mask, after.owner[winners], np.left_shift(1, after.slot[winners]))
    return Scored(score, mask, frag)


@dataclass(frozen=True)
class Gradient:
    """The fragmentation of K states and of every candidate placement on them, measured together."""

    after: AfterStates
    before: F64  # per state
    delta: F64  # per candidate: fragmentation before minus after (positive: the placement helps)


def gradient(
    frag: FragModel, shape: TaskShape, cpu: I64, gpus_sorted: I64, model: I64, ok: NDArray[np.bool_]
) -> Gradient:
    """One fragmentation evaluation over the states and their candidate after-states."""
    after = after_states(shape, cpu, gpus_sorted, ok)
    k = len(cpu)
    both = frag.fragmentation(
        np.concatenate([cpu, after.cpu]),
        np.concatenate([gpus_sorted, after.gpus]),
        np.concatenate([model, model[after.owner]]),
    )
    before = both[:k]
    return Gradient(after, before, before[after.owner] - both[k:])


def fgd_scores(
    frag: FragModel,
    shape: TaskShape,
    cpu: I64,
    gpus_sorted: I64,
    model: I64,
    ok: NDArray[np.bool_] | None = None,
) -> Scored:
    """FGD's score of placing `shape` on each of K sorted node states (`ok`: which fit, if known)."""
    if ok is None:
        ok = fits(shape, cpu, gpus_sorted, model, frag.models)
    g = gradient(frag, shape, cpu, gpus_sorted, model, ok)
    cand = sigmoid_score(g.delta).astype(np.float64)
    return best_per_state(len(cpu), cand, g.after, g.before)


def stranded(cpu: F64, gpu: F64, ratio: float) -> F64:
    """GPU milli a node cannot use because its free CPU runs out first, at `ratio` CPU milli per
    GPU milli (the typical workload's)."""
    if ratio <= 0:
        return np.zeros_like(gpu)
    out: F64 = np.maximum(0.0, gpu - cpu / ratio)
    return out


Num = F64 | I64 | float


def balance_gain(cpu_b: Num, gpu_b: Num, cpu_a: Num, gpu_a: Num, ratio: float) -> F64:
    """How much a placement reduces stranded GPU milli (negative when it strands more)."""
    b = stranded(np.asarray(cpu_b, dtype=np.float64), np.asarray(gpu_b, dtype=np.float64), ratio)
    out: F64 = b - stranded(np.asarray(cpu_a, dtype=np.float64), np.asarray(gpu_a, dtype=np.float64), ratio)
    return out


def workload_ratio(tasks: TypicalTasks) -> float:
    """Mean CPU milli per GPU milli of the typical workload (0 when it asks for no GPU)."""
    cpu = sum(p * s.cpu_milli for s, p in zip(tasks.shapes, tasks.shares, strict=True))
    gpu = sum(p * s.num_gpu * s.gpu_milli for s, p in zip(tasks.shapes, tasks.shares, strict=True))
    return cpu / gpu if gpu else 0.0


SMALL_BATCH = 32  # up to this many states, the scalar path beats numpy's per-call overhead

# gain(delta, cpu_before, gpu_before, cpu_after, gpu_after) -> candidate score (higher wins)
Gain = Callable[[float, int, int, int, int], float]


def fgd_gain(delta: float, cpu_b: int, gpu_b: int, cpu_a: int, gpu_a: int) -> float:
    return float(int(1.0 / (1.0 + math.exp(-delta / 1000.0)) * 100.0))


def scalar_scores(
    frag: FragModel,
    shape: TaskShape,
    cpu: Sequence[int],
    gpus: Sequence[Sequence[int]],
    model: Sequence[int],
    ok: Sequence[bool],
    gain: Gain,
) -> Scored:
    """`best_per_state` over the candidate placements of a few sorted states, in plain Python."""
    k = len(cpu)
    score = [-math.inf] * k
    slots = [0] * k
    before = [0.0] * k
    milli = shape.gpu_milli
    for i in range(k):
        row = list(gpus[i])
        f0 = frag.fragmentation_one(cpu[i], row, model[i])
        before[i] = f0
        if not ok[i]:
            continue
        c_after = cpu[i] - shape.cpu_milli
        total = sum(row)
        if shape.is_shared:
            options = []
            for j, v in enumerate(row):
                if v < milli:
                    break
                if j == 0 or v != row[j - 1]:
                    after = list(row)
                    after[j] = v - milli
                    after.sort(reverse=True)
                    options.append((j, after, total - milli))
        elif shape.num_gpu > 0:
            after = [0] * shape.num_gpu + row[shape.num_gpu :]
            after.sort(reverse=True)
            options = [(-1, after, total - MILLI * shape.num_gpu)]
        else:
            options = [(-1, row, total)]
        for j, after, g_after in options:
            s = gain(f0 - frag.fragmentation_one(c_after, after, model[i]), cpu[i], total, c_after, g_after)
            if s > score[i]:
                score[i] = s
                slots[i] = 1 << j if j >= 0 else 0
            elif s == score[i] and j >= 0:
                slots[i] |= 1 << j
    return Scored(np.asarray(score), np.asarray(slots, dtype=np.int64), np.asarray(before))


def stranded_one(cpu: int, gpu: int, ratio: float) -> float:
    return max(0.0, gpu - cpu / ratio) if ratio > 0 else 0.0


@dataclass(frozen=True)
class TidescaleWeights:
    """Knobs of our policy; the defaults are what the benchmark reports."""

    balance: float = 0.5  # weight of the stranded-GPU term, in GPU milli per GPU milli
    scale: float = 2000.0  # sigmoid scale of the bucketed score (FGD's is 1000)


def tidescale_gain(ratio: float, whole: bool, weights: TidescaleWeights | None = None) -> Gain:
    """Our score of a placement: FGD's gradient plus the drop in projected stranded GPU milli (not
    for whole-GPU tasks), bucketed by `int(100 sigmoid(. / scale))`."""
    w = weights or TidescaleWeights()
    balance = 0.0 if whole else w.balance
    scale = w.scale

    def score(delta: float, cpu_b: int, gpu_b: int, cpu_a: int, gpu_a: int) -> float:
        if balance:
            delta += balance * (stranded_one(cpu_b, gpu_b, ratio) - stranded_one(cpu_a, gpu_a, ratio))
        return float(int(1.0 / (1.0 + math.exp(-delta / scale)) * 100.0))

    return score
