import random

import pytest

from autoscaler.api.cron import CronError, in_window, parse_cron
from autoscaler.core.forecast import Recent, add, level, percentile, predict, remember, update
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
