"""HPA v2 scaling behavior: stabilization windows, rate policies and `selectPolicy`, as pure functions.

Both the tidescale decision core and the HPA baseline use these, so the semantics are the same by
construction: kubernetes `pkg/controller/podautoscaler/horizontal.go` (`stabilizeRecommendationWithBehaviors`,
`convertDesiredReplicasWithBehaviorRate`, `calculateScaleUpLimitWithScalingRules`,
`calculateScaleDownLimitWithBehaviors`, `getReplicasChangePerPeriod`) and the legacy path without `behavior`
(`stabilizeRecommendation`, `convertDesiredReplicasWithRules`); ../shared/reference/autoscaling.md §1.7–§1.8.

The controller memory the HPA keeps (recommendations, scale events) is the immutable `History` here;
each call returns the new one. Times are epoch seconds.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from autoscaler.api.policy import Behavior, RatePolicy, ScalingRules

DEFAULT_DOWNSCALE_STABILIZATION_S = 300  # --horizontal-pod-autoscaler-downscale-stabilization
LEGACY_SCALE_UP_FACTOR = 2.0
LEGACY_SCALE_UP_MINIMUM = 4


@dataclass(frozen=True, slots=True)
class Policy:
    kind: str  # "Pods" | "Percent"
    value: int
    period_s: int


@dataclass(frozen=True, slots=True)
class Rules:
    """One direction's rules with the API defaults filled in (autoscaling/v2 `GenerateHPAScale*Rules`)."""

    window_s: int
    select: str  # "Max" | "Min" | "Disabled"
    policies: tuple[Policy, ...]
    tolerance: float


@dataclass(frozen=True, slots=True)
class ResolvedBehavior:
    up: Rules
    down: Rules
    longest_period_s: int = 0  # scale events older than this no longer count (filled in by `resolve`)


DEFAULT_UP = Rules(0, "Max", (Policy("Pods", 4, 15), Policy("Percent", 100, 15)), 0.1)
DEFAULT_DOWN = Rules(DEFAULT_DOWNSCALE_STABILIZATION_S, "Max", (Policy("Percent", 100, 15),), 0.1)


def _policies(raw: list[RatePolicy] | None, default: tuple[Policy, ...]) -> tuple[Policy, ...]:
    if raw is None:
        return default
    return tuple(Policy(p.type, p.value, p.period_seconds) for p in raw)


def _rules(raw: ScalingRules | None, default: Rules, default_window: int) -> Rules:
    if raw is None:
        return Rules(default_window, default.select, default.policies, default.tolerance)
    window = raw.stabilization_window_seconds
    return Rules(
        default_window if window is None else window,
        raw.select_policy,
        _policies(raw.policies, default.policies),
        raw.tolerance / 100.0,
    )


def resolve(
    behavior: Behavior | None, downscale_window_s: int = DEFAULT_DOWNSCALE_STABILIZATION_S
) -> ResolvedBehavior:
    """The behavior with API defaults: up 0 s window, max(+4 pods, +100 %) per 15 s; down 300 s and
    −100 % per 15 s."""
    b = behavior or Behavior()
    up = _rules(b.scale_up, DEFAULT_UP, 0)
    down = _rules(b.scale_down, DEFAULT_DOWN, downscale_window_s)
    return ResolvedBehavior(up, down, max((p.period_s for p in up.policies + down.policies), default=0))


Recs = tuple[tuple[tuple[float, int], ...], tuple[tuple[float, int], ...]]


class History(NamedTuple):
    """The controller memory behind one target: its past recommendations and (time, |change|) scale events
    per direction.

    The HPA keeps every (time, recommendation) and scans them each sync for the max over the scale-down
    window and the min over the scale-up window. Only the entries that can still be that max (`highs`:
    values strictly decreasing with time) or that min (`lows`: strictly increasing) are kept here — the
    same answers in a fraction of the work at thousands of decisions a second.
    """

    highs: tuple[tuple[float, int], ...] = ()
    lows: tuple[tuple[float, int], ...] = ()
    up_events: tuple[tuple[float, int], ...] = ()
    down_events: tuple[tuple[float, int], ...] = ()

    @property
    def recs(self) -> Recs:
        return self.highs, self.lows


