"""The arrivals' burstiness learnt online: the index of dispersion of request counts (variance ÷ mean; 1 for
Poisson arrivals) at the time scale of a short rate window, from what each reading shows.

A reading gives the request rate over a short window inside a long one. The short window's count less what
the long window's rate expects for it is what varies faster than the long window: bursts, not the slow swing
of the load (which at high rates would otherwise swamp the variance). For Poisson arrivals that difference
has variance λτ·(1 − τ/T) for a short window τ inside a long one T, so the index is its mean square over
(1 − τ/T) times the mean count. Readings come at irregular times and their windows overlap; each is a sample
of the windows' counts, so exponentially time-weighted moments over the last `memory_s` seconds estimate
them. The SLO trigger uses the index as its ca² (`arrivalVariabilityWindowSeconds`).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from typing import NamedTuple

# the share of the memory that must have been observed before the measured index replaces the stated one
SEEN = 0.5


class Dispersion(NamedTuple):
    """Time-weighted moments of what the readings showed: the short window's count (`mean`) and the
    normalised square of its difference from the long window's expectation, both not yet divided by `weight`
    (the share of the memory observed so far, which corrects the start), and the last sample's time."""

    mean: float
    square: float
    weight: float
    at: float


def observe(
    state: Dispersion | None,
    short_rate: float,
    long_rate: float,
    short_s: float,
    long_s: float,
    at: float,
    memory_s: float,
) -> Dispersion:
    """`state` with a reading of the rates over a short window of `short_s` seconds inside a long one of
    `long_s` taken at `at` (a sample at or before the last one, or a broken one, changes nothing)."""
    values = (short_rate, long_rate, short_s, long_s)
    share = short_s / long_s if long_s > 0 else 1.0
    if not all(math.isfinite(v) and v >= 0 for v in values) or short_s <= 0 or share >= 1.0:
        return state if state is not None else Dispersion(0.0, 0.0, 0.0, at)
    if state is None:
        state = Dispersion(0.0, 0.0, 0.0, at)
        dt = min(memory_s, 1.0)  # the first sample counts as one second's worth
    else:
        dt = at - state.at
        if dt <= 0:
            return state
    count = short_rate * short_s
    burst = count - long_rate * short_s
    keep = math.exp(-dt / memory_s)
    new = 1.0 - keep
    return Dispersion(
        keep * state.mean + new * count,
        keep * state.square + new * burst * burst / (1.0 - share),
        keep * state.weight + new,
        at,
    )


def index(state: Dispersion | None) -> float | None:
    """The index of dispersion the moments show; None until `SEEN` of the memory has been observed, or while
    nothing arrived."""
    if state is None or state.weight < SEEN:
        return None
    count = state.mean / state.weight
    if count <= 1e-9:
        return None
    return state.square / state.weight / count
