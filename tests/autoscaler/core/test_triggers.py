import heapq
import math

import numpy as np
import pytest

from autoscaler.api.policy import ScalingPolicy
from autoscaler.core.triggers import (
    Context,
    Observations,
    Proposal,
    Reading,
    TriggerRegistry,
    default_registry,
    erlang_c_replicas,
    register_builtins,
)
from tests.autoscaler.autoscaler_builders import (
    NOW,
    T0,
    a_policy,
    gpu_trigger,
    gpus,
    queue_trigger,
    rates,
    seen,
    slo_trigger,
    value,
)

REG = default_registry()
CTX = Context()


def evaluate(
    policy: ScalingPolicy, reading: Reading | None, obs: Observations, ctx: Context = CTX
) -> Proposal:
    t = policy.spec.triggers[0]
    return REG.get(t.type).evaluate(t, t.name or "t", reading, obs, ctx, NOW, T0)


@pytest.mark.parametrize(
    ("aggregation", "target", "per_gpu", "replicas", "want"),
    [
        ("mean", 70, (140, 140), 2, 4),
        ("mean", 70, (100, 40), 2, 2),  # mean 70 %: within tolerance
        ("mean", 70, (75, 75), 4, 4),  # ratio 1.07 ≤ 1.1
        ("mean", 70, (35, 35, 35, 35), 4, 2),
        ("max", 70, (100, 40), 2, 3),  # the hottest GPU decides
        ("sum", 70, (100, 100, 100), 3, 5),  # 300 % total over 70 %/replica
    ],
    ids=["mean over", "mean within", "tolerance", "mean under", "max", "sum"],
)
def test_gpu_utilisation_follows_hpa_semantics_per_aggregation(
    aggregation: str, target: int, per_gpu: tuple[float, ...], replicas: int, want: int
) -> None:
    p = a_policy(triggers=[gpu_trigger(target, aggregation=aggregation)])
    assert evaluate(p, gpus(*per_gpu), seen(replicas)).replicas == want


@pytest.mark.parametrize(
    ("per_gpu", "measured", "ready", "want"),
    [
        ((100, 100), 2, 2, 3),  # all measured: HPA's ceil(ratio × ready)
        ((100, 100), 2, 3, 3),  # a reading from before a scale-up to 3: sized for the 2 pods it measured
        ((100, 100), 2, 4, 4),  # ... whose 3 are fewer than the 4 ready: no scale-down from it
        ((20, 20), 2, 4, 3),  # scale-down: ceil(0.29 × 2) = 1, plus the 2 pods not measured at the target
        ((20, 20), 2, 2, 1),
        ((75, 75), 2, 5, 5),  # within the tolerance: the ready replicas
        ((95,), 2, 2, 3),  # two pods on one time-sliced GPU (one series): both replicas were read
        ((100, 100), 4, 2, 3),  # two of the 4 pods then were pending: they measured nothing
    ],
    ids=[
        "all measured",
        "stale reading",
        "stale reading, more ready",
        "down, unmeasured",
        "down",
        "tolerance",
        "shared gpu",
        "pending when read",
    ],
)
def test_a_per_gpu_target_scales_the_pods_the_reading_measured(
    per_gpu: tuple[float, ...], measured: int, ready: int, want: int
) -> None:
    p = a_policy(triggers=[gpu_trigger(70)])
    reading = Reading(per_gpu=tuple(v / 100 for v in per_gpu), at=T0, series={"pods": measured})
    assert evaluate(p, reading, seen(ready)).replicas == want


def test_the_gpu_reason_is_a_sentence_with_numbers() -> None:
    p = a_policy(triggers=[gpu_trigger(70)])
    assert evaluate(p, gpus(140, 140), seen(2)).reason == "GPU 140% of target 70%"


def test_dcgm_dev_util_is_read_as_percent_and_prof_fields_as_ratios() -> None:
    dev = a_policy(triggers=[gpu_trigger(50, metric="DCGM_FI_DEV_GPU_UTIL")])
    prof = a_policy(triggers=[gpu_trigger(50, metric="DCGM_FI_PROF_SM_ACTIVE")])
    assert evaluate(dev, Reading(per_gpu=(100.0,), at=T0), seen(1)).replicas == 2
    assert evaluate(prof, Reading(per_gpu=(1.0,), at=T0), seen(1)).replicas == 2


