"""The controller's metrics as Prometheus renders them: decisions, scale events, replicas, fallback,
readiness, leadership and latencies, fed from real decisions of the decision core."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import REGISTRY

from autoscaler.controller.ports import ActFailure, ScalingEvent
from autoscaler.controller.sinks.metrics import ControllerMetrics, MetricsEventSink
from autoscaler.core.decide import Decision, PolicyState
from autoscaler.core.events import record
from tests.autoscaler.autoscaler_builders import NOW, a_policy, at, decide, gpus, seen


def samples(m: ControllerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def event(d: Decision, acted: bool = True, **extra: str) -> ScalingEvent:
    return ScalingEvent(d, record(d), acted, ("apps/v1", "Deployment", "ml", "svc"), extra)


def scale_up() -> Decision:
    return decide(a_policy(), seen(2, gpu=gpus(140, 140)), None, NOW)


def test_a_scale_up_counts_a_decision_and_an_up_event_and_sets_the_replica_gauges() -> None:
    m = ControllerMetrics()
    MetricsEventSink(m).emit(event(scale_up()))
    got = samples(m)
    assert got[("tidescale_decisions_total", (("policy", "ml/svc"), ("rule", "DesiredWithinRange")))] == 1
    assert got[("tidescale_scale_events_total", (("direction", "up"), ("policy", "ml/svc")))] == 1
    assert got[("tidescale_desired_replicas", (("policy", "ml/svc"),))] == 4
    assert got[("tidescale_current_replicas", (("policy", "ml/svc"),))] == 4
    assert got[("tidescale_fallback_active", (("policy", "ml/svc"),))] == 0


def test_a_decision_not_acted_on_is_counted_but_is_no_scale_event() -> None:
    m = ControllerMetrics()
    MetricsEventSink(m).emit(event(scale_up(), acted=False))
    got = samples(m)
    assert got[("tidescale_decisions_total", (("policy", "ml/svc"), ("rule", "DesiredWithinRange")))] == 1
    assert ("tidescale_scale_events_total", (("direction", "up"), ("policy", "ml/svc"))) not in got
    assert got[("tidescale_current_replicas", (("policy", "ml/svc"),))] == 2


def test_failing_metrics_past_the_threshold_set_the_fallback_gauge() -> None:
    policy = a_policy(fallback={"failureThreshold": 2, "replicas": 5})
    state: PolicyState | None = None
    m = ControllerMetrics()
    sink = MetricsEventSink(m)
    for i in range(3):
        d = decide(policy, seen(2), state, at(i * 15))
        state = d.state
        sink.emit(event(d))
    assert d.rule == "Fallback"
    got = samples(m)
    assert got[("tidescale_fallback_active", (("policy", "ml/svc"),))] == 1
    assert got[("tidescale_decisions_total", (("policy", "ml/svc"), ("rule", "MetricsUnavailable")))] == 2
    assert got[("tidescale_decisions_total", (("policy", "ml/svc"), ("rule", "Fallback")))] == 1
    assert got[("tidescale_desired_replicas", (("policy", "ml/svc"),))] == 5


def test_readiness_leadership_and_metric_errors_are_rendered() -> None:
    m = ControllerMetrics()
    m.set_ready("ml/a", True)
    m.set_ready("ml/b", False)
    m.set_leader(True)
    m.metric_error("prometheus")
    m.metric_error("prometheus")
    m.metric_error("kafka")
    got = samples(m)
    assert got[("tidescale_policy_ready", (("policy", "ml/a"),))] == 1
    assert got[("tidescale_policy_ready", (("policy", "ml/b"),))] == 0
    assert got[("tidescale_is_leader", ())] == 1
    assert got[("tidescale_metric_errors_total", (("source", "prometheus"),))] == 2
    assert got[("tidescale_metric_errors_total", (("source", "kafka"),))] == 1


def test_latencies_are_histograms_and_a_reaction_comes_from_the_event() -> None:
    m = ControllerMetrics()
    m.observe_reconcile(0.2)
    MetricsEventSink(m).emit(event(scale_up(), reactionSeconds="0.4"))
    got = samples(m)
    assert got[("tidescale_reconcile_seconds_count", ())] == 1
    assert got[("tidescale_reconcile_seconds_bucket", (("le", "0.25"),))] == 1
    assert got[("tidescale_reconcile_seconds_bucket", (("le", "0.1"),))] == 0
    assert got[("tidescale_reaction_seconds_count", ())] == 1
    assert got[("tidescale_reaction_seconds_sum", ())] == 0.4
    assert got[("tidescale_reaction_seconds_bucket", (("le", "0.5"),))] == 1


def test_a_forgotten_policy_disappears_from_the_exposition() -> None:
    m = ControllerMetrics()
    MetricsEventSink(m).emit(event(scale_up()))
    m.set_ready("ml/svc", True)
    m.forget("ml/svc")
    assert not [k for k in samples(m) if ("policy", "ml/svc") in k[1]]


def test_two_controllers_in_one_process_keep_separate_registries_off_the_global_one() -> None:
    a, b = ControllerMetrics(), ControllerMetrics()
    a.set_leader(True)
    assert samples(a)[("tidescale_is_leader", ())] == 1
    assert samples(b)[("tidescale_is_leader", ())] == 0
    assert REGISTRY.get_sample_value("tidescale_is_leader") is None


def test_failed_act_steps_are_counted_by_kind_and_a_decision_not_applied_is_not_counted_as_one() -> None:
    m = ControllerMetrics()
    m.scale_failure("Conflict", 4)
    m.scale_failure("Permanent")
    d = scale_up()
    refused = ActFailure("ScaleFailed", "Deployment/svc in ml: scaling to 4: HTTP 403 forbidden", "Permanent")
    MetricsEventSink(m).emit(
        ScalingEvent(d, record(d), False, ("apps/v1", "Deployment", "ml", "svc"), failure=refused)
    )
    got = samples(m)
    assert got[("tidescale_scale_failures_total", (("reason", "Conflict"),))] == 4
    assert got[("tidescale_scale_failures_total", (("reason", "Permanent"),))] == 1
    assert ("tidescale_decisions_total", (("policy", "ml/svc"), ("rule", "DesiredWithinRange"))) not in got
    assert ("tidescale_desired_replicas", (("policy", "ml/svc"),)) not in got


def told(
    d: Decision, condition: str | None, failure: ActFailure | None, recovery: ActFailure | None
) -> ScalingEvent:
    """The event the loop sends when a misconfiguration starts (`failure`) or clears (`recovery`)."""
    rec = dict(record(d)) | ({"condition": condition} if condition else {})
    return ScalingEvent(
        d, rec, False, ("tidescale.io/v1alpha1", "ScalingPolicy", "ml", "svc"), {}, failure, recovery
    )


def problems(m: ControllerMetrics) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (name, labels), v in samples(m).items() if name == "tidescale_policy_problem"}


def test_a_misconfiguration_is_a_problem_series_until_it_clears_and_a_new_reason_replaces_the_old() -> None:
    m = ControllerMetrics()
    sink = MetricsEventSink(m)
    d = scale_up()
    sink.emit(told(d, "PodsScheduled", ActFailure("PodsPending", "2 of 4 replicas …", "Misconfigured"), None))
    sink.emit(told(d, "MetricsAvailable", ActFailure("MetricsUnavailable", "gpu …", "Misconfigured"), None))
    pending = (("condition", "PodsScheduled"), ("policy", "ml/svc"), ("reason", "PodsPending"))
    unavailable = (("condition", "MetricsAvailable"), ("policy", "ml/svc"), ("reason", "MetricsUnavailable"))
    assert problems(m) == {pending: 1, unavailable: 1}

    sink.emit(told(d, "PodsScheduled", ActFailure("NodePoolAtMax", "NodePool h100 …", "Misconfigured"), None))
    at_max = (("condition", "PodsScheduled"), ("policy", "ml/svc"), ("reason", "NodePoolAtMax"))
    assert problems(m) == {at_max: 1, unavailable: 1}

    sink.emit(told(d, "MetricsAvailable", None, ActFailure("MetricsAvailable", "every …", "Recovered")))
    assert problems(m) == {at_max: 1}
    m.forget("ml/svc")
    assert problems(m) == {}


def test_an_act_steps_failure_or_recovery_is_no_problem_series() -> None:
    m = ControllerMetrics()
    sink = MetricsEventSink(m)
    d = scale_up()
    sink.emit(told(d, None, ActFailure("ScaleFailed", "HTTP 403 forbidden", "Permanent"), None))
    sink.emit(told(d, None, None, ActFailure("TargetFound", "the target exists again", "Recovered")))
    assert problems(m) == {}
    assert sink.errors == 0


def test_every_kind_of_failed_act_step_is_exported_at_zero_from_the_start() -> None:
    got = samples(ControllerMetrics())
    kinds = {
        dict(labels)["reason"]: v
        for (name, labels), v in got.items()
        if name == "tidescale_scale_failures_total"
    }
    assert kinds == dict.fromkeys(
        ("NotFound", "Conflict", "Temporary", "Permanent", "Unexpected", "DeletionCost"), 0
    )
