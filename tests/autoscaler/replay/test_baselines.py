"""The baselines pinned to their documented rules (../shared/reference/autoscaling.md §1 HPA, §2 KEDA,
§3 Knative KPA, §4.1 Cluster Autoscaler)."""

import pytest

from autoscaler.core.behavior import History, resolve
from autoscaler.replay.baselines import default_registry
from autoscaler.replay.baselines.cluster_autoscaler import ClusterAutoscaler, NodeUse
from autoscaler.replay.baselines.hpa import (
    SYNC_PERIOD_S,
    TOLERANCE,
    ExternalMetric,
    Hpa,
    HpaSpec,
    MetricError,
    PodsMetric,
    external_replicas,
    pods_metric_replicas,
)
from autoscaler.replay.baselines.keda import COOLDOWN_S, POLLING_INTERVAL_S, ScaledObject, Scaler
from autoscaler.replay.baselines.kpa import Kpa
from autoscaler.replay.environment import PodInfo
from jobs.snapshot import ClusterState
from tests.autoscaler.autoscaler_builders import FakeView, a_policy, a_pool, gpu_trigger, queue_trigger


def running(n: int, ready: int | None = None) -> list[PodInfo]:
    ready = n if ready is None else ready
    return [PodInfo(f"p{i}", "Running", i < ready, 0.0) for i in range(n)]


# --- HPA ---------------------------------------------------------------------------------------------------


def test_hpa_defaults_are_a_15_s_sync_and_a_10_percent_tolerance() -> None:
    assert (SYNC_PERIOD_S, TOLERANCE) == (15.0, 0.1)


@pytest.mark.parametrize(
    ("values", "pods", "current", "want"),
    [
        ({"p0": 1.4, "p1": 1.4}, running(2), 2, 4),
        ({"p0": 0.75, "p1": 0.75}, running(2), 2, 2),  # ratio 1.07: within tolerance
        ({"p0": 0.35, "p1": 0.35}, running(2), 2, 1),
        # a missing pod counts as at target when scaling down: (0.2 + 0.2 + 0.7)/3 → ceil(0.52 × 3) = 2
        ({"p0": 0.2, "p1": 0.2}, running(3), 3, 2),
        # a missing pod counts as 0 when scaling up: (1.4 + 1.4 + 0)/3 = 0.93 → ratio 1.33 → ceil(4.0) = 4
        ({"p0": 1.4, "p1": 1.4}, running(3), 3, 4),
        # an unready (Pending) pod counts as 0 only when scaling up
        ({"p0": 2.1}, [PodInfo("p0", "Running", True, 0.0), PodInfo("p1", "Pending", False, None)], 2, 3),
    ],
    ids=["over", "tolerance", "under", "missing down", "missing up", "pending up"],
)
def test_hpa_pods_metric_groups_pods_and_fills_in_missing_and_unready_ones(
    values: dict[str, float], pods: list[PodInfo], current: int, want: int
) -> None:
    assert pods_metric_replicas(current, pods, values, 0.7, TOLERANCE) == want


def test_hpa_pods_metric_without_any_sample_is_an_error() -> None:
    with pytest.raises(MetricError):
        pods_metric_replicas(2, running(2), {}, 0.7, TOLERANCE)


@pytest.mark.parametrize(
    ("value", "target_type", "current", "status", "ready", "want"),
    [
        (95.0, "AverageValue", 10, 10, 10, 10),  # 0.95: within tolerance of status
        (250.0, "AverageValue", 2, 2, 2, 25),
        (30.0, "AverageValue", 0, 0, 0, 3),
        (200.0, "Value", 2, 2, 2, 4),
        (200.0, "Value", 0, 0, 0, 2),  # from zero: ceil(ratio)
    ],
    ids=["average within", "average", "average from zero", "value", "value from zero"],
)
def test_hpa_external_metrics_value_and_average_value(
    value: float, target_type: str, current: int, status: int, ready: int, want: int
) -> None:
    assert (
        external_replicas(
            value, 10.0 if target_type == "AverageValue" else 100.0, target_type, current, status, ready, 0.1
        )
        == want
    )


# Cases from kubernetes `pkg/controller/podautoscaler/replica_calculator_test.go`, ids are the upstream tests.
# Levels are milli-values upstream (20000 → 20.0 here); Pods-metric cases run `calcPlainMetricReplicas`,
# where readiness only matters for CPU. CPU `Utilization` cases with equal requests (…NoChangeEq/Gt/Lt,
# …MissingMetrics) are the same arithmetic as a Pods metric in the request's unit (100 % of 1.0 = 1.0).


