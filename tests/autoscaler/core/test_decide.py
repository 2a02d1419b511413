import json
from typing import Any

import pytest

from autoscaler.api.policy import ScalingPolicy
from autoscaler.controller.kube import persisted
from autoscaler.core.decide import Decision, NodeView, PolicyState, pool_nodes
from autoscaler.core.events import record, render
from autoscaler.core.nodepool import replica_pods, template_node
from autoscaler.core.triggers import Observations, Reading, erlang_c_replicas
from jobs.placement import Binpack
from jobs.snapshot import ClusterState
from tests.autoscaler.autoscaler_builders import (
    T0,
    a_policy,
    a_pool,
    at,
    decide,
    gpu_trigger,
    gpus,
    queue_trigger,
    rates,
    seen,
    slo_trigger,
    value,
)


def run(policy: ScalingPolicy, steps: list[tuple[float, Observations]]) -> list[Decision]:
    """Decide at each (seconds, observations), carrying the state and feeding back the desired replicas."""
    state: PolicyState | None = None
    out = []
    for s, obs in steps:
        d = decide(policy, obs, state, at(s))
        state = d.state
        out.append(d)
    return out


def test_a_decision_says_what_it_saw_with_numbers() -> None:
    d = decide(a_policy(triggers=[gpu_trigger(70)]), seen(2, gpu=gpus(140, 140)), None, at(0))
    assert (d.current, d.desired) == (2, 4)
    assert d.reason == "GPU 140% of target 70%: 2 → 4 replicas"
    assert (d.rule, d.trigger) == ("DesiredWithinRange", "gpu")


def test_the_first_over_target_observation_scales_up_in_the_same_decision() -> None:
    p = a_policy(triggers=[gpu_trigger(70)])
    calm, hot = run(p, [(0, seen(2, gpu=gpus(70, 70))), (2, seen(2, gpu=gpus(210, 210, at_s=2)))])
    assert calm.desired == 2
    assert hot.desired == 6  # no wait for another sync period or a second sample


@pytest.mark.parametrize(
    ("max_replicas", "behavior", "rule", "desired"),
    [
        (5, None, "TooManyReplicas", 5),
        (50, None, "ScaleUpLimit", 6),  # +4 pods or +100 % per 15 s (the API defaults)
        (50, {"scaleUp": {"selectPolicy": "Disabled"}}, "ScaleUpLimit", 2),
    ],
    ids=["max replicas", "default rate", "scale-up disabled"],
)
def test_the_rule_that_limited_the_step_is_named_in_the_decision(
    max_replicas: int, behavior: dict[str, object] | None, rule: str, desired: int
) -> None:
    extra = {"behavior": behavior} if behavior else {}
    p = a_policy(max_replicas=max_replicas, triggers=[gpu_trigger(10)], **extra)
    d = decide(p, seen(2, gpu=gpus(100, 100)), None, at(0))
    assert (d.rule, d.desired) == (rule, desired)
    if desired != 20:
        assert "metrics want 20 replicas" in d.reason