@dataclass(frozen=True, slots=True)
class Normalized:
    desired: int
    stabilized: int
    rule: str  # DesiredWithinRange | ScaleUpLimit | ScaleDownLimit | TooManyReplicas | TooFewReplicas
    stabilization: str  # ScaleUpStabilized | ScaleDownStabilized | ReadyForNewScale
    history: History


def _after(entries: tuple[tuple[float, int], ...], cut: float) -> tuple[tuple[float, int], ...]:
    """The entries newer than `cut` (time-ordered, so a prefix is dropped)."""
    i = 0
    while i < len(entries) and entries[i][0] <= cut:
        i += 1
    return entries[i:] if i else entries


def stabilize(
    b: ResolvedBehavior, history: History, raw: int, current: int, now: float
) -> tuple[int, str, Recs]:
    """Stabilized recommendation, its reason, and the recommendations kept with the raw one added.

    `upRec` = min of the recommendations newer than now − upWindow and `raw`; `downRec` = max of those newer
    than now − downWindow and `raw`; the result is `current` raised to upRec, then lowered to downRec."""
    highs = _after(history.highs, now - b.down.window_s)
    lows = _after(history.lows, now - b.up.window_s)
    down_rec = highs[0][1] if highs and highs[0][1] > raw else raw
    up_rec = lows[0][1] if lows and lows[0][1] < raw else raw
    out = current
    out = max(out, up_rec)
    out = min(out, down_rec)
    # add raw: older entries it dominates can never be the max (or min) again
    k = len(highs)
    while k and highs[k - 1][1] <= raw:
        k -= 1
    j = len(lows)
    while j and lows[j - 1][1] >= raw:
        j -= 1
    kept = ((*highs[:k], (now, raw)), (*lows[:j], (now, raw)) if b.up.window_s else ())
    reason = "ScaleUpStabilized" if raw >= current else "ScaleDownStabilized"
    if out == raw:
        reason = "ReadyForNewScale"
    return out, reason, kept


def _changed_in(period_s: int, events: tuple[tuple[float, int], ...], now: float) -> int:
    if not events:
        return 0
    cut = now - period_s
    total = 0
    for at, change in events:
        if at > cut:
            total += change
    return total


def _period_start(current: int, period_s: int, history: History, now: float) -> int:
    """The replica count at the start of a rate policy's period (HPA: current minus the net change in it)."""
    return (
        current
        - _changed_in(period_s, history.up_events, now)
        + _changed_in(period_s, history.down_events, now)
    )


def scale_up_limit(rules: Rules, current: int, history: History, now: float) -> int:
    if rules.select == "Disabled":
        return current
    pick = min if rules.select == "Min" else max
    result: int | None = None
    for p in rules.policies:
        start = _period_start(current, p.period_s, history, now)
        proposed = start + p.value if p.kind == "Pods" else math.ceil(start * (1 + p.value / 100.0))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def scale_down_limit(rules: Rules, current: int, history: History, now: float) -> int:
    if rules.select == "Disabled":
        return current
    pick = max if rules.select == "Min" else min
    result: int | None = None
    for p in rules.policies:
        start = _period_start(current, p.period_s, history, now)
        proposed = start - p.value if p.kind == "Pods" else int(start * (1 - p.value / 100.0))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def rate_limit(
    b: ResolvedBehavior, history: History, desired: int, current: int, min_r: int, max_r: int, now: float
) -> tuple[int, str]:
    """`convertDesiredReplicasWithBehaviorRate`: the desired count within the rate policies and bounds."""
    if desired > current:
        limit = max(scale_up_limit(b.up, current, history, now), current)
        if max_r > limit:
            allowed, reason = limit, "ScaleUpLimit"
        else:
            allowed, reason = max_r, "TooManyReplicas"
        if desired > allowed:
            return allowed, reason
    elif desired < current:
        limit = min(scale_down_limit(b.down, current, history, now), current)
        if min_r < limit:
            allowed, reason = limit, "ScaleDownLimit"
        else:
            allowed, reason = min_r, "TooFewReplicas"
        if desired < allowed:
            return allowed, reason
    return desired, "DesiredWithinRange"


