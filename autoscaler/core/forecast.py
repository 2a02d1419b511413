"""Online demand forecasting from past samples only: Holt's linear trend with an error band, a trend that
bursts do not move (Theil–Sen over the means of a window's blocks), a seasonal ensemble that learns the day's
and the week's profile of demand, and a bounded history of recent demand for percentile floors.

Samples arrive at irregular times (one per decision), so the smoothing works per elapsed second. Holt's
forecast at horizon h is `level + trend·h + k·σ`, never below zero; the trend only ever pushes a forecast up
(a falling trend does not pull capacity down ahead of the data: scale-down stays reactive). The seasonal
forecast (`observe`, `seasonal_predict`; below) works on 5-minute buckets of the clock; its state is bounded
(a profile of 288 daily and 2016 weekly slots at most) and packs into a few KB for the policy's status
(`pack`, `unpack`).

Pure: no I/O, no clock (`now` is an argument).
"""

from __future__ import annotations

import base64
import math
import struct
from bisect import bisect_left, insort
from itertools import accumulate
from typing import Any, NamedTuple

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


def predict(state: Holt | None, horizon_s: float, sigmas: float, trend: float | None = None) -> float:
    """Demand expected `horizon_s` ahead, plus `sigmas` standard errors; 0 before the first sample. `trend`
    (per second), when given, replaces Holt's own (a `Slope`'s)."""
    if state is None:
        return 0.0
    ahead = state.level + max(0.0, state.trend if trend is None else trend) * horizon_s
    return max(0.0, ahead + sigmas * math.sqrt(max(0.0, state.variance)))


# --- a trend that bursts do not move ------------------------------------------------------------------------
#
# Holt's trend follows every rise of its input: fed a one-minute rate, it reads each burst that enters the
# window as a rise that lasts, and extrapolated one model start ahead it asks for the burst again after it is
# over. A ramp (a daily cycle's morning) differs from a burst in lasting: its rise shows between any two
# minutes of the window, a burst's only between the minutes around it. So the robust trend is Theil–Sen's:
# the median of the slopes between every pair of the mean demands of the window's TREND_BLOCKS blocks. A burst
# in one block moves the slopes of 7 pairs of 28 (a quarter), and not the median; a ramp moves them all.

TREND_BLOCKS = 8  # blocks in the window: 28 pairs
MIN_TREND_BLOCKS = 4  # closed blocks before a trend is given (6 pairs)


class Slope(NamedTuple):
    """The robust trend's state: the blocks' length, the block being filled (its start and ∫ demand dt so
    far), the last sample (held until the next), the means of the last TREND_BLOCKS closed blocks (oldest
    first) and the trend through them (per second)."""

    block_s: float
    start: float
    at: float
    value: float
    area: float = 0.0
    means: tuple[float, ...] = ()
    trend: float = 0.0


def theil_sen(means: tuple[float, ...], spacing_s: float) -> float:
    """The median of the slopes (per second) between every pair of `means`, `spacing_s` apart in time; 0 with
    fewer than MIN_TREND_BLOCKS."""
    n = len(means)
    if n < MIN_TREND_BLOCKS:
        return 0.0
    slopes = sorted((means[j] - means[i]) / ((j - i) * spacing_s) for i in range(n) for j in range(i + 1, n))
    mid = len(slopes) // 2
    return slopes[mid] if len(slopes) % 2 else (slopes[mid - 1] + slopes[mid]) / 2.0