def pods_with(
    values: list[float | None], ready: list[bool] | None = None
) -> tuple[list[PodInfo], dict[str, float]]:
    """Running pods p0…pN; a None value is a pod the metrics API returned nothing for."""
    ready = ready or [True] * len(values)
    pods = [PodInfo(f"p{i}", "Running", r, 0.0) for i, r in enumerate(ready)]
    return pods, {f"p{i}": v for i, v in enumerate(values) if v is not None}


@pytest.mark.parametrize(
    ("current", "values", "ready", "target", "want"),
    [
        (3, [20.0, 10.0, 30.0], None, 15.0, 4),
        (3, [50.0, 10.0, 30.0], [True, True, False], 15.0, 6),
        (3, [50.0, 15.0, 30.0], [False, True, False], 15.0, 7),
        (5, [12.0] * 5, None, 20.0, 3),
        (3, [20.0, 21.0, 21.0], None, 20.0, 3),
        # ratio exactly 1.0 with pods missing: nothing is filled in and the count holds
        (5, [20.0, 19.0, 21.0, None, None], None, 20.0, 5),
        (2, [10.0, 10.0, None], None, 17.0, 2),
        (2, [1.0, None], None, 1.0, 2),
        (2, [1.9, None], None, 1.0, 2),
        (2, [0.6, None], None, 1.0, 2),
        (4, [0.4, 0.095, None, None], None, 1.0, 3),
    ],
    ids=[
        "TestReplicaCalcScaleUpCM",
        "TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale",
        "TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown",
        "TestReplicaCalcScaleDownCM",
        "TestReplicaCalcToleranceCM",
        "TestPlainMetricReplicaCalcMissingMetricsNoChangeEq",
        "TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM",
        "TestReplicaCalcMissingMetricsNoChangeEq",
        "TestReplicaCalcMissingMetricsNoChangeGt",
        "TestReplicaCalcMissingMetricsNoChangeLt",
        "TestReplicaCalcMissingMetrics",
    ],
)
def test_hpa_pods_metric_as_upstream_replica_calculator_tests(
    current: int, values: list[float | None], ready: list[bool] | None, target: float, want: int
) -> None:
    pods, got = pods_with(values, ready)
    assert pods_metric_replicas(current, pods, got, target, TOLERANCE) == want


@pytest.mark.parametrize(
    ("value", "target", "target_type", "current", "ready", "want"),
    [
        (8.6, 4.4, "Value", 3, 1, 2),  # ceil(ratio × ready pods): the unready ones do not count
        (8.6, 14.334, "Value", 5, 5, 3),
        (8.6, 8.888, "Value", 3, 3, 3),
        (8.6, 2.15, "AverageValue", 3, 3, 4),
        (8.6, 2.867, "AverageValue", 5, 5, 3),
        (8.6, 2.9, "AverageValue", 3, 3, 3),
    ],
    ids=[
        "TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods",
        "TestReplicaCalcScaleDownCMExternal",
        "TestReplicaCalcToleranceCMExternal",
        "TestReplicaCalcScaleUpPerPodCMExternal",
        "TestReplicaCalcScaleDownPerPodCMExternal",
        "TestReplicaCalcTolerancePerPodCMExternal",
    ],
)
def test_hpa_external_metric_as_upstream_replica_calculator_tests(
    value: float, target: float, target_type: str, current: int, ready: int, want: int
) -> None:
    assert external_replicas(value, target, target_type, current, current, ready, TOLERANCE) == want


def a_hpa(behavior: bool = True, min_r: int = 1, max_r: int = 100) -> Hpa:
    return Hpa(
        HpaSpec(
            min_r,
            max_r,
            (PodsMetric("gpu", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.7),),
            resolve(None) if behavior else None,
        )
    )


def test_hpa_syncs_every_15_s_and_scales_up_by_the_default_policies() -> None:
    hpa = a_hpa()
    v = FakeView(replicas=2, gpu=1.0, now=0.0)
    assert hpa.step(v) == 3  # ceil(2 × 1.0/0.7) = 3, and 2 → 6 is allowed
    v.replicas = 3
    v._now = 14.0
    assert hpa.step(v) is None  # not a sync
    v._now = 15.0
    v.gpu = 2.8
    assert hpa.step(v) == 7  # 3 → 12 wanted; +4 pods (3+4=7) vs +100 % (6): 7


def test_hpa_waits_five_minutes_of_lower_recommendations_before_scaling_down() -> None:
    hpa = a_hpa()
    v = FakeView(replicas=8, gpu=0.7)
    hpa.step(v)
    v.gpu = 0.1
    for t in range(15, 300, 15):
        v._now = float(t)
        assert hpa.step(v) == 8
    v._now = 300.0
    assert hpa.step(v) == 2