@pytest.mark.parametrize(
    ("reading", "why"),
    [
        (None, "no reading"),
        (Reading(error="connection refused"), "connection refused"),
        (Reading(per_gpu=(0.5,), at=T0 - 600), "sample is 600s old (max 120s)"),
        (Reading(at=T0), "no GPU series for the target's pods"),
    ],
    ids=["missing", "error", "stale", "no series"],
)
def test_a_reading_that_cannot_be_used_gives_no_opinion_and_says_why(
    reading: Reading | None, why: str
) -> None:
    p = evaluate(a_policy(), reading, seen(3))
    assert p.replicas is None and p.failed
    assert why in p.reason


@pytest.mark.parametrize(
    ("target_type", "v", "replicas", "want"),
    [
        ("AverageValue", 1000, 2, 10),  # a total divided among replicas
        ("AverageValue", 210, 2, 2),  # ratio 1.05 against status: within tolerance
        ("AverageValue", 50, 0, 1),  # from zero
        ("Value", 200, 2, 4),  # already per replica: ratio × ready
    ],
    ids=["average value", "average within tolerance", "average from zero", "value"],
)
def test_prometheus_value_and_average_value_targets(
    target_type: str, v: float, replicas: int, want: int
) -> None:
    p = a_policy(triggers=[{"type": "Prometheus", "query": "q", "target": 100, "targetType": target_type}])
    assert evaluate(p, value(v), seen(replicas)).replicas == want


@pytest.mark.parametrize(
    ("lag", "partitions", "idle_ok", "want"),
    [(2000, 0, False, 20), (2000, 8, False, 8), (2000, 8, True, 20), (0, 8, False, 0)],
    ids=["no cap known", "capped at partitions", "idle consumers allowed", "no lag"],
)
def test_kafka_lag_is_divided_per_replica_and_capped_at_the_partitions(
    lag: float, partitions: int, idle_ok: bool, want: int
) -> None:
    trig = {
        "type": "KafkaLag",
        "topic": "t",
        "group": "g",
        "lagPerReplica": 100,
        "allowIdleConsumers": idle_ok,
    }
    reading = Reading(lag, series={"partitions": float(partitions)}, at=T0)
    p = evaluate(a_policy(triggers=[trig]), reading, seen(0))
    assert p.replicas == want
    assert p.active is (lag > 0)


def test_queue_depth_is_active_only_above_its_activation_threshold() -> None:
    p = a_policy(triggers=[queue_trigger(10, activationThreshold=5)])
    assert evaluate(p, value(5), seen(0)).active is False
    assert evaluate(p, value(6), seen(0)).active is True
    assert evaluate(p, value(95), seen(2)).replicas == 10


def test_a_schedule_sets_a_floor_inside_its_window_and_has_no_opinion_outside() -> None:
    trig = {"type": "Schedule", "windows": [{"cron": "0 8 * * 1-5", "durationSeconds": 36000, "replicas": 4}]}
    p = a_policy(triggers=[trig])
    t = p.spec.triggers[0]
    inside = REG.get("Schedule").evaluate(t, "s", None, seen(1), CTX, NOW, T0)  # Monday 12:00
    evening = NOW.replace(hour=19)
    outside = REG.get("Schedule").evaluate(t, "s", None, seen(1), CTX, evening, evening.timestamp())
    assert (inside.replicas, inside.floor) == (4, True)
    assert (outside.replicas, outside.failed) == (None, False)


# Values checked against the closed form C(c, a) = (aᶜ/c!)(c/(c−a)) / (Σ_{k<c} aᵏ/k! + (aᶜ/c!)(c/(c−a))).
@pytest.mark.parametrize(
    ("load", "budget", "quantile", "want"),
    [
        (0.0, 1.0, 0.99, 0),
        (1.0, 1.0, 0.99, 4),
        (10.0, 1.0, 0.99, 14),
        (10.0, 1.0, 0.9, 12),
        (10.0, 5.0, 0.99, 11),
    ],
    ids=["idle", "light", "ten erlangs", "looser percentile", "longer budget"],
)
def test_erlang_c_gives_the_fewest_servers_that_meet_the_waiting_percentile(
    load: float, budget: float, quantile: float, want: int
) -> None:
    assert erlang_c_replicas(load, 1.0, budget, quantile, 1000) == want


def mmc_late(load: float, servers: int, budget: float, service: float) -> float:
    """P(wait > budget) in a stable M/M/c queue (servers > load), from the closed form."""
    top = load**servers / math.factorial(servers) * servers / (servers - load)
    c = top / (sum(load**k / math.factorial(k) for k in range(servers)) + top)
    return c * math.exp(-(servers - load) * budget / service)