def slope_update(state: Slope | None, value: float, now: float, block_s: float) -> Slope:
    """The state after observing `value` at `now`: the last sample's value holds until now (time-weighted),
    blocks that end by now close, and the trend is recomputed when one does. A gap longer than the window
    starts afresh (what came before it says nothing about the trend now), and so do blocks of another length
    (the spec changed its window)."""
    if state is None or now - state.at > TREND_BLOCKS * block_s or state.block_s != block_s:
        return Slope(block_s, now, now, value)
    if now <= state.at:
        return state
    start, at, area, means, v = state.start, state.at, state.area, state.means, state.value
    closed = False
    while now >= start + block_s:
        end = start + block_s
        means = (*means, (area + v * (end - at)) / block_s)[-TREND_BLOCKS:]
        start = at = end
        area = 0.0
        closed = True
    area += v * (now - at)
    trend = theil_sen(means, block_s) if closed else state.trend
    return Slope(block_s, start, now, value, area, means, trend)


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


# --- seasonal forecasting ---------------------------------------------------------------------------------
#
# Demand is averaged per 5-minute bucket of the clock (time-weighted over the samples of the bucket). Each
# closed bucket teaches a profile per season — the day (288 slots) and the week (2016 slots), each slot an
# exponentially weighted mean of that slot's past buckets. The forecast for a time ahead is an ensemble of
# three components:
#
# - level: the recent level — the mean demand of the last BUCKET_S seconds, from per-minute sums —, as it
#   is;
# - daily / weekly: the profile at the slot ahead (a window of neighbouring slots, for noise), scaled by how
#   the recent buckets compare with the profile at their own slots (a growing load keeps its shape);
#
# weighted by the inverse square of each component's recent error (each component's forecast for a bucket is
# made when the bucket before closes and scored when the bucket closes). A component forecasts only where it
# has seen its slots, and counts only once it has been scored on MIN_SCORED buckets: with less than one season
# of data the forecast is the level (a one-hour trace has no daily cycle to learn). The last actual ÷
# forecast ratios give a quantile for headroom.

BUCKET_S = 300
DAY_SLOTS = 86400 // BUCKET_S
WEEK_SLOTS = 7 * DAY_SLOTS
UNSEEN = -1.0  # a slot, level or component forecast without data
MAX_HOLD_S = 120.0  # a sample covers at most this much of the time since the one before (a gap is unknown)
MIN_COVER_S = BUCKET_S / 2  # a bucket teaches only when samples cover this much of it
SLOT_WINDOW = 1  # slots either side of the one ahead averaged into a profile's forecast
MIN_SCORED = 12  # buckets a seasonal component is scored on before it counts
PROFILE_RATE = (0.3, 0.5)  # per season (daily, weekly): a slot's weight on its newest bucket
SCALE_RATE = 1.0 / 12  # per bucket: the recent-versus-profile scale looks back about an hour
ERROR_RATE = 1.0 / DAY_SLOTS  # per bucket: the components' errors look back about a day (a rush a day counts)
SCALE_PRIOR = 0.25  # of the profile's mean: pseudo-demand added to both sides of the scale
SCALE_BOUND = 4.0
LEVEL_MINUTES = BUCKET_S // 60 + 1  # the level's window, and the minute it starts in
RATIOS_KEPT = 36  # actual ÷ forecast ratios kept for the headroom quantile (three hours)

SEASONALITIES = ("none", "daily", "weekly", "auto")