# kubernetes `horizontal_test.go` TestScaleDown / TestScaleDownStabilizeInitialSize (legacy path, min 2,
# max 6, 5 pods averaging 280m against 500m → 3): with `recommendations` already set (empty) the HPA scales
# down at once; on its first sync (nil) `recordInitialRecommendation` stores the current 5, held for the
# stabilization window.
@pytest.mark.parametrize(
    ("behavior", "preset", "held_until", "then"),
    [(False, True, None, 0.0), (False, False, 300.0, 315.0), (True, False, 285.0, 300.0)],
    ids=["TestScaleDown", "TestScaleDownStabilizeInitialSize", "TestScaleDownStabilizeInitialSize behavior"],
)
def test_hpa_first_sync_records_the_current_count_as_a_recommendation(
    behavior: bool, preset: bool, held_until: float | None, then: float
) -> None:
    hpa = Hpa(HpaSpec(2, 6, (PodsMetric("m", "m", 0.5),), resolve(None) if behavior else None))
    if preset:
        hpa.history = History()  # recommendations: []timestampedRecommendation{}, not nil
    v = FakeView(replicas=5, gpu=0.28)
    if held_until is not None:
        assert hpa.sync(v).desired == 5
        v._now = held_until  # legacy: a recommendation exactly 300 s old still counts; behavior: it does not
        assert hpa.sync(v).desired == 5
    v._now = then
    assert hpa.sync(v).desired == 3


def test_hpa_does_nothing_at_zero_replicas_when_min_replicas_is_not_zero() -> None:
    r = a_hpa().sync(FakeView(replicas=0, gpu=1.0))
    assert (r.desired, r.rule) == (0, "ScalingDisabled")


def test_hpa_never_scales_down_on_partial_metrics() -> None:
    spec = HpaSpec(1, 20, (PodsMetric("gpu", "m", 0.7), ExternalMetric("q", "queue", 10.0)), resolve(None))
    r = Hpa(spec).sync(FakeView(replicas=8, gpu=0.1))  # the queue query returns nothing
    assert (r.desired, r.rule) == (8, "FailedGetMetrics")


def test_the_hpa_baseline_takes_the_policys_gpu_and_queue_signals_and_min_one() -> None:
    hpa = default_registry().build(
        "hpa", a_policy(0, 30, [queue_trigger(5), gpu_trigger(60)], scaleToZero={})
    )
    assert isinstance(hpa, Hpa)
    assert hpa.spec.min_replicas == 1
    assert {type(m).__name__ for m in hpa.spec.metrics} == {"ExternalMetric", "PodsMetric"}
    assert hpa.spec.behavior is not None and hpa.spec.behavior.up.policies == resolve(None).up.policies


# --- KEDA --------------------------------------------------------------------------------------------------


def a_scaled_object(min_r: int = 0) -> ScaledObject:
    return ScaledObject((Scaler("queue", "queue", 10.0, 0.0),), min_r, 50)


def test_keda_defaults_are_a_30_s_poll_and_a_300_s_cooldown() -> None:
    assert (POLLING_INTERVAL_S, COOLDOWN_S) == (30.0, 300.0)


def test_keda_activates_from_zero_on_its_poll_when_a_value_is_above_activation() -> None:
    so = a_scaled_object()
    v = FakeView(replicas=0, queries={"queue": 0.0})
    assert so.step(v) is None  # 0 is not > 0
    v.queries["queue"] = 3.0
    v._now = 10.0
    assert so.step(v) is None  # between polls the operator waits
    v._now = 30.0
    assert so.step(v) == 1


def test_keda_scales_to_zero_after_the_cooldown_and_reads_an_empty_result_as_zero() -> None:
    so = a_scaled_object()
    v = FakeView(replicas=1, queries={"queue": 5.0})
    so.step(v)
    del v.queries["queue"]  # the series is gone: ignoreNullValues reads 0
    outcomes = {}
    for t in range(30, 301, 30):
        v._now = float(t)
        outcomes[t] = so.operator(v)
    assert all(outcomes[t] is None for t in range(30, 300, 30))
    assert outcomes[300] == 0  # 300 s after the last active poll


