"""The arrivals' index of dispersion learnt from readings (`core.dispersion`), and the SLO trigger sizing with
it through `decide`: the measured ca² replaces the stated one once half the memory is seen, and it is kept in
the policy's status."""

import json

import numpy as np
import pytest

from autoscaler.controller.kube import persisted
from autoscaler.core import dispersion as dsp
from autoscaler.core.decide import Decision, PolicyState
from autoscaler.core.triggers import Observations, Reading
from tests.autoscaler.autoscaler_builders import T0, a_policy, at, decide, seen, slo_trigger


def fed(
    per_second: np.ndarray, short_s: int = 30, long_s: int = 60, memory_s: float = 600.0
) -> dsp.Dispersion | None:
    """The moments after reading, every 2 s, the rates over the last `short_s` and `long_s` seconds of these
    per-second arrival counts."""
    state = None
    total = np.concatenate([[0], np.cumsum(per_second)])
    for t in range(long_s, len(per_second), 2):
        short = (total[t] - total[t - short_s]) / short_s
        long = (total[t] - total[t - long_s]) / long_s
        state = dsp.observe(state, short, long, short_s, long_s, T0 + t, memory_s)
    return state


RNG = np.random.default_rng(3)


def test_poisson_arrivals_have_an_index_near_one_and_bursty_ones_far_above() -> None:
    d = dsp.index(fed(RNG.poisson(20.0, 3600)))
    assert d is not None and 0.8 < d < 1.25
    # the same mean in bursts: 10 s at 200 a second every 100 s, nothing in between
    bursts = np.where(np.arange(3600) % 100 < 10, RNG.poisson(200.0, 3600), 0)
    d = dsp.index(fed(bursts))
    assert d is not None and d > 50


def test_a_slow_swing_of_the_load_is_not_taken_for_bursts() -> None:
    # Poisson arrivals whose rate swings between 5 and 95 a second over an hour: the variance of 30 s counts
    # over ten minutes is mostly the swing, but not their difference from the minute's rate
    rate = 50.0 - 45.0 * np.cos(2 * np.pi * np.arange(3600) / 3600)
    swing = RNG.poisson(rate)
    d = dsp.index(fed(swing))
    counts = np.add.reduceat(swing[3000:3600], np.arange(0, 600, 30))
    raw = counts.var() / counts.mean()  # what the counts' own variance over the last ten minutes says
    # (a steep ramp still shows a little: the short window's mean lags the long one's by a quarter minute)
    assert d is not None and d < 3 and raw > 10 * d


def test_no_index_until_half_the_memory_is_seen_nor_while_nothing_arrives() -> None:
    assert dsp.index(None) is None
    assert dsp.index(fed(np.full(300, 20.0))) is None  # 240 s of readings, of a 600 s memory
    assert dsp.index(fed(np.full(900, 20.0))) == pytest.approx(0.0, abs=1e-9)  # constant: no variance
    assert dsp.index(fed(np.zeros(900))) is None


def test_a_sample_seen_again_or_a_broken_one_changes_nothing() -> None:
    s = dsp.observe(None, 10.0, 10.0, 30, 60, T0, 600.0)
    assert dsp.observe(s, 50.0, 10.0, 30, 60, T0, 600.0) == s
    assert dsp.observe(s, 50.0, 10.0, 30, 60, T0 - 5, 600.0) == s
    assert dsp.observe(s, float("nan"), 10.0, 30, 60, T0 + 5, 600.0) == s
    assert dsp.observe(s, -1.0, 10.0, 30, 60, T0 + 5, 600.0) == s
    assert dsp.observe(s, 10.0, 10.0, 60, 60, T0 + 5, 600.0) == s  # no short window inside the long one


def measuring(stated: float) -> dict[str, object]:
    return slo_trigger(2000, arrivalVariability=stated, arrivalVariabilityWindowSeconds=300)


def gateway(rps: float, short: float, t: float) -> Observations:
    """The SLO trigger's reading: 2,048 + 28 tokens a request; the short window (6 s) at `short` req/s."""
    series = {
        "promptTokensPerSecond": rps * 2048,
        "generatedTokensPerSecond": rps * 28,
        "requestsPerSecondShort": short,
        "shortWindowSeconds": 6.0,
        "windowSeconds": 60.0,
    }
    return seen(10, ttft=Reading(rps, series=series, at=T0 + t))


def run(policy_triggers: list[dict[str, object]], short: list[float]) -> list[Decision]:
    p = a_policy(max_replicas=200, triggers=policy_triggers)
    state: PolicyState | None = None
    out = []
    for i, s in enumerate(short):
        d = decide(p, gateway(20.0, s, 2.0 * i), state, at(2.0 * i))
        state = d.state
        out.append(d)
    return out


def test_the_slo_trigger_sizes_for_the_variability_it_measures_once_it_has_seen_enough() -> None:
    steady = [20.0] * 200  # the short window always sees 20 req/s: counts of 120, no variance
    bursts = [100.0 if i % 10 == 0 else 11.0 for i in range(200)]  # the same mean in bursts
    poisson = run([slo_trigger(2000)], steady)[-1].proposals[0]
    stated = run([measuring(80)], steady)
    early, late = stated[50].proposals[0], stated[-1].proposals[0]
    # until half of the 300 s memory is seen the stated ca² of 80 sizes it; then the measured ~0
    assert early.replicas > poisson.replicas and "measured" not in early.reason
    assert late.replicas <= poisson.replicas and "ca² measured 0" in late.reason
    bursty = run([measuring(1)], bursts)[-1]
    p = bursty.proposals[0]
    assert p.replicas > poisson.replicas and "ca² measured" in p.reason
    # the moments are part of the state, and the policy's status keeps them
    state = bursty.state
    assert state.arrivals is not None
    back, why = persisted.load(json.loads(json.dumps(persisted.dump(state))))
    assert why == "restored" and back is not None and back.arrivals is not None
    assert dsp.index(back.arrivals) == pytest.approx(dsp.index(state.arrivals), rel=1e-4)


def test_a_policy_that_states_its_variability_keeps_no_moments() -> None:
    d = run([slo_trigger(2000, arrivalVariability=40)], [20.0] * 5)[-1]
    assert d.state.arrivals is None
