"""Online demand forecasting from past samples only: Holt's linear trend with an error band, and a bounded
history of recent demand for percentile floors.

Samples arrive at irregular times (one per decision), so the smoothing works per elapsed second. The
forecast at horizon h is `level + trend·h + k·σ`, never below zero; the trend only ever pushes a forecast up
(a falling trend does not pull capacity down ahead of the data: scale-down stays reactive).

Pure: no I/O, no clock (`now` is an argument).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from itertools import accumulate
from typing import NamedTuple

MIN_SPACING_S = 5.0  # history keeps at most one sample per this many seconds


class Holt(NamedTuple):
    level: float
    trend: float  # per second
    variance: float
    at: float


def update(state: Holt | None, value: float, now: float, alpha: float, beta: float) -> Holt:
    """The state after observing `value` at `now` (the first sample starts the level, with no trend)."""
    if state is None:
        return Holt(value, 0.0, 0.0, now)
    dt = now - state.at
    if dt <= 0:
        return state
    # Per-second smoothing compounded over the elapsed time, so irregular sampling weighs time, not samples.
    a = 1.0 - (1.0 - alpha) ** min(dt, 60.0)
    b = 1.0 - (1.0 - beta) ** min(dt, 60.0) if beta > 0 else 0.0
    predicted = state.level + state.trend * dt
    err = value - predicted
    level = predicted + a * err
    trend = state.trend + (b * (level - state.level - state.trend * dt) / dt if b else 0.0)
    variance = (1.0 - a) * state.variance + a * err * err
    return Holt(level, trend, variance, now)


def predict(state: Holt | None, horizon_s: float, sigmas: float) -> float:
    """Demand expected `horizon_s` ahead, plus `sigmas` standard errors; 0 before the first sample."""
    if state is None:
        return 0.0
    ahead = state.level + max(0.0, state.trend) * horizon_s
    return max(0.0, ahead + sigmas * math.sqrt(max(0.0, state.variance)))


def remember(
    history: tuple[tuple[float, float], ...], value: float, now: float, keep_s: float
) -> tuple[tuple[float, float], ...]:
    """`history` with (now, value) added — or merged into the last sample as its max when closer than
    MIN_SPACING_S — and samples older than `keep_s` dropped."""
    cut = now - keep_s
    start = 0
    while start < len(history) and history[start][0] <= cut:
        start += 1
    kept = history[start:] if start else history
    if kept and now - kept[-1][0] < MIN_SPACING_S:
        last_t, last_v = kept[-1]
        if value <= last_v:
            return kept
        return (*kept[:-1], (last_t, value))
    return (*kept, (now, value))


def percentile(history: tuple[tuple[float, float], ...], pct: float) -> float:
    """The demand level under which `pct` percent of the recent work arrived: the history's values weighted by
    themselves (a sample at twice the load carries twice the requests), so idle stretches do not dilute it and
    the level follows what requests experienced, not what the clock saw. 0 when empty or idle."""
    values = sorted(v for _, v in history if v > 0)
    total = sum(values)
    if total <= 0:
        return 0.0
    want = pct / 100.0 * total
    acc = 0.0
    for v in values:
        acc += v
        if acc >= want - 1e-12:
            return v
    return values[-1]


class Recent(NamedTuple):
    """Recent demand for the percentile floor: (time, value) samples in time order, one per MIN_SPACING_S
    slot, and their positive values kept sorted so that the percentile costs a binary search."""

    samples: tuple[tuple[float, float], ...] = ()
    ranked: tuple[float, ...] = ()


def _remove(ranked: list[float], v: float) -> None:
    if v > 0:
        i = bisect_left(ranked, v)
        if i < len(ranked) and ranked[i] == v:
            del ranked[i]


def add(recent: Recent, value: float, now: float, keep_s: float) -> Recent:
    """`recent` with `value` at `now` (merged into the last slot as its max when closer than MIN_SPACING_S)
    and the samples older than `keep_s` dropped; unchanged values keep the same `ranked` tuple."""
    samples = recent.samples
    cut = now - keep_s
    start = 0
    while start < len(samples) and samples[start][0] <= cut:
        start += 1
    merge = bool(samples) and start < len(samples) and now - samples[-1][0] < MIN_SPACING_S
    if merge and value <= samples[-1][1] and not start:
        return recent
    ranked = list(recent.ranked)
    for _, v in samples[:start]:
        _remove(ranked, v)
    kept = samples[start:]
    if merge:
        last_t, last_v = kept[-1]
        if value > last_v:
            _remove(ranked, last_v)
            if value > 0:
                insort(ranked, value)
            kept = (*kept[:-1], (last_t, value))
    else:
        if value > 0:
            insort(ranked, value)
        kept = (*kept, (now, value))
    return Recent(kept, tuple(ranked))


def level(recent: Recent, pct: float) -> float:
    """`percentile` of the recent samples, from the sorted values."""
    ranked = recent.ranked
    if not ranked:
        return 0.0
    acc = list(accumulate(ranked))
    i = bisect_left(acc, pct / 100.0 * acc[-1] - 1e-12)
    return ranked[min(i, len(ranked) - 1)]