@pytest.mark.parametrize("load", [0.05, 0.5, 1.0, 5.0, 25.0, 50.0])
@pytest.mark.parametrize("worth", [1.0, 4.0, 20.0, 100.0])
def test_by_worth_the_servers_minimise_their_cost_plus_the_late_requests_priced_at_that_worth(
    load: float, worth: float
) -> None:
    # 29 s requests, a 10 s wait allowed (the image service): of the stable queues, the one where
    # c + λ·P(c)·3600 / worth is least (an unstable one makes every request late, without bound)
    got = erlang_c_replicas(load, 29.0, 10.0, 0.99, 1000, 1.0, worth)
    per_hour = 3600.0 * load / 29.0
    stable = range(math.floor(load) + 1, 120)
    cost = {c: c + per_hour * mmc_late(load, c, 10.0, 29.0) / worth for c in stable}
    assert cost[got] == pytest.approx(min(cost.values()), rel=1e-9)
    assert got > load  # never fewer than a stable queue needs


def test_by_worth_fewer_replicas_are_held_at_low_load_and_more_at_high_load_than_by_a_percentile() -> None:
    def by_percentile(load: float) -> int:
        return erlang_c_replicas(load, 29.0, 10.0, 0.99, 1000)

    def by_worth(load: float) -> int:
        return erlang_c_replicas(load, 29.0, 10.0, 0.99, 1000, 1.0, 4.0)

    # a night's trickle: the p99 holds two replicas for a tenth of one's work, each saving under a request
    # an hour; by worth one is held
    assert (by_percentile(0.1), by_worth(0.1)) == (2, 1)
    # a busy hour: 3,100 requests an hour, where a replica that saves a few of them is still worth it
    assert by_worth(25.0) > by_percentile(25.0)


def test_the_slo_trigger_spends_its_error_budget_by_worth_when_its_spec_says_so() -> None:
    latency = {"percentile": 99, "targetMilliseconds": 2000, "lateRequestsPerReplicaHour": 500}
    worth = slo_trigger(2000, latency=latency)
    # 7,200 requests an hour of 0.27 s each: a second replica keeps about 345 of them an hour under the 1.5 s
    # wait, fewer than the 500 a replica must (the p99 holds it)
    got = evaluate(a_policy(triggers=[worth]), rates(2.0), seen(4))
    by_percentile = evaluate(a_policy(triggers=[slo_trigger(2000)]), rates(2.0), seen(4))
    assert got.sizing is not None and got.sizing[4] == 500.0
    assert by_percentile.sizing is not None and by_percentile.sizing[4] == 0.0
    d = got.demand or 0.0
    assert got.replicas == erlang_c_replicas(d, *got.sizing[:2], 0.99, 1000, 1.0, 500.0)
    assert got.replicas is not None and by_percentile.replicas is not None
    assert got.replicas < by_percentile.replicas
    assert "each replica keeping ≥ 500 requests an hour under 2000 ms" in got.reason
    assert "p99 ≤ 2000 ms" in by_percentile.reason


def fifo_p99_wait(arrival: np.ndarray, service: np.ndarray, servers: int) -> float:
    """The 99th percentile wait of a FIFO queue with `servers` servers (a direct simulation)."""
    free = [0.0] * servers
    waits = []
    for a, s in zip(arrival.tolist(), service.tolist(), strict=True):
        begin = max(a, free[0])
        waits.append(begin - a)
        heapq.heapreplace(free, begin + s)
    return float(np.percentile(waits, 99))


def test_a_g_g_c_wait_k_times_longer_takes_the_servers_of_a_budget_k_times_shorter() -> None:
    shorter = erlang_c_replicas(10.0, 1.0, 0.25, 0.99, 1000)
    assert erlang_c_replicas(10.0, 1.0, 1.0, 0.99, 1000, 4.0) == shorter
    assert erlang_c_replicas(10.0, 1.0, 1.0, 0.99, 1000, 1.0) == erlang_c_replicas(10.0, 1.0, 1.0, 0.99, 1000)
    sized = [erlang_c_replicas(10.0, 1.0, 1.0, 0.99, 1000, k) for k in (0.0, 0.5, 1.0, 4.0, 40.0)]
    assert sized == sorted(sized) and sized[0] == 11  # no variability: just more servers than load