@pytest.mark.parametrize(
    ("spec", "steps", "rule", "wish", "bound", "result"),
    [
        (
            {"max_replicas": 50},
            [(0, seen(2, gpu=gpus(100, 100)))],
            "ScaleUpLimit",
            "metrics want 20 replicas",
            "the scale-up rate limit (+4 pods per 15 s or +100 % per 15 s, the larger step) allows at most "
            "6 now",
            "2 → 6 replicas",
        ),
        (
            {  # a rate policy stricter than the default 100 % per 15 s
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
                    }
                }
            },
            [(0, seen(20, gpu=gpus(*[1] * 20)))],
            "ScaleDownLimit",
            "metrics want 2 replicas",
            "the scale-down rate limit (−50 % per 60 s) allows no fewer than 10 now",
            "20 → 10 replicas",
        ),
        (
            {"behavior": {"scaleUp": {"stabilizationWindowSeconds": 60}}},
            [(0, seen(2, gpu=gpus(10, 10))), (30, seen(2, gpu=gpus(100, 100, at_s=30)))],
            "ScaleUpStabilized",
            "metrics want 20 replicas",
            "the scale-up stabilization window (60 s) keeps the lowest recommendation of the last 60 s, 2",
            "keeping 2 replicas",
        ),
        (
            {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}},
            [(0, seen(20, gpu=gpus(*[10] * 20))), (30, seen(20, gpu=gpus(*[1] * 20, at_s=30)))],
            "ScaleDownStabilized",
            "metrics want 2 replicas",
            "the scale-down stabilization window (300 s) keeps the highest recommendation of the last "
            "300 s, 20",
            "keeping 20 replicas",
        ),
        (
            {"max_replicas": 5},
            [(0, seen(2, gpu=gpus(100, 100)))],
            "TooManyReplicas",
            "metrics want 20 replicas",
            "maxReplicas is 5",
            "2 → 5 replicas",
        ),
        (
            {"min_replicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}},
            [(0, seen(4, gpu=gpus(1, 1, 1, 1)))],
            "TooFewReplicas",
            "metrics want 1 replica",
            "minReplicas is 3",
            "4 → 3 replicas",
        ),
    ],
    ids=[
        "ScaleUpLimit",
        "ScaleDownLimit",
        "ScaleUpStabilized",
        "ScaleDownStabilized",
        "TooManyReplicas",
        "TooFewReplicas",
    ],
)
def test_a_limited_step_says_what_the_metrics_wanted_what_the_rule_allowed_and_the_result(
    spec: dict[str, Any],
    steps: list[tuple[float, Observations]],
    rule: str,
    wish: str,
    bound: str,
    result: str,
) -> None:
    d = run(a_policy(triggers=[gpu_trigger(10)], **spec), steps)[-1]
    assert d.rule == rule
    assert wish in d.reason and bound in d.reason and d.reason.endswith(result), d.reason
    # the metrics' wish and the result differ in every limiting case: the sentence never contradicts itself
    wanted = int(wish.split()[2])
    assert wanted != d.desired


