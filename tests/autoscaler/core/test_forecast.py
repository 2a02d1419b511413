import random

import pytest

from autoscaler.api.cron import CronError, in_window, parse_cron
from autoscaler.core.forecast import (
    TREND_BLOCKS,
    Recent,
    Slope,
    add,
    level,
    percentile,
    predict,
    remember,
    slope_update,
    theil_sen,
    update,
)
from tests.autoscaler.autoscaler_builders import NOW


def test_holt_follows_a_rising_trend_ahead_of_the_data() -> None:
    state = None
    for t in range(0, 120, 2):
        state = update(state, float(t), float(t), 0.3, 0.1)  # demand grows by 1 per second
    assert state is not None
    assert predict(state, 60.0, 0.0) > 118 + 30


def test_a_falling_trend_never_pulls_the_forecast_below_the_level() -> None:
    state = None
    for t in range(0, 120, 2):
        state = update(state, 200.0 - t, float(t), 0.3, 0.1)
    assert state is not None
    assert predict(state, 60.0, 0.0) == pytest.approx(state.level)


def test_the_forecast_band_adds_standard_errors() -> None:
    state = None
    for t, v in enumerate([10.0, 20.0] * 30):
        state = update(state, v, float(t), 0.3, 0.0)
    assert predict(state, 0.0, 2.0) > predict(state, 0.0, 0.0) + 5


def fed_slope(values: list[float], every_s: float, block_s: float) -> Slope:
    state = None
    for i, v in enumerate(values):
        state = slope_update(state, v, i * every_s, block_s)
    assert state is not None
    return state


def test_the_robust_trend_follows_a_ramp() -> None:
    ramp = [10.0 + 0.05 * t for t in range(0, 480, 2)]  # +0.05 replicas a second for 8 minutes
    state = fed_slope(ramp, 2.0, 60.0)
    assert len(state.means) == TREND_BLOCKS - 1  # the eighth block is still open
    assert state.trend == pytest.approx(0.05, rel=0.02)


def burst_then_quiet(every_s: float, burst_at_s: float, burst_s: float, until_s: float) -> list[float]:
    """10 replicas of work, with 30 more for `burst_s` seconds from `burst_at_s`."""
    out = []
    t = 0.0
    while t < until_s:
        out.append(40.0 if burst_at_s <= t < burst_at_s + burst_s else 10.0)
        t += every_s
    return out


@pytest.mark.parametrize("burst_at_s", [120.0, 400.0, 430.0], ids=["mid-window", "last block", "just closed"])
def test_a_burst_does_not_move_the_robust_trend_where_it_moves_holts(burst_at_s: float) -> None:
    values = burst_then_quiet(2.0, burst_at_s, 30.0, 500.0)
    robust = fed_slope(values, 2.0, 60.0)
    assert robust.trend == pytest.approx(0.0, abs=1e-9)
    holt = None
    peak = 0.0
    for i, v in enumerate(values):
        holt = update(holt, v, i * 2.0, 0.3, 0.1)
        peak = max(peak, predict(holt, 60.0, 0.0))
    assert peak > 40.0 + 60.0  # Holt's trend, 60 s ahead, asks for far more than the burst itself


def test_the_robust_trend_needs_half_the_window_and_starts_afresh_after_a_gap() -> None:
    assert theil_sen((1.0, 2.0, 3.0), 60.0) == 0.0  # 3 blocks: not yet
    assert theil_sen((1.0, 2.0, 3.0, 4.0), 60.0) == pytest.approx(1 / 60)
    state = fed_slope([float(t) for t in range(0, 480, 2)], 2.0, 60.0)
    assert state.trend > 0
    after = slope_update(state, 5.0, state.at + TREND_BLOCKS * 60.0 + 1, 60.0)
    assert (after.means, after.trend) == ((), 0.0)
    resized = slope_update(state, 5.0, state.at + 1, 120.0)  # the spec's window doubled
    assert (resized.block_s, resized.means, resized.trend) == (120.0, (), 0.0)


