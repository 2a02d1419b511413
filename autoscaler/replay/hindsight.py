"""What an autoscaler could have done on a trace, knowing it: the hindsight frontier of GPU-hours against SLO
violations of capacity schedules chosen in hindsight, to place real controllers against.

Four families, on the replay's service model (a c-server FIFO; latency = wait + prompt ÷ prefill):

- **constant**: c replicas the whole time, every c — the best an autoscaler that cannot tell one minute from
  the next can do, with the level picked in hindsight. Exact (one FIFO over the whole trace).
- **clairvoyant-W**: a level per window of W seconds, chosen knowing the future, every replica started costing
  the model start in GPU time. For each window and level the violations come from a FIFO that starts the
  window empty (a backlog carried over is forgotten, which flatters the schedule); a dynamic program then
  minimises GPU-seconds + λ·violations over the levels, and a bisection on λ finds the schedule with the
  fewest violations within a GPU-hour budget. W = 60 s is a controller that knows each coming minute one model
  start ahead; larger W know less about when inside the window the load comes.
- **clairvoyant-W served**: the same schedules served whole, one FIFO carrying its backlog from window to
  window — real schedules counted exactly, so points a clairvoyant controller could reach. Where the two
  differ much, forgetting the backlog is what the clairvoyant-W figures buy (long requests near full
  utilisation: a window that starts empty can run at its load's level).
- **reachable by reaction**: for a constant level, the share of its violations that arrive at least one model
  start (plus the detection delay) after their congestion episode began — the only ones a replica started when
  the episode began could still have served. Near zero means no reactive controller can lower violations
  below what it holds in advance: only capacity placed ahead of the load (a forecast) can.

Both families start as the replay does (one warm replica, the first node's other GPUs after a model start,
more after a node's provisioning and a model start), so a constant level is exactly what the replay gives a
controller that writes it in its first second (tested); beyond that they are free to move capacity when
they like. With `measure_from` (`--warmup`) GPU-hours and violations count from that second on, as in the
replay: a constant level is still served from the trace's start, and the windows that end by then are left
out (each window starts empty anyway). A goal the best constant level misses and a clairvoyant schedule meets
only with W-second windows asks a controller to forecast the load W seconds at a time, one model start
ahead.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from autoscaler.replay.service_model import ServiceModel
from autoscaler.replay.trace import Requests

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Point:
    """One capacity schedule: its GPU-hours (replicas × GPUs per replica, model starts included) and the
    requests whose time to first token exceeded the SLO."""

    gpu_hours: float
    violations: int
    mean_replicas: float
    starts: int = 0


@dataclass(frozen=True)
class Frontier:
    family: str  # "constant", "clairvoyant-<W>s", "clairvoyant-<W>s-served" or "previous-<W>s"
    points: tuple[Point, ...]  # by GPU-hours, each with fewer violations than the one before
    # (λ, the schedule minimising GPU-seconds + λ·violations) for the families searched that way
    optima: tuple[tuple[float, Point], ...] = ()

    def violations_at_least(self, gpu_hours: float) -> float | None:
        """A lower bound on the violations of every schedule of this family within `gpu_hours` (Lagrangian
        duality: for each λ, GPU-s + λ·V ≥ the optimum's, so V ≥ V_λ + (G_λ − budget)/λ); None when the
        family was not searched by λ. The fewest found within the budget can be above it: the λ search
        finds only schedules on the lower convex hull."""
        if not self.optima:
            return None
        budget_s = gpu_hours * 3600.0
        return max(0.0, *(p.violations + (p.gpu_hours * 3600.0 - budget_s) / lam for lam, p in self.optima))

    def fewest_violations_within(self, gpu_hours: float) -> Point | None:
        """The point with the fewest violations at ≤ `gpu_hours` (None when every point costs more)."""
        within = [p for p in self.points if p.gpu_hours <= gpu_hours + 1e-9]
        return min(within, key=lambda p: (p.violations, p.gpu_hours)) if within else None

    def least_gpu_hours_within(self, violations: int) -> Point | None:
        """The cheapest point with ≤ `violations` (None when none has so few)."""
        within = [p for p in self.points if p.violations <= violations]
        return min(within, key=lambda p: (p.gpu_hours, p.violations)) if within else None


@dataclass(frozen=True)
class Work:
    """The trace as the service model sees it."""

    arrival: FloatArray
    service: FloatArray  # seconds a replica is busy
    prefill: FloatArray  # seconds to the first token once served
    slo_s: float
    duration_s: float
    gpus_per_replica: int
    start_s: float  # model start: GPU-seconds a started replica costs before it serves
    delay_s: float  # the earliest an autoscaler sees a request after it arrives
    # The replay's start: `warm` replicas serve from the first second, the rest of the first nodes'
    # `slots` after a model start, any more after a node's provisioning and a model start (pods waiting
    # for a node hold no GPU). The defaults: every replica serves from the first second.
    warm: int = 1 << 30
    slots: int = 1 << 30
    node_s: float = 0.0
    # GPU-seconds and violations count from this second on (`Simulation(measure_from=…)`): the start-up,
    # served as the replay serves it, left out of the figures
    measure_from: float = 0.0

    @classmethod
    def of(
        cls, requests: Requests, model: ServiceModel, initial_replicas: int = 1, measure_from: float = 0.0
    ) -> Work:
        """`initial_replicas`: the warm replicas the replay starts with (`simulator.replay`); `measure_from`:
        as the replay's."""
        service, prefill = model.times(requests)
        return cls(
            arrival=np.asarray(requests.arrival, dtype=np.float64),
            service=service,
            prefill=prefill,
            slo_s=model.slo_ttft_s,
            duration_s=max(1.0, requests.duration_s),
            gpus_per_replica=max(1, model.gpus_per_replica),
            start_s=model.cold_start_s,
            delay_s=model.direct_delay_s,
            warm=initial_replicas,
            slots=model.initial_nodes * model.gpus_per_node // max(1, model.gpus_per_replica),
            node_s=model.node_provisioning_s,
            measure_from=max(0.0, measure_from),
        )

    @property
    def measured_s(self) -> float:
        """The seconds the figures count: from `measure_from` to the trace's end."""
        return max(1.0, self.duration_s - self.measure_from)

    def ready_at(self, replicas: int, t0: float) -> list[float]:
        """When each of `replicas` replicas can first serve, from `t0` on (ascending: a heap as it is)."""
        later = self.node_s + self.start_s
        return [
            max(t0, 0.0 if i < self.warm else self.start_s if i < self.slots else later)
            for i in range(replicas)
        ]

    def gpu_seconds(self, replicas: int, a: float, b: float) -> float:
        """GPU-seconds `replicas` replicas hold over [a, b): those beyond the first nodes from when their node
        is ready."""
        first = min(replicas, self.slots) * (b - a)
        rest = max(0, replicas - self.slots) * max(0.0, b - max(a, self.node_s))
        return (first + rest) * self.gpus_per_replica

    def replicas_of_work(self) -> float:
        """Mean load in replicas (busy replica-seconds per second) over the measured part."""
        measured = self.arrival >= self.measure_from
        return float(self.service[measured].sum()) / self.measured_s


def fifo(
    work: Work, replicas: int, lo: int = 0, hi: int | None = None, t0: float | None = None
) -> tuple[int, int]:
    """(violations, reachable) for requests lo:hi served by `replicas` from an empty start at `t0` (default
    the first arrival), of those that arrived from `work.measure_from` on. `reachable` counts violations that
    arrived ≥ start_s + delay_s after their congestion episode began (the last arrival that found a replica
    free)."""
    hi = len(work.arrival) if hi is None else hi
    if hi <= lo:
        return 0, 0
    if replicas <= 0:
        return hi - lo, 0
    start = float(work.arrival[lo]) if t0 is None else t0
    free = work.ready_at(replicas, start)
    # plain floats: indexing numpy arrays one element at a time costs more than the whole loop
    arrivals = work.arrival[lo:hi].tolist()
    services = work.service[lo:hi].tolist()
    prefills = work.prefill[lo:hi].tolist()
    slo, lead, counted = work.slo_s, work.start_s + work.delay_s, work.measure_from
    violations = reachable = 0
    onset = start
    for a, busy, first in zip(arrivals, services, prefills, strict=True):
        f = free[0]
        if f <= a:
            begin = a
            onset = a
        else:
            begin = f
        if begin - a + first > slo and a >= counted:
            violations += 1
            if a - onset >= lead:
                reachable += 1
        heapq.heapreplace(free, begin + busy)
    return violations, reachable


def _ceiling(work: Work) -> int:
    """Enough replicas that no request waits: the most requests in flight if each were served at once."""
    if not len(work.arrival):
        return 0
    ends = np.sort(work.arrival + work.service)
    inflight = np.arange(1, len(work.arrival) + 1) - np.searchsorted(ends, work.arrival, side="right")
    return int(inflight.max())


def _pareto(points: Sequence[Point]) -> tuple[Point, ...]:
    out: list[Point] = []
    for p in sorted(points, key=lambda p: (p.gpu_hours, p.violations)):
        if not out or p.violations < out[-1].violations:
            out.append(p)
    return tuple(out)


def window_bounds(work: Work, window_s: float) -> list[tuple[float, float, float]]:
    """(start, counted from, end) of each window the figures count: windows of `window_s` from the trace's
    start, those that end by `work.measure_from` left out, the first counted from it and the last only as
    long as the trace."""
    n_windows = max(1, math.ceil(work.duration_s / window_s + 1e-9))
    first = min(n_windows - 1, int(work.measure_from // window_s))
    return [
        (w * window_s, max(w * window_s, work.measure_from), min((w + 1) * window_s, work.duration_s))
        for w in range(first, n_windows)
    ]


def window_violations(work: Work, window_s: float, levels: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Violations per (window, level) when each window starts with an empty queue. Levels ascending; once a
    level has none, the higher ones have none either (more replicas never start a FIFO request later)."""
    bounds = window_bounds(work, window_s)
    out = np.zeros((len(bounds), len(levels)))
    for w, (start, _, end) in enumerate(bounds):
        lo = int(np.searchsorted(work.arrival, start, side="left"))
        last = w == len(bounds) - 1
        hi = len(work.arrival) if last else int(np.searchsorted(work.arrival, end, side="left"))
        for j, c in enumerate(levels):
            v, _ = fifo(work, int(c), lo, hi, t0=start)
            out[w, j] = v
            if v == 0:
                break
    return out


def window_gpu_seconds(work: Work, window_s: float, levels: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """GPU-seconds per (window, level) over the part of each window the figures count."""
    return np.array(
        [
            [work.gpu_seconds(int(c), counted, end) for c in levels]
            for _, counted, end in window_bounds(work, window_s)
        ]
    )


class Windows(NamedTuple):
    """Violations and GPU-seconds per (window, level)."""

    violations: npt.NDArray[np.float64]
    gpu: npt.NDArray[np.float64]

    @classmethod
    def of(cls, work: Work, window_s: float, levels: npt.NDArray[np.int64]) -> Windows:
        return cls(window_violations(work, window_s, levels), window_gpu_seconds(work, window_s, levels))


def schedule(
    cost: npt.NDArray[np.float64],
    gpu: npt.NDArray[np.float64],
    levels: npt.NDArray[np.int64],
    start_s: float,
    lam: float,
) -> npt.NDArray[np.int64]:
    """The level index per window minimising Σ (GPU-seconds + start_s·new replicas + λ·violations), with
    `cost` and `gpu` per (window, level); the first window's level is in place for free."""
    n_windows, n_levels = cost.shape
    starts = start_s * np.maximum(0, levels[:, None] - levels[None, :]).astype(np.float64)  # [new, previous]
    total = gpu[0] + lam * cost[0]
    back = np.zeros((n_windows, n_levels), dtype=np.int64)
    for w in range(1, n_windows):
        via = total[None, :] + starts
        back[w] = via.argmin(axis=1)
        total = via[np.arange(n_levels), back[w]] + gpu[w] + lam * cost[w]
    path = np.zeros(n_windows, dtype=np.int64)
    path[-1] = int(total.argmin())
    for w in range(n_windows - 1, 0, -1):
        path[w - 1] = back[w, path[w]]
    return path


def _point(
    work: Work,
    cost: npt.NDArray[np.float64],
    gpu: npt.NDArray[np.float64],
    levels: npt.NDArray[np.int64],
    path: npt.NDArray[np.int64],
    window_s: float,
) -> Point:
    chosen = levels[path]
    starts = int(np.maximum(0, np.diff(chosen)).sum())
    rows = np.arange(len(path))
    spans = np.array([end - counted for _, counted, end in window_bounds(work, window_s)])
    gpu_s = float(gpu[rows, path].sum()) + starts * work.start_s * work.gpus_per_replica
    violations = int(cost[rows, path].sum())
    return Point(
        gpu_s / 3600.0,
        violations,
        float((chosen * spans).sum()) / work.measured_s,
        starts,
    )


class Searched(NamedTuple):
    """The schedules a λ search found: (λ, point, level index per window) by λ, and which of them to serve
    whole (`served`): the grid's and, per budget, the one found within it."""

    optima: tuple[tuple[float, Point, npt.NDArray[np.int64]], ...]
    kept: frozenset[float]


def search(
    work: Work,
    window_s: float,
    levels: npt.NDArray[np.int64],
    budgets: Sequence[float] = (),
    windows: Windows | None = None,
) -> Searched:
    """Schedules for λ on a geometric grid, plus for each GPU-hour budget the schedule that bisection on λ
    finds just within it."""
    cost, gpu = windows or Windows.of(work, window_s, levels)
    start = work.start_s * work.gpus_per_replica
    memo: dict[float, tuple[Point, npt.NDArray[np.int64]]] = {}

    def at(lam: float) -> Point:
        if lam not in memo:
            path = schedule(cost, gpu, levels, start, lam)
            memo[lam] = (_point(work, cost, gpu, levels, path, window_s), path)
        return memo[lam][0]

    grid = [2.0**k for k in range(-6, 14)]
    kept = set(grid)
    for lam in grid:
        at(lam)
    for budget in budgets:
        lo, hi = 0.0, grid[-1]
        if at(hi).gpu_hours <= budget:
            continue
        for _ in range(40):  # GPU-hours grow with λ: the largest λ within the budget
            mid = (lo + hi) / 2
            if at(mid).gpu_hours <= budget:
                lo = mid
            else:
                hi = mid
        if lo in memo:
            kept.add(lo)
    return Searched(tuple((lam, p, path) for lam, (p, path) in sorted(memo.items())), frozenset(kept))


def clairvoyant(
    work: Work,
    window_s: float,
    levels: npt.NDArray[np.int64],
    budgets: Sequence[float] = (),
    windows: Windows | None = None,
    searched: Searched | None = None,
) -> Frontier:
    """The clairvoyant-W frontier as the windows count it (each window starting empty): schedules for λ on a
    geometric grid, plus for each GPU-hour budget the schedule that bisection on λ finds just within it."""
    found = searched or search(work, window_s, levels, budgets, windows)
    optima = tuple((lam, p) for lam, p, _ in found.optima)
    return Frontier(f"clairvoyant-{window_s:g}s", _pareto([p for _, p in optima]), optima)


def served(work: Work, window_s: float, chosen: npt.NDArray[np.int64]) -> int:
    """Violations of a schedule — `chosen[i]` replicas in the i-th counted window (`window_bounds`) — served
    as one FIFO from the first counted window's start: a backlog is carried from window to window, as a
    controller holding these levels would carry it. A window's new replicas serve from its start (the
    schedule started them a model start before, and pays for it), or once the replay's start-up allows
    (`Work.ready_at`); a window with fewer replicas retires those free soonest (a busy one finishes its
    request first). Requests still waiting when no replica is left violate."""
    return int(served_by_window(work, window_s, chosen).sum())


def served_by_window(work: Work, window_s: float, chosen: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """`served`'s violations per counted window, by the window each request arrived in (where a schedule
    that carries a backlog pays for it: a repair raises those windows' levels)."""
    bounds = window_bounds(work, window_s)
    if len(chosen) != len(bounds):
        raise ValueError(f"a schedule of {len(chosen)} levels for {len(bounds)} windows of {window_s:g} s")
    begin0 = bounds[0][0]
    lo = int(np.searchsorted(work.arrival, begin0, side="left"))
    c = int(chosen[0])
    free = work.ready_at(c, begin0)  # ascending: a heap as it is
    edges = [b[0] for b in bounds[1:]]
    arrivals = work.arrival[lo:].tolist()
    services = work.service[lo:].tolist()
    prefills = work.prefill[lo:].tolist()
    slo, counted = work.slo_s, work.measure_from
    violations = [0] * len(bounds)
    nxt = 0
    last = len(bounds) - 1
    for a, busy, first in zip(arrivals, services, prefills, strict=True):
        while True:  # the windows that start before this request would: their levels first
            start = max(a, free[0]) if free else math.inf
            if nxt == len(edges) or edges[nxt] > start:
                break
            edge, want = edges[nxt], int(chosen[nxt + 1])
            nxt += 1
            if want > c:
                for t in work.ready_at(want, edge)[c:]:
                    heapq.heappush(free, t)
            else:
                for _ in range(c - want):
                    heapq.heappop(free)
            c = want
        if start - a + first > slo and a >= counted:
            violations[min(last, int((a - begin0) // window_s))] += 1
        if free:
            heapq.heapreplace(free, start + busy)
    return np.array(violations, dtype=np.int64)


def clairvoyant_served(
    work: Work, window_s: float, levels: npt.NDArray[np.int64], searched: Searched
) -> Frontier:
    """The clairvoyant-W schedules the search kept, each served whole (`served`): what knowing each coming
    window buys once a backlog is not forgotten at a window's edge. Where the windows' count is far below
    this, the clairvoyant-W frontier is flattered by forgetting."""
    points = []
    seen: dict[bytes, int] = {}  # many λ find the same schedule: serve each once (a pass over the trace)
    for lam, p, path in searched.optima:
        if lam in searched.kept:
            key = path.tobytes()
            if key not in seen:
                seen[key] = served(work, window_s, levels[path])
                points.append(Point(p.gpu_hours, seen[key], p.mean_replicas, p.starts))
    return Frontier(f"clairvoyant-{window_s:g}s-served", _pareto(points))


def previous(
    work: Work, window_s: float, levels: npt.NDArray[np.int64], windows: Windows | None = None
) -> Frontier:
    """An online forecast to set beside the clairvoyant schedule: each window gets the level that would have
    been best for the window before (known once it has passed), for λ on a geometric grid; the first window
    starts at the first window's own best. It shows whether the recent past predicts the next window."""
    cost, gpu = windows or Windows.of(work, window_s, levels)
    points = []
    for lam in (2.0**k for k in range(-6, 14)):
        best = (gpu + lam * cost).argmin(axis=1)
        path = np.concatenate([best[:1], best[:-1]])
        points.append(_point(work, cost, gpu, levels, path, window_s))
    return Frontier(f"previous-{window_s:g}s", _pareto(points))


def levels_for(work: Work, max_levels: int = 160) -> npt.NDArray[np.int64]:
    """0 … the no-wait ceiling in at most `max_levels` steps."""
    top = max(1, _ceiling(work))
    step = max(1, math.ceil(top / max_levels))
    return np.arange(0, top + step, step, dtype=np.int64)


@dataclass(frozen=True)
class Reference:
    """A replayed controller's outcome to place against the frontiers."""

    policy: str
    gpu_hours: float
    violations: int | None  # None for a budget with no replay behind it


@dataclass(frozen=True)
class Report:
    mean_replicas_of_work: float
    frontiers: tuple[Frontier, ...]
    references: tuple[Reference, ...]
    # (level, violations, reachable by reaction) of the constant levels nearest each reference's GPU-hours
    reaction: tuple[tuple[int, int, int], ...]
    measured_from_s: float = 0.0  # GPU-hours and violations count from here

    def best(self, family: str, gpu_hours: float) -> Point | None:
        f = next(f for f in self.frontiers if f.family == family)
        return f.fewest_violations_within(gpu_hours)

    def render(self) -> dict[str, object]:
        return {
            "measured_from_s": self.measured_from_s,
            "mean_replicas_of_work": round(self.mean_replicas_of_work, 2),
            "references": [
                {
                    "policy": r.policy,
                    "gpu_hours": round(r.gpu_hours, 3),
                    "slo_violations": r.violations,
                    "fewest_violations_within": {
                        f.family: _row(f.fewest_violations_within(r.gpu_hours)) for f in self.frontiers
                    },
                    "violations_at_least": {
                        f.family: round(bound)
                        for f in self.frontiers
                        if (bound := f.violations_at_least(r.gpu_hours)) is not None
                    },
                }
                for r in self.references
            ],
            "reaction": [
                {"replicas": c, "slo_violations": v, "reachable_by_reaction": reach}
                for c, v, reach in self.reaction
            ],
            "frontiers": {f.family: [_row(p) for p in f.points] for f in self.frontiers},
        }


def _row(p: Point | None) -> dict[str, float | int] | None:
    if p is None:
        return None
    return {
        "gpu_hours": round(p.gpu_hours, 3),
        "slo_violations": p.violations,
        "mean_replicas": round(p.mean_replicas, 2),
        "starts": p.starts,
    }


def _level_within(work: Work, gpu_hours: float) -> int:
    """The most replicas held over the measured part within `gpu_hours`."""
    c = 0
    while work.gpu_seconds(c + 1, work.measure_from, work.duration_s) <= gpu_hours * 3600 + 1e-6:
        c += 1
    return c


def report(
    requests: Requests,
    model: ServiceModel,
    references: Sequence[Reference],
    windows: Sequence[float],
    measure_from: float = 0.0,
) -> Report:
    """The constant and clairvoyant frontiers on `requests`, each searched around the references' budgets,
    and how much of a constant level's violations a reaction could reach; GPU-hours and violations counted
    from `measure_from` (a constant level is served from the trace's start, as the replay serves it; a
    window's schedule starts empty, so the windows before are left out)."""
    work = Work.of(requests, model, measure_from=measure_from)
    levels = levels_for(work)
    # constant levels: the grid, stopping at the first level without violations, plus the level each
    # reference's GPU-hours would buy
    near = sorted({_level_within(work, r.gpu_hours) for r in references})
    seen: dict[int, tuple[int, int]] = {}
    for c in levels:
        seen[int(c)] = fifo(work, int(c))
        if seen[int(c)][0] == 0:
            break
    for c in near:
        seen.setdefault(c, fifo(work, c))
    points = [
        Point(work.gpu_seconds(c, work.measure_from, work.duration_s) / 3600, v, float(c))
        for c, (v, _) in seen.items()
    ]
    const = Frontier("constant", _pareto(points))
    budgets = [r.gpu_hours for r in references]
    families: list[Frontier] = [const]
    for w in windows:
        matrices = Windows.of(work, w, levels)
        found = search(work, w, levels, budgets, matrices)
        families += [
            clairvoyant(work, w, levels, searched=found),
            clairvoyant_served(work, w, levels, found),
            previous(work, w, levels, matrices),
        ]
    frontiers = tuple(families)
    reaction = tuple((c, *seen[c]) for c in near)
    return Report(work.replicas_of_work(), frontiers, tuple(references), reaction, work.measure_from)


def format_report(rep: Report) -> str:
    """Each replayed controller beside the fewest violations each family reaches within its GPU-hours."""
    families = [f.family for f in rep.frontiers]
    head = f"{'policy':12} {'GPU-h':>7} {'SLO viol.':>9}  " + "  ".join(f"{f:>22}" for f in families)
    lines = [
        f"mean load {rep.mean_replicas_of_work:.1f} replicas of work; fewest violations within each policy's "
        "GPU-hours (violations @ GPU-h; ≥ N: no clairvoyant schedule within them has fewer):",
        *(
            [f"counted from {rep.measured_from_s:g} s: the start-up before it is left out"]
            if rep.measured_from_s
            else []
        ),
        head,
    ]
    for r in rep.references:
        cells = []
        for f in rep.frontiers:
            p = f.fewest_violations_within(r.gpu_hours)
            bound = f.violations_at_least(r.gpu_hours)
            cell = "-" if p is None else f"{p.violations} @ {p.gpu_hours:.1f}"
            if bound is not None:
                cell += f" ≥ {bound:.0f}"
            cells.append(f"{cell:>22}")
        seen = "-" if r.violations is None else str(r.violations)
        lines.append(f"{r.policy:12} {r.gpu_hours:7.2f} {seen:>9}  " + "  ".join(cells))
    for c, v, reach in rep.reaction:
        share = reach / v if v else 0.0
        lines.append(
            f"constant {c} replicas: {v} violations, {reach} ({share:.1%}) late enough in their congestion "
            "for a replica started at its onset to serve them"
        )
    return "\n".join(lines)