def test_sized_for_the_arrivals_variability_bursty_traffic_waits_far_less_than_sized_as_poisson() -> None:
    # 10 s bursts at 30 requests/s every minute over 6 requests/s: 5 replicas of work on average, counts over
    # 10 s with an index of dispersion near 80 (the Azure code trace's order)
    rng = np.random.default_rng(4)
    parts = []
    for cycle in range(300):
        t0 = cycle * 60.0
        parts.append(t0 + np.sort(rng.uniform(0, 50, rng.poisson(6 * 50))))
        parts.append(t0 + 50 + np.sort(rng.uniform(0, 10, rng.poisson(30 * 10))))
    arrival = np.concatenate(parts)
    service = rng.exponential(0.5, len(arrival))
    load = len(arrival) * 0.5 / (300 * 60)
    counts = np.bincount((arrival // 10).astype(int))
    ca2 = float(counts.var() / counts.mean())
    assert 60 < ca2 < 100
    poisson = erlang_c_replicas(load, 0.5, 1.0, 0.99, 1000)
    bursty = erlang_c_replicas(load, 0.5, 1.0, 0.99, 1000, (ca2 + 1.0) / 2)
    assert bursty >= poisson + 4
    as_poisson, as_bursty = fifo_p99_wait(arrival, service, poisson), fifo_p99_wait(arrival, service, bursty)
    # sized as Poisson the p99 wait is many times the 1 s budget; the correction takes most of it back (the
    # tail stays approximate: a burst that outlasts the budget still needs more)
    assert as_poisson > 8.0 and as_bursty < as_poisson / 3


def test_the_slo_trigger_sizes_for_the_variability_its_spec_states() -> None:
    poisson = evaluate(a_policy(triggers=[slo_trigger(2000)]), rates(40.0), seen(4))
    bursty = evaluate(a_policy(triggers=[slo_trigger(2000, arrivalVariability=40)]), rates(40.0), seen(4))
    assert poisson.replicas is not None and bursty.replicas is not None and bursty.replicas > poisson.replicas
    assert bursty.sizing is not None and bursty.sizing[3] == pytest.approx(20.5)  # (40 + 1) / 2
    assert "waits ×20.5 for variability" in bursty.reason and "variability" not in poisson.reason
    steady = slo_trigger(2000, arrivalVariability=40)
    steady["capacity"] = {**steady["capacity"], "serviceVariability": 0.0}
    even = evaluate(a_policy(triggers=[steady]), rates(40.0), seen(4))
    assert even.sizing is not None and even.sizing[3] == pytest.approx(20.0)


def test_the_slo_trigger_sizes_replicas_from_request_and_token_rates() -> None:
    p = a_policy(triggers=[slo_trigger(2000)])
    # 20 req/s × (2048/8000 + 28/1500) s = 5.5 replicas of work
    got = evaluate(p, rates(20.0), seen(4))
    assert got.demand == pytest.approx(5.49, abs=0.01)
    assert got.replicas is not None and 6 <= got.replicas <= 10
    assert got.reason.startswith("20.0 req/s × 275 ms = 5.5 replicas of work")


def test_a_stricter_latency_target_asks_for_more_replicas() -> None:
    loose = evaluate(a_policy(triggers=[slo_trigger(5000)]), rates(40.0), seen(4)).replicas
    strict = evaluate(a_policy(triggers=[slo_trigger(600)]), rates(40.0), seen(4)).replicas
    assert loose is not None and strict is not None and strict > loose


def test_a_backlog_adds_transient_replicas_only_for_what_will_be_left_after_the_lead_time() -> None:
    p = a_policy(triggers=[slo_trigger(2000, drainSeconds=60)])
    calm = evaluate(p, rates(10.0), seen(4))
    small = evaluate(p, rates(10.0, waiting=20), seen(4), Context(lead_s=60))
    big = evaluate(p, rates(10.0, waiting=2000), seen(4), Context(lead_s=60))
    assert small.replicas == calm.replicas  # four replicas drain 20 requests well before new ones start
    assert big.replicas is not None and calm.replicas is not None and big.replicas > calm.replicas
    assert big.sustained == calm.replicas  # the backlog part is not stabilized
    assert "waiting" in big.reason


def test_a_burst_seen_in_the_short_window_asks_for_transient_replicas() -> None:
    p = a_policy(triggers=[slo_trigger(2000)])
    steady = evaluate(p, rates(10.0), seen(4))
    burst = evaluate(p, rates(10.0, short=60.0), seen(4))
    assert burst.replicas is not None and steady.replicas is not None and burst.replicas > steady.replicas
    assert burst.sustained == steady.replicas


def test_an_unknown_trigger_type_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"no trigger type 'GPUUtil' \(known: DCGM, GPUUtilization"):
        REG.get("GPUUtil")


def test_registering_a_type_twice_is_refused() -> None:
    reg = register_builtins(TriggerRegistry())
    with pytest.raises(ValueError, match="registered twice"):
        register_builtins(reg)