def test_the_robust_trend_weighs_time_not_samples() -> None:
    # one block of 60 s: 10 for 50 s (one sample), then 70 for 10 s (five samples)
    state = None
    for t, v in [(0.0, 10.0), *((50.0 + 2 * i, 70.0) for i in range(5)), (60.0, 0.0)]:
        state = slope_update(state, v, t, 60.0)
    assert state is not None
    assert state.means == (pytest.approx((10 * 50 + 70 * 10) / 60),)


def test_history_merges_close_samples_as_their_max_and_drops_old_ones() -> None:
    h: tuple[tuple[float, float], ...] = ()
    for t, v in [(0.0, 1.0), (2.0, 5.0), (4.0, 2.0), (10.0, 3.0), (400.0, 4.0)]:
        h = remember(h, v, t, 300.0)
    assert h == ((400.0, 4.0),)
    h = remember(remember(remember((), 1.0, 0.0, 300.0), 5.0, 2.0, 300.0), 3.0, 10.0, 300.0)
    assert h == ((0.0, 5.0), (10.0, 3.0))


@pytest.mark.parametrize(
    ("values", "pct", "want"),
    [
        ([1.0, 1.0, 1.0, 1.0, 10.0], 50, 10.0),  # most of the work arrived at 10
        ([1.0] * 99 + [10.0], 50, 1.0),
        ([0.0, 0.0, 2.0, 4.0], 100, 4.0),
        ([0.0, 0.0], 90, 0.0),
        ([], 90, 0.0),
    ],
    ids=["weighted by work", "mostly low", "max", "idle", "empty"],
)
def test_the_history_percentile_is_weighted_by_the_work_each_sample_carries(
    values: list[float], pct: float, want: float
) -> None:
    assert percentile(tuple((float(i), v) for i, v in enumerate(values)), pct) == want


@pytest.mark.parametrize(
    ("expr", "error"),
    [
        ("* * * *", "has 4 fields"),
        ("61 * * * *", "minute: '61' outside 0-59"),
        ("*/0 * * * *", "bad step"),
        ("a * * * *", "not a number"),
    ],
    ids=["fields", "range", "step", "word"],
)
def test_bad_cron_expressions_say_what_is_wrong(expr: str, error: str) -> None:
    with pytest.raises(CronError, match=error):
        parse_cron(expr)


@pytest.mark.parametrize(
    ("expr", "duration", "hour", "minute", "want"),
    [
        ("0 8 * * 1-5", 36000, 12, 0, True),  # Monday, 4 h into a 10 h window
        ("0 8 * * 1-5", 3600, 9, 0, False),  # the hour has passed
        ("0 8 * * 1-5", 3600, 8, 59, True),
        ("0 8 * * 0,6", 36000, 12, 0, False),  # weekends only
        ("*/15 * * * *", 300, 12, 4, True),
        ("*/15 * * * *", 300, 12, 6, False),
    ],
    ids=["inside", "after", "last minute", "other days", "steps inside", "steps after"],
)
def test_cron_windows_open_at_a_matching_minute_and_last_their_duration(
    expr: str, duration: int, hour: int, minute: int, want: bool
) -> None:
    assert in_window(parse_cron(expr), duration, NOW.replace(hour=hour, minute=minute)) is want


def test_the_incremental_recent_history_agrees_with_the_plain_one() -> None:
    rng = random.Random(1)
    recent, plain = Recent(), ()
    for i in range(2000):
        t, v = i * 1.7, rng.choice([0.0, 0.0, 1.0, 2.0, 5.0, 10.0, rng.random() * 20])
        recent, plain = add(recent, v, t, 600.0), remember(plain, v, t, 600.0)
        assert recent.samples == plain
        assert level(recent, 75) == pytest.approx(percentile(plain, 75))