# kedacore/keda `pkg/scaling/executor/scale_scaledobjects_test.go`, one `RequestScale` on a fresh ScaledObject
# (no lastActiveTime, default initialCooldownPeriod 0); ids are the upstream tests.
@pytest.mark.parametrize(
    ("min_r", "replicas", "queue", "want", "stamped"),
    [
        (0, 10, 0.0, 0, False),
        (5, 1, 0.0, 5, False),
        (0, 0, 3.0, 1, True),
        (0, 0, 0.0, None, False),
        (2, 4, 3.0, None, True),
    ],
    ids=[
        "TestScaleToMinReplicasWhenNotActive",
        "TestScaleToMinReplicasFromLowerInitialReplicaCount",
        "TestScaleFromMinReplicasWhenActive",
        "RequestScale inactive at 0: no change",
        "RequestScale active above 0: lastActiveTime only",
    ],
)
def test_keda_operator_as_upstream_scale_executor_tests(
    min_r: int, replicas: int, queue: float, want: int | None, stamped: bool
) -> None:
    so = a_scaled_object(min_r)
    v = FakeView(replicas=replicas, queries={"queue": queue}, now=5.0)
    assert so.operator(v) == want
    assert (so.last_active == 5.0) if stamped else so.last_active is None


def test_keda_never_active_waits_out_the_initial_cooldown_from_creation() -> None:
    # `scaleToZeroOrIdle`: never active, scale in once creationTimestamp + initialCooldownPeriod has passed
    so = ScaledObject((Scaler("queue", "queue", 10.0),), 0, 50, initial_cooldown_s=120.0)
    v = FakeView(replicas=3, queries={"queue": 0.0})
    got = {}
    for t in range(0, 151, 30):
        v._now = float(t)
        got[t] = so.operator(v)
    assert got == {0: None, 30: None, 60: None, 90: None, 120: 0, 150: 0}


def test_keda_idle_start_goes_to_zero_on_the_first_poll() -> None:
    so = a_scaled_object()
    assert so.step(FakeView(replicas=1, now=0.0)) == 0  # the queue series is empty: ignoreNullValues reads 0


def test_keda_hands_one_to_n_to_an_hpa_without_behavior() -> None:
    so = a_scaled_object(min_r=0)
    assert so.hpa.spec.min_replicas == 1 and so.hpa.spec.behavior is None
    v = FakeView(replicas=1, queries={"queue": 100.0}, now=0.0)
    assert so.step(v) == 4  # legacy cap: max(2 × 1, 4)


# --- KPA ---------------------------------------------------------------------------------------------------


def test_kpa_targets_70_percent_of_container_concurrency() -> None:
    assert Kpa(0, 10, container_concurrency=16).target == pytest.approx(11.2)


def test_kpa_panics_at_twice_the_ready_capacity_and_does_not_scale_down_while_panicking() -> None:
    kpa = Kpa(0, 100, container_concurrency=10)  # target 7 per pod
    assert kpa.scale(0.0, 2, stable=10.0, panic=70.0) == 10  # dppc 10 / 2 ready ≥ 2: panic
    assert kpa.panic_time == 0.0
    assert kpa.scale(2.0, 2, stable=10.0, panic=7.0) == 10  # still panicking: no scale-down
    assert kpa.scale(63.0, 10, stable=7.0, panic=7.0) == 5  # a stable window later: out; floor(10/2) = 5


def test_kpa_scales_down_by_at_most_half_per_tick() -> None:
    kpa = Kpa(0, 100, container_concurrency=10)
    assert kpa.scale(0.0, 16, stable=0.0, panic=0.0) == 8


def test_kpa_scales_to_zero_only_after_the_grace_period() -> None:
    kpa = Kpa(0, 10, container_concurrency=10)
    v = FakeView(replicas=1, ready=1)
    got = []
    for t in range(0, 40, 2):
        v._now = float(t)
        got.append(kpa.step(v))
    assert got.index(0) == 15  # 30 s of wanting zero (ticks every 2 s)


# --- Cluster Autoscaler ------------------------------------------------------------------------------------


def test_cluster_autoscaler_adds_nodes_for_unschedulable_pods_on_its_scan() -> None:
    ca = ClusterAutoscaler(a_pool(gpus=8), {"nvidia.com/gpu": 1})
    got = ca.step(0.0, [NodeUse("n0", 8, 8, True)], 10, ClusterState([]), 1)
    assert got is not None and got.add == 2
    assert ca.step(5.0, [], 10, ClusterState([]), 1) is None  # next scan at 10 s


def test_cluster_autoscaler_removes_an_empty_node_after_ten_minutes_unneeded() -> None:
    ca = ClusterAutoscaler(a_pool(gpus=8), {"nvidia.com/gpu": 1})
    nodes = [NodeUse("n0", 8, 8, True), NodeUse("n1", 8, 0, True)]
    for t in range(0, 600, 10):
        assert ca.step(float(t), nodes, 0, ClusterState([]), 1) is None
    got = ca.step(600.0, nodes, 0, ClusterState([]), 1)
    assert got is not None and got.remove == ("n1",)