class Seasonal(NamedTuple):
    """The seasonal forecaster's state: the bucket being filled, the recent level, a profile per season kept
    (`()` when not), and per component (level, daily, weekly) its recent error, the buckets it was scored on
    and its forecast for the bucket being filled. Bounded: at most DAY_SLOTS + WEEK_SLOTS (2304) profile
    slots and as many windowed means of them, 2 × RATIOS_KEPT ratios and 24 numbers; `pack` stores the
    profiles only, in half precision."""

    bucket: int = -1  # t // BUCKET_S of the bucket being filled; -1 before the first sample
    total: float = 0.0  # ∫ demand dt over the bucket so far
    cover: float = 0.0  # seconds of the bucket the samples covered
    at: float = 0.0  # time of the last sample
    minute: int = -1  # t // 60 of the newest of `minutes`
    # per minute of the last LEVEL_MINUTES, oldest first: (∫ demand dt, seconds covered), for the level
    minutes: tuple[tuple[float, float], ...] = ()
    daily: tuple[float, ...] = ()
    weekly: tuple[float, ...] = ()
    # per season (daily, weekly): weighted means of recent buckets and of the profile at their slots
    recent: tuple[float, float] = (UNSEEN, UNSEEN)
    usual: tuple[float, float] = (UNSEEN, UNSEEN)
    since: tuple[int, int] = (-1, -1)  # per season, the first bucket it was taught
    # per season, the sum of its seen slots and how many there are (the profile's mean, for the scale)
    sums: tuple[float, float] = (0.0, 0.0)
    seen: tuple[int, int] = (0, 0)
    error: tuple[float, float, float] = (UNSEEN, UNSEEN, UNSEEN)
    scored: tuple[int, int, int] = (0, 0, 0)
    ahead: tuple[float, float, float] = (UNSEEN, UNSEEN, UNSEEN)
    ratios: tuple[float, ...] = ()  # actual ÷ forecast, oldest first
    ranked: tuple[float, ...] = ()  # the same, sorted: a quantile is one lookup
    # per season, each slot's forecast: the mean of the seen slots within SLOT_WINDOW of it (kept beside the
    # profile so that a forecast is one lookup; recomputed around a slot when it changes)
    daily_near: tuple[float, ...] = ()
    weekly_near: tuple[float, ...] = ()


def seasonal_start(seasonality: str) -> Seasonal:
    """An empty state keeping the profiles `seasonality` asks for ("daily", "weekly" or "auto": both)."""
    if seasonality not in SEASONALITIES[1:]:
        raise ValueError(f"no seasonality {seasonality!r} (known: {', '.join(SEASONALITIES[1:])})")
    daily = (UNSEEN,) * DAY_SLOTS if seasonality in ("daily", "auto") else ()
    weekly = (UNSEEN,) * WEEK_SLOTS if seasonality in ("weekly", "auto") else ()
    return Seasonal(daily=daily, weekly=weekly, daily_near=daily, weekly_near=weekly)


def seasonal_fits(s: Seasonal, seasonality: str) -> bool:
    """Whether `s` keeps the profiles `seasonality` asks for (a policy's seasons can change under a state)."""
    return (len(s.daily) == DAY_SLOTS) == (seasonality != "weekly") and (len(s.weekly) == WEEK_SLOTS) == (
        seasonality != "daily"
    )


def _near(profile: tuple[float, ...], slot: int) -> float:
    """The mean of the seen slots within SLOT_WINDOW of `slot`; UNSEEN when none is."""
    n = len(profile)
    total = 0.0
    seen = 0
    for k in range(slot - SLOT_WINDOW, slot + SLOT_WINDOW + 1):
        v = profile[k % n]
        if v >= 0.0:
            total += v
            seen += 1
    return total / seen if seen else UNSEEN


def _scale(s: Seasonal, i: int) -> float:
    """How the recent buckets compare with season `i`'s profile at their slots, shrunk towards 1 by a quarter
    of the profile's mean (quiet hours say little about the scale) and kept within [1/SCALE_BOUND,
    SCALE_BOUND]."""
    recent, usual = s.recent[i], s.usual[i]
    if recent < 0.0 or not s.seen[i]:
        return 1.0
    prior = SCALE_PRIOR * s.sums[i] / s.seen[i]
    if usual + prior <= 0.0:
        return 1.0
    r = (recent + prior) / (usual + prior)
    return min(SCALE_BOUND, max(1.0 / SCALE_BOUND, r))


def recent_level(s: Seasonal) -> float:
    """Mean demand over the last BUCKET_S seconds the samples covered (the oldest minute's share at its
    mean); UNSEEN before the first sample covered anything."""
    total = cover = 0.0
    for part, covered in reversed(s.minutes):
        if cover + covered <= BUCKET_S:
            total += part
            cover += covered
        else:
            total += part * (BUCKET_S - cover) / covered
            cover = BUCKET_S
            break
    return total / cover if cover > 0.0 else UNSEEN


