"""Cost/SLO frontiers: which of a controller's replays are efficient, and how many fewer GPU-hours one
frontier needs than another at equal SLO violations.

A point is one replay: the knob's setting, its GPU-hours and its SLO violations. A controller's lower frontier
is its Pareto-efficient points: no other of its points has as few violations and as few GPU-hours (one of
them fewer). Along a frontier, GPU-hours are a piecewise-linear function of violations between consecutive
points, defined from its fewest to its most violations and nowhere else. Two frontiers compare over the
violations both cover: at `samples` evenly spaced levels there, the saving is 1 − ours ÷ theirs, summarised
by its median, min and max (a min ≥ 0: ours is nowhere above theirs). Against several frontiers at once (the
best baseline), theirs is the fewest GPU-hours any of them needs at that level, over the levels that ours and
at least one of them cover.

Where no level is known exactly, the saving is a bound. GPU-hours fall along a frontier as violations rise, so
a frontier that starts at more violations than a level would need at least its first point's GPU-hours to
come down to it, and one that ends at fewer needs no more than its last point's there. Each of our points
against the fewest GPU-hours theirs can need there gives a saving of *at least* that much (as far as their
grids show); against the fewest they are known to need, of *at most* that much.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SAMPLES = 20


@dataclass(frozen=True, slots=True)
class Point:
    value: float  # the knob's setting
    gpu_hours: float
    violations: float


Frontier = tuple[Point, ...]


def lower_frontier(points: Sequence[Point]) -> Frontier:
    """The Pareto-efficient points, by violations (fewest first; GPU-hours then fall strictly). Of points
    equal in both, the first given is kept."""
    out: list[Point] = []
    for p in sorted(points, key=lambda p: (p.violations, p.gpu_hours)):
        if out and p.gpu_hours >= out[-1].gpu_hours:
            continue  # an earlier point has no more violations and no more GPU-hours
        out.append(p)
    return tuple(out)


def gpu_hours_at(frontier: Frontier, violations: float) -> float | None:
    """GPU-hours along the frontier at `violations` (linear between its points); None outside its range."""
    if not frontier or not frontier[0].violations <= violations <= frontier[-1].violations:
        return None
    v = [p.violations for p in frontier]
    g = [p.gpu_hours for p in frontier]
    return float(np.interp(violations, v, g))


@dataclass(frozen=True)
class Saving:
    """Our GPU-hour saving against theirs at equal violations (fractions), over [low, high] violations."""

    median: float | None
    min: float | None
    max: float | None
    low: float | None = None
    high: float | None = None
    samples: int = 0
    reason: str = ""  # why there is none, or how a bound was taken
    bound: str = ""  # "" (interpolated at equal violations), "at least" or "at most" (no common violations)

    def render(self) -> dict[str, object]:
        out: dict[str, object] = {
            "median": _round(self.median),
            "min": _round(self.min),
            "max": _round(self.max),
            "violations_range": None if self.low is None else [round(self.low, 1), round(self.high or 0, 1)],
            "samples": self.samples,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.bound:
            out["bound"] = self.bound
        return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _span(f: Frontier) -> str:
    return f"{f[0].violations:,.0f}–{f[-1].violations:,.0f}" if f else "none"


def saving(ours: Frontier, theirs: Sequence[Frontier], samples: int = SAMPLES) -> Saving:
    """1 − ours ÷ theirs at `samples` evenly spaced violation levels where it is known exactly: ours and at
    least one of theirs cover the level, none of theirs has ended below it, and none that starts above it
    could be cheaper there (its first point is dearer than the cheapest that covers the level). Theirs at a
    level is the fewest GPU-hours of those that cover it. With no such level, the saving is a bound
    (`_bounded`)."""
    theirs = [f for f in theirs if f]
    if not ours or not theirs:
        return Saving(None, None, None, reason="no points" if not ours else "no points to compare with")
    low = max(ours[0].violations, min(f[0].violations for f in theirs))
    high = min(ours[-1].violations, *(f[-1].violations for f in theirs))
    if low > high:
        return _bounded(ours, theirs)
    levels = np.linspace(low, high, samples) if high > low else np.array([low])
    got: list[float] = []
    kept: list[float] = []
    for v in levels:
        mine = gpu_hours_at(ours, float(v))
        other = [g for f in theirs if (g := gpu_hours_at(f, float(v))) is not None]
        if mine is None or not other or min(other) <= 0:
            continue
        if any(f[0].violations > v and f[0].gpu_hours < min(other) for f in theirs):
            continue  # one that starts above the level might be the cheapest there
        got.append(1.0 - mine / min(other))
        kept.append(float(v))
    if not got:
        bounded = _bounded(ours, theirs)
        if bounded.median is not None:
            return bounded
        return Saving(None, None, None, low, high, reason="no level where both are defined")
    return Saving(float(np.median(got)), float(min(got)), float(max(got)), min(kept), max(kept), len(got))


def _bounded(ours: Frontier, theirs: Sequence[Frontier]) -> Saving:
    """The saving as a bound, at each of our points (see the module's docstring): at least 1 − ours ÷ the
    fewest GPU-hours theirs can need there (those covering it exactly, those starting above it at least
    their first point's), when none of theirs has ended below it; else at most 1 − ours ÷ the fewest
    GPU-hours theirs are known to need there (those covering it, those ended below it at most their last
    point's)."""
    spans = f"ours {_span(ours)}, theirs {', '.join(_span(f) for f in theirs)}"
    least: list[float] = []
    most: list[float] = []
    for p in ours:
        v = p.violations
        covering = [g for f in theirs if (g := gpu_hours_at(f, v)) is not None]
        above = [f[0].gpu_hours for f in theirs if f[0].violations > v]
        ended = [f[-1].gpu_hours for f in theirs if f[-1].violations < v]
        if not ended and min(covering + above) > 0:
            least.append(1.0 - p.gpu_hours / min(covering + above))
        if covering + ended and min(covering + ended) > 0:
            most.append(1.0 - p.gpu_hours / min(covering + ended))
    if len(least) == len(ours):
        got, bound = least, "at least"
        how = "theirs at their first point where they do not reach our violations"
    elif len(most) == len(ours):
        got, bound = most, "at most"
        how = "theirs at their last point where they end below our violations"
    else:
        return Saving(None, None, None, reason=f"no common violations: {spans}")
    reason = f"no level known exactly ({spans}): {bound} this much at each of our points, {how}"
    return Saving(
        float(np.median(got)),
        float(min(got)),
        float(max(got)),
        ours[0].violations,
        ours[-1].violations,
        len(got),
        reason,
        bound,
    )