def test_scale_down_waits_for_the_stabilization_window() -> None:
    p = a_policy(triggers=[gpu_trigger(50)], behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    ds = run(
        p,
        [(0, seen(4, gpu=gpus(50, 50, 50, 50)))]
        + [(t, seen(4, gpu=gpus(10, 10, 10, 10, at_s=t))) for t in (30, 59, 61)],
    )
    assert [d.desired for d in ds] == [4, 4, 4, 1]
    assert ds[1].rule == "ScaleDownStabilized"


def test_no_scale_down_on_partial_data_but_scale_up_goes_ahead() -> None:
    p = a_policy(triggers=[gpu_trigger(50), queue_trigger(10)])
    down = decide(p, seen(6, gpu=gpus(10, 10, 10, 10, 10, 10)), None, at(0))
    up = decide(p, seen(2, gpu=gpus(100, 100)), None, at(0))
    assert (down.desired, down.rule) == (6, "PartialMetrics")
    assert up.desired == 4


def test_no_metric_at_all_keeps_the_replicas() -> None:
    d = decide(a_policy(), seen(3), None, at(0))
    assert (d.desired, d.rule) == (3, "MetricsUnavailable")
    assert "no usable sample (no reading)" in d.reason


def test_fallback_sets_its_replicas_once_failures_exceed_the_threshold() -> None:
    p = a_policy(triggers=[gpu_trigger(50)], fallback={"failureThreshold": 2, "replicas": 7})
    ds = run(p, [(t, seen(3, gpu=Reading(error="timeout"))) for t in (0, 15, 30)])
    assert [d.rule for d in ds] == ["MetricsUnavailable", "MetricsUnavailable", "Fallback"]
    assert ds[-1].desired == 7 and ds[-1].fallback
    assert "timeout" in ds[-1].reason


@pytest.mark.parametrize(
    ("reads", "rules"),
    [
        ((1.0, 1.0, 1.0), ["MetricsUnavailable", "MetricsUnavailable", "MetricsUnavailable"]),
        ((1.0, 1.0, 6.0, 6.0, 11.0), ["MetricsUnavailable"] * 4 + ["Fallback"]),
        ((None, None, None), ["MetricsUnavailable", "MetricsUnavailable", "Fallback"]),
    ],
    ids=[
        "one read seen by three decisions is one failure",
        "three reads are three failures, however many decisions see them",
        "readings without a read time count at every decision",
    ],
)
def test_a_failure_counts_once_per_read_of_its_trigger_not_once_per_decision(
    reads: tuple[float | None, ...], rules: list[str]
) -> None:
    p = a_policy(triggers=[gpu_trigger(50)], fallback={"failureThreshold": 2, "replicas": 7})
    steps = [(float(k), seen(3, gpu=Reading(error="timeout", read_at=r))) for k, r in enumerate(reads)]
    assert [d.rule for d in run(p, steps)] == rules


def fallback_policy(**spec: object) -> ScalingPolicy:
    """A healthy queue trigger beside a GPU trigger that will fail, fallback 10 after 2 failures."""
    return a_policy(
        max_replicas=40,
        triggers=[queue_trigger(10), gpu_trigger(50)],
        fallback={"failureThreshold": 2, "replicas": 10},
        **spec,
    )


def gpu_failing(replicas: int, queue: float | None, t: float) -> Observations:
    q = value(queue, t) if queue is not None else Reading(error="timeout")
    return seen(replicas, queue=q, gpu=Reading(error="timeout"))


@pytest.mark.parametrize(
    ("current", "queue", "desired", "rule", "says"),
    [
        (12, 200, 20, "DesiredWithinRange", "queue 200 for 10/replica; gpu failed more than 2 times"),
        (6, 200, 12, "ScaleUpLimit", "its fallback static 10 is lower: metrics want 20 replicas"),
        (6, 50, 10, "Fallback", "fallback static 10, above queue at 5: 6 → 10 replicas"),
        (
            3,
            50,
            7,
            "ScaleUpLimit",
            "above queue at 5: metrics want 10 replicas; the scale-up rate limit (+4 pods per 15 s or +100 % "
            "per 15 s, the larger step) allows at most 7 now: 3 → 7 replicas",
        ),
        (6, None, 10, "Fallback", "queue, gpu failed more than 2 times in a row"),
    ],
    ids=[
        "healthy 20 over fallback 10",
        "healthy 20 over fallback 10, rate-limited",
        "fallback 10 over healthy 5",
        "fallback 10 over healthy 5, rate-limited",
        "all failing: the fallback",
    ],
)
def test_the_fallback_is_a_floor_under_the_healthy_triggers_through_the_behavior_rules(
    current: int, queue: float | None, desired: int, rule: str, says: str
) -> None:
    # KEDA serves the fallback to the HPA as one more metric: the max over all metrics wins
    ds = run(fallback_policy(), [(t, gpu_failing(current, queue, t)) for t in (0, 15, 30)])
    d = ds[-1]
    assert (d.desired, d.rule, d.fallback) == (desired, rule, True)
    assert says in d.reason
    assert not any(x.fallback for x in ds[:-1])  # within the threshold: no fallback yet


def test_a_scale_down_to_the_fallback_waits_for_the_stabilization_window() -> None:
    healthy = [(t, seen(12, queue=value(120, t), gpu=gpus(*[50] * 12, at_s=t))) for t in (0, 15)]
    failing = [(t, gpu_failing(12, 50, t)) for t in (30, 45, 60, 300, 315)]
    ds = run(fallback_policy(), healthy + failing)
    assert [d.desired for d in ds] == [12, 12, 12, 12, 12, 12, 10]
    assert [d.rule for d in ds[2:4]] == ["PartialMetrics", "PartialMetrics"]  # within the threshold
    assert ds[4].rule == "ScaleDownStabilized" and ds[4].fallback
    assert (ds[-1].rule, ds[-1].reason.endswith(": 12 → 10 replicas")) == ("Fallback", True)


def test_from_zero_the_fallback_does_not_cap_an_active_healthy_trigger() -> None:
    # a failing trigger whose series exist with zero pods (a GPU trigger's do not: see below)
    p = a_policy(
        min_replicas=0,
        max_replicas=40,
        triggers=[queue_trigger(10), slo_trigger()],
        fallback={"failureThreshold": 2, "replicas": 10},
        scaleToZero={"idleSeconds": 60},
    )
    ds = run(p, [(t, seen(0, queue=value(200, t), ttft=Reading(error="timeout"))) for t in (0, 15, 30)])
    assert [(d.desired, d.rule, d.fallback) for d in ds] == [(20, "Activation", False)] * 2 + [
        (20, "Activation", True)
    ]


@pytest.mark.parametrize(
    ("replicas", "ready", "queue", "desired", "rule"),
    [
        (0, 0, 0, 0, "ScaledToZero"),
        (3, 0, 30, 3, "DesiredWithinRange"),
    ],
    ids=["idle at zero", "every replica waiting for a node"],
)
def test_a_gpu_trigger_with_no_ready_replica_has_no_opinion_and_no_failure(
    replicas: int, ready: int, queue: float, desired: int, rule: str
) -> None:
    p = fallback_policy(min_replicas=0, scaleToZero={"idleSeconds": 600})
    no_series = Reading(error="no GPU series for the target's pods")
    ds = run(p, [(t, seen(replicas, ready, queue=value(queue, t), gpu=no_series)) for t in (0, 15, 30, 45)])
    d = ds[-1]
    assert (d.desired, d.rule, d.fallback) == (desired, rule, False)  # no fallback to 10
    gpu = next(x for x in d.proposals if x.trigger == "gpu")
    assert (gpu.replicas, gpu.failed, gpu.reason) == (None, False, "gpu: no replica is ready to read")


def test_a_gpu_trigger_fails_again_once_a_replica_is_ready() -> None:
    p = fallback_policy(min_replicas=0, scaleToZero={"idleSeconds": 600})
    no_series = Reading(error="no GPU series for the target's pods")
    ds = run(p, [(t, seen(3, 1, queue=value(30, t), gpu=no_series)) for t in (0, 15, 30)])
    # toward the fallback 10 within the scale-up policies: 3 + 4 pods
    assert [(d.desired, d.fallback) for d in ds] == [(3, False), (3, False), (7, True)]


def test_no_scale_to_zero_while_the_fallback_holds() -> None:
    p = fallback_policy(min_replicas=0, scaleToZero={"idleSeconds": 60})
    ds = run(p, [(t, gpu_failing(2, 0, t)) for t in (0, 15, 30, 60, 120)])
    assert all(d.desired > 0 and d.rule != "ScaleToZero" for d in ds)
    assert (ds[-1].desired, ds[-1].rule) == (6, "ScaleUpLimit")  # toward the fallback 10: 2 + 4 pods


def scale_to_zero_policy() -> ScalingPolicy:
    return a_policy(
        min_replicas=0,
        triggers=[queue_trigger(10), gpu_trigger(70)],
        scaleToZero={"idleSeconds": 300},
    )


def test_scale_to_zero_after_the_idle_period_with_every_activation_signal_quiet() -> None:
    p = scale_to_zero_policy()
    quiet = [(t, seen(2, queue=value(0, t), gpu=gpus(1, 1, at_s=t))) for t in (0, 100, 299, 300)]
    ds = run(p, quiet)
    assert [d.desired for d in ds][-1] == 0
    assert ds[-1].rule == "ScaleToZero"
    assert ds[-2].desired > 0


def test_from_zero_an_active_gateway_queue_wakes_the_target_at_once() -> None:
    p = scale_to_zero_policy()
    idle = decide(p, seen(0, queue=value(0)), None, at(0))
    wake = decide(p, seen(0, queue=value(35)), idle.state, at(2))
    assert (idle.desired, idle.rule) == (0, "ScaledToZero")
    assert (wake.desired, wake.rule) == (4, "Activation")
    assert wake.reason == "activation, queue 35 for 10/replica: 0 → 4 replicas"


def test_a_failed_activation_signal_never_turns_into_scale_to_zero() -> None:
    p = scale_to_zero_policy()
    ds = run(
        p,
        [(0, seen(2, queue=value(0), gpu=gpus(1, 1)))]
        + [(t, seen(2, queue=Reading(error="down"), gpu=gpus(1, 1, at_s=t))) for t in (400, 800)],
    )
    assert all(d.desired > 0 for d in ds)


def test_panic_scales_at_once_past_the_rate_limits_and_holds_after_the_burst() -> None:
    p = a_policy(
        max_replicas=100, triggers=[gpu_trigger(50)], panic={"thresholdPercent": 200, "stableSeconds": 60}
    )
    burst = decide(p, seen(2, gpu=gpus(500, 500)), None, at(0))
    assert (burst.desired, burst.rule, burst.panic) == (20, "Panic", True)
    calm = decide(p, seen(20, gpu=gpus(*[10] * 20, at_s=30)), burst.state, at(30))
    assert (calm.desired, calm.rule) == (20, "Panic")  # no scale-down while the panic lasts
    after = decide(p, seen(20, gpu=gpus(*[10] * 20, at_s=400)), calm.state, at(400))
    assert after.rule != "Panic"


def test_the_forecast_keeps_the_level_recent_work_arrived_at() -> None:
    p = a_policy(
        max_replicas=100,
        triggers=[slo_trigger(2000)],
        forecast={"historySeconds": 600, "historyPercentile": 90},
        behavior={"scaleDown": {"stabilizationWindowSeconds": 0}},
    )
    steps = [(float(t), seen(10, ttft=rates(40.0 if t < 60 else 1.0, at_s=t))) for t in range(0, 120, 6)]
    ds = run(p, steps)
    assert ds[-1].floor >= 11  # 40 req/s × 275 ms = 11 replicas of work, seen within the last 10 min
    assert ds[-1].desired >= 11
    assert "p90 of the last 600 s" in ds[-1].reason


def test_the_forecast_is_sized_into_replicas_by_the_slo_triggers_worth_rule() -> None:
    def ahead(latency: dict[str, float]) -> Decision:
        p = a_policy(
            max_replicas=200,
            triggers=[slo_trigger(2000, latency=latency)],
            forecast={"historySeconds": 0, "trendSmoothingPercent": 0, "trendWindowSeconds": 480},
            lead={"modelStartSeconds": 120},
        )
        ramp = [(float(t), seen(10, ttft=rates(10.0 + 0.1 * t, at_s=t))) for t in range(0, 600, 6)]
        return run(p, ramp)[-1]

    by_worth = ahead({"percentile": 99, "targetMilliseconds": 2000, "lateRequestsPerReplicaHour": 10})
    by_percentile = ahead({"percentile": 99, "targetMilliseconds": 2000})
    for d, worth in ((by_worth, 10.0), (by_percentile, 0.0)):
        sizing = d.proposals[0].sizing
        assert d.forecast is not None and sizing is not None and sizing[4] == worth
        service_s, budget_s, quantile, k, _ = sizing
        assert d.floor == erlang_c_replicas(d.forecast, service_s, budget_s, quantile, 200, k, worth)
    # 22 replicas of work forecast, 290,000 requests an hour: a replica that keeps 10 of them in time is
    # held beyond the p99's
    assert by_worth.floor > by_percentile.floor


def test_a_robust_trend_scales_ahead_of_a_ramp_and_not_after_a_burst() -> None:
    p = a_policy(
        max_replicas=200,
        triggers=[slo_trigger(2000)],
        forecast={"historySeconds": 0, "trendSmoothingPercent": 0, "trendWindowSeconds": 480},
        lead={"modelStartSeconds": 120},
    )
    ramp = run(p, [(float(t), seen(10, ttft=rates(10.0 + 0.1 * t, at_s=t))) for t in range(0, 600, 6)])
    last = ramp[-1]
    assert last.forecast is not None
    # 70 req/s now and +0.1 req/s each second: 12 more expected one model start ahead (× 275 ms of work each)
    assert last.forecast == pytest.approx((70.0 + 0.1 * 120) * 0.275, rel=0.05)
    assert "22.3 replicas of work forecast in 120 s (trend over 480 s):" in last.reason
    assert last.state.slope is not None
    back, why = persisted.load(json.loads(json.dumps(persisted.dump(last.state))))
    assert why == "restored" and back is not None and back.slope is not None
    assert list(back.slope) == [pytest.approx(x) for x in last.state.slope]

    rps = [40.0 if 300 <= t < 330 else 10.0 for t in range(0, 600, 6)]
    burst = run(p, [(6.0 * i, seen(10, ttft=rates(r, at_s=6 * i))) for i, r in enumerate(rps)])
    after = burst[-1]
    assert after.state.slope is not None and after.state.slope.trend == pytest.approx(0.0, abs=1e-9)
    assert after.forecast == pytest.approx(10.0 * 0.275, rel=0.05)


def test_a_forecast_without_a_trend_window_keeps_no_robust_trend() -> None:
    p = a_policy(triggers=[slo_trigger(2000)], forecast={"historySeconds": 0})
    ds = run(p, [(float(t), seen(10, ttft=rates(10.0 + t, at_s=t))) for t in range(0, 60, 6)])
    assert ds[-1].state.slope is None and ds[-1].state.holt is not None


def test_the_state_is_a_value_and_the_decision_is_pure() -> None:
    p = a_policy(triggers=[gpu_trigger(70)])
    obs = seen(2, gpu=gpus(140, 140))
    a = decide(p, obs, None, at(0))
    b = decide(p, obs, None, at(0))
    assert a.desired == b.desired and a.state == b.state


def test_a_decision_renders_as_one_json_event_record() -> None:
    d = decide(a_policy(triggers=[gpu_trigger(70)]), seen(2, gpu=gpus(140, 140)), None, at(0))
    line = render(d)
    assert "\n" not in line
    event = json.loads(line)
    assert event == record(d)
    assert event["kind"] == "ScalingDecision"
    assert event["replicas"] == {"current": 2, "desired": 4}
    assert event["reason"] == "GPU 140% of target 70%: 2 → 4 replicas"
    assert event["rule"] == "DesiredWithinRange"
    assert event["proposals"][0]["trigger"] == "gpu"
    assert event["time"] == "2026-01-05T12:00:00Z"
    assert event["nodePools"] == []


def test_node_pool_changes_add_nodes_for_replicas_that_fit_no_node() -> None:
    pool = a_pool(gpus=8, provisioning=180)
    p = a_policy(max_replicas=40, triggers=[gpu_trigger(50)], nodePool="h100", lead={"modelStartSeconds": 60})
    full = ClusterState([template_node(pool, "n0")])
    Binpack().place(replica_pods("svc", {"nvidia.com/gpu": 1}, 8), full)  # the node holds 8 replicas
    nodes = pool_nodes(pool, [("n0", 8, 8, True, False)], {}, T0)
    view = NodeView((pool,), full, nodes, scheduled=8)
    d = decide(p, seen(8, gpu=gpus(*[100] * 8)), None, at(0), nodes=view)
    assert d.desired == 16
    assert [(c.pool, c.add) for c in d.node_pools] == [("h100", 1)]
    assert d.node_pools[0].ready_in_s == 240
    assert record(d)["nodePools"][0]["add"] == 1


def test_nodes_are_planned_for_min_replicas_even_when_the_metric_wants_fewer() -> None:
    pool = a_pool(gpus=4)
    p = a_policy(
        min_replicas=2,
        max_replicas=2,
        triggers=[gpu_trigger(50)],
        nodePool="h100",
        podRequests={"nvidia.com/gpu": 4, "cpu": "8", "memory": "64Gi"},
    )
    full = ClusterState([template_node(pool, "n0")])
    Binpack().place(replica_pods("svc", {"nvidia.com/gpu": 4}, 1), full)  # one replica holds the node
    nodes = pool_nodes(pool, [("n0", 4, 4, True, False)], {}, T0)
    d = decide(p, seen(2, gpu=gpus(10)), None, at(0), nodes=NodeView((pool,), full, nodes, scheduled=1))
    assert (d.desired, d.rule) == (2, "TooFewReplicas")
    assert [(c.pool, c.add) for c in d.node_pools] == [("h100", 1)]


def test_node_pool_changes_remove_only_empty_nodes_idle_for_the_pools_period() -> None:
    pool = a_pool(gpus=8, idle=600)
    p = a_policy(triggers=[gpu_trigger(50)], nodePool="h100")
    state = ClusterState([template_node(pool, "n0"), template_node(pool, "n1")])
    rows = [("n0", 8, 2, True, False), ("n1", 8, 0, True, False)]
    first = pool_nodes(pool, rows, {}, T0)
    later = pool_nodes(pool, rows, {n.name: n for n in first}, T0 + 600)
    early = decide(p, seen(2, gpu=gpus(50, 50)), None, at(300), nodes=NodeView((pool,), state, later, 2))
    late = decide(
        p, seen(2, gpu=gpus(50, 50, at_s=600)), None, at(600), nodes=NodeView((pool,), state, later, 2)
    )
    assert early.node_pools == ()
    assert [c.remove for c in late.node_pools] == [("n1",)]


@pytest.mark.parametrize(
    ("current", "gpu", "desired", "rule"),
    [
        pytest.param(1, 10, 3, "TooFewReplicas", id="below-min-with-idle-gpus"),
        pytest.param(1, 95, 3, "TooFewReplicas", id="below-min-when-metrics-want-two"),
        pytest.param(25, 95, 20, "TooManyReplicas", id="above-max-when-metrics-want-more"),
        pytest.param(25, 10, 20, "TooManyReplicas", id="above-max-goes-to-max-first"),
    ],
)
def test_replicas_outside_the_bounds_go_straight_to_the_bound(
    current: int, gpu: float, desired: int, rule: str
) -> None:
    d = decide(a_policy(min_replicas=3, max_replicas=20), seen(current, gpu=gpus(gpu)), None, at(0))
    assert (d.desired, d.rule) == (desired, rule)
    assert f"{current} → {desired} replicas" in str(d.reason)


def test_a_schedule_floor_below_min_replicas_still_scales_to_min_replicas() -> None:
    window = {"cron": "0 0 * * *", "durationSeconds": 86400, "replicas": 1}
    policy = a_policy(min_replicas=3, triggers=[{"type": "Schedule", "name": "s", "windows": [window]}])
    d = decide(policy, seen(1), None, at(0))
    assert (d.desired, d.rule) == (3, "TooFewReplicas")
    assert "minReplicas is 3" in str(d.reason)