def _minutes(s: Seasonal, value: float, dt: float, now: float) -> tuple[int, tuple[tuple[float, float], ...]]:
    """The per-minute sums with `value` over the `dt` seconds before `now` added to `now`'s minute."""
    minute = int(now // 60)
    ring = s.minutes
    if minute == s.minute:
        part, covered = ring[-1]
        return minute, (*ring[:-1], (part + value * dt, covered + dt))
    empty = min(LEVEL_MINUTES, minute - s.minute - 1) if s.minute >= 0 else 0
    ring = (*ring, *((0.0, 0.0),) * empty, (value * dt, dt))
    return minute, ring[-LEVEL_MINUTES:]


def _season(s: Seasonal, i: int, near: tuple[float, ...], bucket: int) -> float:
    """Season `i`'s forecast of `bucket`'s mean demand: its windowed profile there, scaled; UNSEEN without."""
    since, n = s.since[i], len(near)
    # a season forecasts once it has seen one whole season: before, its slots are the last minutes'
    if since < 0 or bucket - since < n:
        return UNSEEN
    p = near[bucket % n]
    return p * _scale(s, i) if p >= 0.0 else UNSEEN


def _components(s: Seasonal, bucket: int) -> tuple[float, float, float]:
    """Each component's forecast of `bucket`'s mean demand (UNSEEN where it has none)."""
    return recent_level(s), _season(s, 0, s.daily_near, bucket), _season(s, 1, s.weekly_near, bucket)


def _blend(s: Seasonal, forecasts: tuple[float, float, float]) -> float:
    """The components' forecasts weighted by the inverse square of their recent errors; UNSEEN when none has
    one. A seasonal component counts once it was scored on MIN_SCORED buckets."""
    total = weight = 0.0
    error, scored = s.error, s.scored
    for i in range(3):
        f = forecasts[i]
        if f < 0.0 or (i and scored[i] < MIN_SCORED):
            continue
        e = error[i]
        w = 1.0 / (e * e + 1e-12) if e >= 0.0 else 1.0
        total += w * f
        weight += w
    return total / weight if weight else UNSEEN


def _close(s: Seasonal, mean: float) -> Seasonal:
    """`s` taught the closed bucket `s.bucket` with mean demand `mean`."""
    b = s.bucket
    # 1. score the forecasts made for this bucket when the one before closed
    blended = _blend(s, s.ahead)
    error = list(s.error)
    scored = list(s.scored)
    for i, f in enumerate(s.ahead):
        if f >= 0.0:
            # a running mean until there are 1/ERROR_RATE scores, exponentially weighted after: the first
            # buckets scored weigh no more than later ones
            n = scored[i] = min(scored[i] + 1, 1 << 20)
            rate = 1.0 / n if n * ERROR_RATE < 1.0 else ERROR_RATE
            miss = abs(mean - f)
            error[i] = miss if error[i] < 0.0 else error[i] + rate * (miss - error[i])
    ratios, ranked = s.ratios, s.ranked
    if blended > 1e-9:
        ratios = (*ratios[-(RATIOS_KEPT - 1) :], mean / blended)
        ranked = tuple(sorted(ratios))
    # 2. the profiles, and how the recent buckets compare with the profiles
    recent = list(s.recent)
    usual = list(s.usual)
    since = list(s.since)
    sums = list(s.sums)
    seen = list(s.seen)
    profiles: list[tuple[float, ...]] = []
    nears: list[tuple[float, ...]] = []
    for i, (profile, near) in enumerate(((s.daily, s.daily_near), (s.weekly, s.weekly_near))):
        if not profile:
            profiles.append(profile)
            nears.append(near)
            continue
        if since[i] < 0:
            since[i] = b
        n = len(profile)
        slot = b % n
        p = near[slot]
        if p >= 0.0:
            if recent[i] < 0.0:
                recent[i], usual[i] = mean, p
            else:
                recent[i] += SCALE_RATE * (mean - recent[i])
                usual[i] += SCALE_RATE * (p - usual[i])
        old = profile[slot]
        if old < 0.0:
            new = mean
            seen[i] += 1
            sums[i] += new
        else:
            new = old + PROFILE_RATE[i] * (mean - old)
            sums[i] += new - old
        taught_slot = (*profile[:slot], new, *profile[slot + 1 :])
        profiles.append(taught_slot)
        changed = list(near)
        for k in range(slot - SLOT_WINDOW, slot + SLOT_WINDOW + 1):
            changed[k % n] = _near(taught_slot, k % n)
        nears.append(tuple(changed))
    taught = s._replace(
        daily=profiles[0],
        weekly=profiles[1],
        recent=(recent[0], recent[1]),
        usual=(usual[0], usual[1]),
        since=(since[0], since[1]),
        sums=(sums[0], sums[1]),
        seen=(seen[0], seen[1]),
        error=(error[0], error[1], error[2]),
        scored=(scored[0], scored[1], scored[2]),
        ratios=ratios,
        ranked=ranked,
        daily_near=nears[0],
        weekly_near=nears[1],
    )
    # 3. the components' forecasts for the next bucket, to score when it closes
    return taught._replace(ahead=_components(taught, b + 1))


def observe(s: Seasonal, value: float, now: float) -> Seasonal:
    """`s` after a sample of demand `value` at `now`, taken to stand for the time since the sample before (at
    most MAX_HOLD_S of it: the value is a rate over a trailing window). A bucket that ends teaches the
    profiles and the level when the samples covered at least MIN_COVER_S of it."""
    bucket = int(now // BUCKET_S)
    if s.bucket < 0:
        return s._replace(bucket=bucket, total=0.0, cover=0.0, at=now)
    if now <= s.at:
        return s
    start = now - MAX_HOLD_S if now - s.at > MAX_HOLD_S else s.at
    minute, ring = _minutes(s, value, now - start, now)
    if bucket == s.bucket:
        # the hot path (every decision): one more piece of the bucket being filled. The tuple is built
        # directly: `_replace` walks all the fields and costs four times as much
        dt = now - start
        return tuple.__new__(
            Seasonal, (bucket, s.total + value * dt, s.cover + dt, now, minute, ring, *s[6:])
        )
    s = s._replace(minute=minute, minutes=ring)
    edge = (s.bucket + 1) * BUCKET_S
    dt = edge - start if edge > start else 0.0
    total, cover = s.total + value * dt, s.cover + dt
    closed = cover >= MIN_COVER_S
    if closed:
        s = _close(s._replace(total=total, cover=cover), total / cover)
    begin = bucket * BUCKET_S
    dt = now - begin if start < begin else now - start
    s = s._replace(bucket=bucket, total=value * dt, cover=dt, at=now)
    if closed and bucket == s.bucket + 1:
        return s
    # a bucket the samples hardly covered teaches nothing, nor do buckets passed without samples: the
    # forecasts to score are made afresh for the new bucket
    return s._replace(ahead=_components(s, bucket))


def seasonal_predict(s: Seasonal, now: float, horizon_s: float, quantile: float | None = None) -> float:
    """Mean demand expected over the 5-minute bucket `horizon_s` after `now`: the components blended by their
    recent errors, times the `quantile` percent of recent actual ÷ forecast ratios when given (never below the
    point forecast). 0 before the first sample."""
    point = _blend(s, _components(s, int((now + horizon_s) // BUCKET_S)))
    if point < 0.0:
        return 0.0
    ranked = s.ranked
    if quantile is not None and ranked:
        q = ranked[min(len(ranked) - 1, max(0, math.ceil(quantile / 100.0 * len(ranked)) - 1))]
        if q > 1.0:
            point *= q
    return point


_HALF_MAX = 65504.0  # the largest half-precision float


def _pack_profile(profile: tuple[float, ...]) -> dict[str, Any]:
    """A profile as its largest slot and each slot over it in half precision (two bytes a slot, base64): 5 KB
    for a week instead of 30 as JSON numbers; unseen slots stay -1."""
    top = max(profile, default=0.0)
    top = top if top > 0.0 else 1.0
    values = [v / top if v >= 0.0 else UNSEEN for v in profile]
    return {"max": top, "slots": base64.b64encode(struct.pack(f"<{len(values)}e", *values)).decode("ascii")}


def _unpack_profile(raw: Any, slots: int) -> tuple[float, ...]:
    data = base64.b64decode(raw["slots"], validate=True)
    if len(data) != 2 * slots:
        raise ValueError(f"a profile of {len(data) // 2} slots, not {slots}")
    top = float(raw["max"])
    return tuple(v * top if v >= 0.0 else UNSEEN for v in struct.unpack(f"<{slots}e", data))


def pack(s: Seasonal) -> dict[str, Any]:
    """`s` as a JSON-ready mapping, for the policy's status (`autoscaler.controller.kube.persisted`)."""
    out: dict[str, Any] = {
        "bucket": s.bucket,
        "total": s.total,
        "cover": s.cover,
        "at": s.at,
        "minute": s.minute,
        "minutes": [[round(a, 6), round(b, 3)] for a, b in s.minutes],
        "recent": list(s.recent),
        "usual": list(s.usual),
        "since": list(s.since),
        "error": list(s.error),
        "scored": list(s.scored),
        "ahead": list(s.ahead),
        "ratios": [round(r, 4) for r in s.ratios],
    }
    if s.daily:
        out["daily"] = _pack_profile(s.daily)
    if s.weekly:
        out["weekly"] = _pack_profile(s.weekly)
    return out


def unpack(raw: Any) -> Seasonal:
    """The state `pack` stored; TypeError, ValueError or KeyError when it is not one. The profiles' sums are
    recomputed from the slots."""
    daily = _unpack_profile(raw["daily"], DAY_SLOTS) if "daily" in raw else ()
    weekly = _unpack_profile(raw["weekly"], WEEK_SLOTS) if "weekly" in raw else ()

    def pair(key: str, kind: type[float] | type[int]) -> tuple[Any, Any]:
        a, b = raw[key]
        return kind(a), kind(b)

    def triple(key: str, kind: type[float] | type[int]) -> tuple[Any, Any, Any]:
        a, b, c = raw[key]
        return kind(a), kind(b), kind(c)

    seen = [v for v in daily if v >= 0.0], [v for v in weekly if v >= 0.0]
    ratios = tuple(float(r) for r in raw["ratios"][-RATIOS_KEPT:])
    return Seasonal(
        bucket=int(raw["bucket"]),
        total=float(raw["total"]),
        cover=float(raw["cover"]),
        at=float(raw["at"]),
        minute=int(raw["minute"]),
        minutes=tuple((float(a), float(b)) for a, b in raw["minutes"][-LEVEL_MINUTES:]),
        daily=daily,
        weekly=weekly,
        recent=pair("recent", float),
        usual=pair("usual", float),
        since=pair("since", int),
        sums=(sum(seen[0]), sum(seen[1])),
        seen=(len(seen[0]), len(seen[1])),
        error=triple("error", float),
        scored=triple("scored", int),
        ahead=triple("ahead", float),
        ratios=ratios,
        ranked=tuple(sorted(ratios)),
        daily_near=tuple(_near(daily, k) for k in range(len(daily))),
        weekly_near=tuple(_near(weekly, k) for k in range(len(weekly))),
    )