def describe(rules: Rules, up: bool) -> str:
    """A direction's rate policies in words: "+4 pods or +100 % per 15 s, the larger"."""
    if rules.select == "Disabled" or not rules.policies:
        return "disabled"
    sign = "+" if up else "−"
    parts = [
        f"{sign}{p.value} {'pod' if p.value == 1 else 'pods'} per {p.period_s} s"
        if p.kind == "Pods"
        else f"{sign}{p.value} % per {p.period_s} s"
        for p in rules.policies
    ]
    if len(parts) == 1:
        return parts[0]
    # a larger step up, or a larger step down (a lower count), is "Max"
    which = "the larger step" if rules.select == "Max" else "the smaller step"
    return f"{' or '.join(parts)}, {which}"


def record(
    b: ResolvedBehavior,
    history: History,
    recs: Recs,
    current: int,
    desired: int,
    now: float,
) -> History:
    """The history after a sync: recommendations kept, a scale event stored if the replicas changed, and
    events older than the longest policy period dropped (`markScaleEventsOutdated`)."""
    cut = now - b.longest_period_s
    up = history.up_events
    if up and up[0][0] <= cut:
        up = tuple(e for e in up if e[0] > cut)
    down = history.down_events
    if down and down[0][0] <= cut:
        down = tuple(e for e in down if e[0] > cut)
    if desired > current:
        up = (*up, (now, desired - current))
    elif desired < current:
        down = (*down, (now, current - desired))
    return History(recs[0], recs[1], up, down)


def normalize(
    b: ResolvedBehavior, history: History, raw: int, current: int, min_r: int, max_r: int, now: float
) -> Normalized:
    """`normalizeDesiredReplicasWithBehaviors`: stabilize, then rate-limit; the history for the next sync."""
    stabilized, why, recs = stabilize(b, history, raw, current, now)
    desired, rule = rate_limit(b, history, stabilized, current, min_r, max_r, now)
    return Normalized(desired, stabilized, rule, why, record(b, history, recs, current, desired, now))


def normalize_legacy(
    history: History,
    raw: int,
    current: int,
    min_r: int,
    max_r: int,
    now: float,
    window_s: int = DEFAULT_DOWNSCALE_STABILIZATION_S,
) -> Normalized:
    """The path without `behavior`: max over the last 5 min of recommendations, then
    `[min, min(max, max(2 × current, 4))]` per sync."""
    cut = now - window_s
    # a recommendation exactly `window_s` old still counts on this path (`Before(cutoff)` drops it)
    highs = history.highs
    i = 0
    while i < len(highs) and highs[i][0] < cut:
        i += 1
    highs = highs[i:]
    best = highs[0][1] if highs and highs[0][1] > raw else raw
    k = len(highs)
    while k and highs[k - 1][1] <= raw:
        k -= 1
    kept = (*highs[:k], (now, raw))
    limit = max(int(LEGACY_SCALE_UP_FACTOR * current), LEGACY_SCALE_UP_MINIMUM)
    if max_r > limit:
        upper, up_reason = limit, "ScaleUpLimit"
    else:
        upper, up_reason = max_r, "TooManyReplicas"
    if best < min_r:
        desired, rule = min_r, "TooFewReplicas"
    elif best > upper:
        desired, rule = upper, up_reason
    else:
        desired, rule = best, "DesiredWithinRange"
    why = "ReadyForNewScale" if best == raw else "ScaleDownStabilized"
    return Normalized(desired, best, rule, why, History(kept, (), history.up_events, history.down_events))
