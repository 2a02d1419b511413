"""The seasonal forecast (`autoscaler.core.forecast`): it learns a daily cycle and beats the recent level on
it, falls back to the level without one, stays bounded, survives the policy's status, and drives the
decision's replica and node floors one lead time ahead."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from autoscaler.api.policy import parse_policy_file
from autoscaler.controller.kube import persisted
from autoscaler.core import forecast as fc
from autoscaler.core.decide import NodeView, PolicyState, pool_nodes
from autoscaler.core.nodepool import replica_pods, template_node
from autoscaler.replay.backtest import run_backtest
from autoscaler.replay.forecast_error import for_policy, forecast_error
from autoscaler.replay.trace import synthetic
from jobs.placement import Binpack
from jobs.snapshot import ClusterState
from tests.autoscaler.autoscaler_builders import (
    NOW,
    T0,
    TRIGGERS,
    a_policy,
    a_pool,
    decide,
    rates,
    seen,
    slo_trigger,
)

DAY = 86400.0
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "policies" / "llm-inference.yaml"


def daily_arrivals(days: int, seed: int = 3) -> np.ndarray:
    """Poisson arrivals (epoch seconds) whose rate swings each day between 0.05 and 1.95 requests a second."""
    rng = np.random.default_rng(seed)
    edges = np.arange(T0, T0 + days * DAY, 60.0)
    rate = 1.0 - 0.95 * np.cos(2 * math.pi * (edges - T0) / DAY)
    parts = [
        np.sort(rng.uniform(a, a + 60.0, rng.poisson(r * 60.0))) for a, r in zip(edges, rate, strict=True)
    ]
    return np.concatenate(parts)


def fed(values: list[float], start: float, step: float = 60.0, seasonality: str = "auto") -> fc.Seasonal:
    s = fc.seasonal_start(seasonality)
    for k, v in enumerate(values):
        s = fc.observe(s, v, start + k * step)
    return s


def test_on_a_daily_cycle_the_seasonal_forecast_beats_the_recent_level_one_model_start_ahead() -> None:
    err = forecast_error(daily_arrivals(4), 60.0, "daily")
    assert err.busy_buckets > 1000
    assert err.forecaster.mape < 0.9 * err.level.mape, err.render()
    assert err.forecaster.mape < err.holt.mape
    assert err.forecaster.wape < err.level.wape
    # Holt's trend chases the noise of the one-minute rate; the robust trend's median slope does not
    assert err.robust.mape < 0.6 * err.holt.mape, err.render()
    far = forecast_error(daily_arrivals(4), 600.0, "daily")
    assert far.robust.mape < 0.2 * far.holt.mape, far.render()


def test_without_a_whole_season_the_forecast_is_the_level() -> None:
    # one flat hour with noise: no profile has seen a day, so only the level speaks, at any horizon
    values = [10.0 + (k % 5) for k in range(60)]
    s = fed(values, T0)
    now = T0 + 59 * 60.0
    assert s.ahead[1:] == (fc.UNSEEN, fc.UNSEEN)
    for horizon in (0.0, 60.0, 240.0, 3600.0):
        assert fc.seasonal_predict(s, now, horizon) == pytest.approx(fc.recent_level(s))
    assert 10.0 < fc.recent_level(s) < 14.0


def test_after_a_gap_the_level_is_what_came_after_it_and_the_idle_buckets_teach_nothing() -> None:
    s = fed([10.0] * 30, T0)  # half an hour at 10
    taught = s.daily
    s = fc.observe(s, 2.0, T0 + 30 * 60.0 + 3750.0)  # the controller was away for an hour
    assert fc.recent_level(s) == pytest.approx(2.0)
    assert sum(v >= 0 for v in s.daily) == sum(v >= 0 for v in taught) + 1  # only the bucket before the gap
    assert s.cover == pytest.approx(fc.MAX_HOLD_S)  # a sample stands for two minutes at most


def test_a_season_speaks_only_once_it_has_been_seen_whole_and_scored() -> None:
    day = [5.0 + 4.0 * math.sin(2 * math.pi * k / 1440) for k in range(1440)]
    one = fed(day, T0)
    two = fed(day * 2, T0)
    assert one.scored[1] == 0  # the first day's slots were the last minutes', not a season
    assert two.scored[1] > fc.MIN_SCORED
    assert two.scored[2] == 0  # a week has not been seen
    # a quarter of a day ahead the level says "as now", the daily profile says "the next peak"
    now = T0 + 2 * DAY - 60.0
    assert fc.seasonal_predict(two, now, DAY / 4) > fc.recent_level(two) + 1.0


def test_the_headroom_quantile_never_lowers_the_forecast() -> None:
    s = fed([5.0 + 4.0 * math.sin(2 * math.pi * k / 1440) + (k % 7) for k in range(3 * 1440)], T0)
    now = T0 + 3 * DAY - 60.0
    point = fc.seasonal_predict(s, now, 60.0)
    assert len(s.ratios) == fc.RATIOS_KEPT
    assert fc.seasonal_predict(s, now, 60.0, 50) >= point
    assert fc.seasonal_predict(s, now, 60.0, 100) == pytest.approx(point * max(1.0, *s.ratios))


def test_the_state_stays_bounded_and_small_on_the_status() -> None:
    s = fed([float(k % 97) for k in range(9 * 1440)], T0, seasonality="auto")
    assert (len(s.daily), len(s.weekly)) == (fc.DAY_SLOTS, fc.WEEK_SLOTS)
    assert (len(s.daily_near), len(s.weekly_near)) == (fc.DAY_SLOTS, fc.WEEK_SLOTS)
    assert len(s.ratios) == len(s.ranked) == fc.RATIOS_KEPT
    assert len(json.dumps(fc.pack(s))) < 8000  # half-precision profiles: a week of slots in about 5 KB
    assert len(fc.seasonal_start("daily").weekly) == 0


def test_the_seasonal_state_round_trips_through_the_policy_status() -> None:
    s = fed([5.0 + 4.0 * math.sin(2 * math.pi * k / 1440) for k in range(8 * 1440)], T0)
    raw = json.loads(json.dumps(persisted.dump(PolicyState(seasonal=s))))
    back, why = persisted.load(raw)
    assert why == "restored" and back is not None and back.seasonal is not None
    r = back.seasonal
    assert r.daily == pytest.approx(s.daily, rel=1e-3) and r.weekly == pytest.approx(s.weekly, rel=1e-3)
    assert r.daily_near == pytest.approx(s.daily_near, rel=1e-3)
    assert (r.bucket, r.scored, r.since, r.seen) == (s.bucket, s.scored, s.since, s.seen)
    now = T0 + 8 * DAY - 60.0
    for horizon in (60.0, 3600.0):
        assert fc.seasonal_predict(r, now, horizon, 90) == pytest.approx(
            fc.seasonal_predict(s, now, horizon, 90), rel=1e-3
        )


def test_a_damaged_seasonal_state_is_dropped_not_raised() -> None:
    raw = persisted.dump(PolicyState(seasonal=fed([1.0] * 30, T0)))
    raw["seasonal"]["daily"]["slots"] = "AAAA"  # two slots, not 288
    state, why = persisted.load(raw)
    assert state is None and "unreadable" in why


@pytest.mark.parametrize(
    ("have", "want", "fits"),
    [("daily", "daily", True), ("auto", "auto", True), ("daily", "auto", False), ("auto", "weekly", False)],
    ids=["same", "both", "a season more", "a season less"],
)
def test_a_state_fits_only_the_seasons_it_keeps(have: str, want: str, fits: bool) -> None:
    assert fc.seasonal_fits(fc.seasonal_start(have), want) is fits


def test_an_unknown_seasonality_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no seasonality 'hourly' \\(known: daily, weekly, auto\\)"):
        fc.seasonal_start("hourly")


# --- in the decision ----------------------------------------------------------------------------------------

NOON = NOW.replace(hour=12, minute=0)


def noon_rush(t: float) -> float:
    """Requests a second: 4 all day, 40 from noon to 14:00 (11 replicas of work at 275 ms a request)."""
    hour = (t % DAY) / 3600.0
    return 40.0 if 12.0 <= hour < 14.0 else 4.0


def two_days(policy_forecast: dict[str, object]) -> tuple[object, PolicyState]:
    p = a_policy(
        max_replicas=60,
        triggers=[slo_trigger(2000)],
        forecast=policy_forecast,
        lead={"modelStartSeconds": 60},
        nodePool="h100",
    )
    state: PolicyState | None = None
    start = NOON - timedelta(days=2)
    for k in range(0, 2 * 1440 - 5):  # up to 11:55 on the third day, one decision a minute
        at = start + timedelta(minutes=k)
        t = at.timestamp()
        d = decide(p, seen(3, ttft=rates(noon_rush(t), at_s=t - T0)), state, at)
        state = d.state
    assert state is not None
    return p, state


def test_a_seasonal_policy_keeps_replicas_for_the_daily_rush_one_model_start_before_it() -> None:
    p, state = two_days({"seasonality": "daily", "historySeconds": 0})
    at = NOON - timedelta(seconds=60)  # one model start before the rush
    t = at.timestamp()
    d = decide(p, seen(3, ttft=rates(4.0, at_s=t - T0)), state, at)
    assert d.forecast is not None and d.forecast > 3.0  # 1.1 replicas of work now, more expected at noon
    assert d.floor > 3 and d.desired == d.floor
    assert "forecast in 60 s (daily seasonality)" in d.reason


def test_without_seasonality_the_same_policy_waits_for_the_rush() -> None:
    p, state = two_days({"historySeconds": 0})
    at = NOON - timedelta(seconds=60)
    t = at.timestamp()
    d = decide(p, seen(3, ttft=rates(4.0, at_s=t - T0)), state, at)
    assert d.desired < 3 and d.node_floor == 0


def test_nodes_are_pre_warmed_for_the_rush_one_provisioning_and_one_model_start_ahead() -> None:
    p, state = two_days({"seasonality": "daily", "historySeconds": 0})
    pool = a_pool(gpus=4, provisioning=180)
    full = ClusterState([template_node(pool, "n0")])
    Binpack().place(replica_pods("svc", {"nvidia.com/gpu": 1}, 3), full)
    nodes = NodeView((pool,), full, pool_nodes(pool, [("n0", 4, 3, True, False)], {}, T0), scheduled=3)
    at = NOON - timedelta(seconds=240)  # 180 s provisioning + 60 s model start before the rush
    t = at.timestamp()
    d = decide(p, seen(3, ttft=rates(4.0, at_s=t - T0)), state, at, nodes=nodes)
    assert d.node_floor > d.desired  # the replicas can wait a model start; the nodes cannot
    adds = [c for c in d.node_pools if c.add]
    assert adds and adds[0].pool == "h100"
    assert adds[0].reason.startswith(f"the forecast expects {d.node_floor} replicas")


def test_the_backtest_reports_the_policys_own_seasonality_or_what_auto_would_do() -> None:
    arrivals = daily_arrivals(1)
    seasonal = for_policy(
        a_policy(forecast={"seasonality": "weekly"}, lead={"modelStartSeconds": 90}), arrivals
    )
    plain = for_policy(a_policy(), arrivals)
    assert seasonal is not None and (seasonal.seasonality, seasonal.horizon_s) == ("weekly", 90.0)
    assert plain is not None and plain.seasonality == "auto"
    assert plain.render()["forecaster"] == {
        "mape": round(plain.forecaster.mape, 4),
        "wape": round(plain.forecaster.wape, 4),
    }
    assert for_policy(a_policy(), arrivals[:3]) is None  # a few seconds: no bucket to score


def test_a_seasonal_policy_replays_through_the_shipped_loop_and_the_backtest_reports_its_error() -> None:
    text = EXAMPLE.read_text().replace(
        "  panic:",
        "  forecast:\n    historySeconds: 1800\n    historyPercentile: 75\n"
        "    seasonality: auto\n    headroomPercentile: 90\n  panic:",
    )
    assert "seasonality: auto" in text
    bt = run_backtest(
        parse_policy_file(text, "llm.yaml"), synthetic("diurnal", 2), baselines=(), triggers=TRIGGERS
    )
    row = bt.render_json()
    assert row["rows"][0]["policy"] == "tidescale" and row["rows"][0]["mean_replicas"] > 0
    assert row["forecast"]["seasonality"] == "auto" and row["forecast"]["horizon_seconds"] == 60.0
    assert row["forecast"]["buckets"] >= 10
