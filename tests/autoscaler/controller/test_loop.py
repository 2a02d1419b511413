"""The reconcile loop's decisions with recording fakes of its roles (the real Kubernetes, Prometheus and
Kafka paths are in the end-to-end tests): what it reads, when it decides, what it patches, what it records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest

from autoscaler.controller.kube.selectors import Selector
from autoscaler.controller.loop import Controller, ControllerConfig
from autoscaler.controller.ports import MetricRequest, ReadingKey, ScaleView, ScalingEvent
from autoscaler.core.deletion_cost import PlacedPod
from autoscaler.core.triggers import Reading, TriggerRegistry
from kernel.clock import FakeClock
from kernel.errors import Conflict, NotFound, PermanentError, TemporaryError
from tests.autoscaler.autoscaler_builders import NOW, TRIGGERS, gpu_trigger, policy_doc

pytestmark = pytest.mark.filterwarnings("ignore")


@dataclass
class FakeTargets:
    """Views by "namespace/name"; a view's pods are `<name>-<i>`, the first `ready` of them bound to a node
    (`nodes`: pod → node, else "node-0"). Records the deletion costs set; `refuse_costs`: pods whose
    annotation fails with the given error."""

    views: dict[str, ScaleView] = field(default_factory=dict)
    unbound_in_watch: int = 0  # bound pods whose binding the pod watch has not told yet
    fresh_reads: int = 0
    nodes: dict[str, str] = field(default_factory=dict)
    costs: dict[str, int] = field(default_factory=dict)  # the annotations the pods carry
    cost_calls: list[tuple[str, int]] = field(default_factory=list)
    refuse_costs: dict[str, Exception] = field(default_factory=dict)
    journal: list[str] = field(default_factory=list)  # cost writes and /scale attempts, in order

    def view(self, namespace: str, api_version: str, kind: str, name: str) -> ScaleView:
        view = self.views.get(f"{namespace}/{name}")
        if view is None:
            raise NotFound(f"{kind}/{name} in {namespace}: reading /scale: HTTP 404 not found")
        return view

    def pods(self, namespace: str, selector: Selector, fresh: bool = False) -> list[PlacedPod]:
        view = next(
            v for v in self.views.values() if v.namespace == namespace and v.selector == selector.text
        )
        self.fresh_reads += fresh
        bound = view.ready if fresh else max(0, view.ready - self.unbound_in_watch)
        names = [f"{view.name}-{i}" for i in range(view.replicas)]
        return [
            PlacedPod(n, self.nodes.get(n, "node-0") if i < bound else None, self.costs.get(n))
            for i, n in enumerate(names)
        ]

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        self.cost_calls.append((pod, cost))
        self.journal.append(f"cost {pod}={cost}")
        if pod in self.refuse_costs:
            raise self.refuse_costs[pod]
        self.costs[pod] = cost


@dataclass
class FakeScaler:
    """Patches the fake views; records every attempt and every patch made. Told to fail: always for a target
    (`refuse`, by "namespace/name"), or on the next calls (`fail_next`, one error per call)."""

    targets: FakeTargets
    calls: list[tuple[str, int]] = field(default_factory=list)
    attempts: list[tuple[str, int]] = field(default_factory=list)
    refuse: dict[str, Exception] = field(default_factory=dict)
    fail_next: list[Exception] = field(default_factory=list)

    def read(self, namespace: str, api_version: str, kind: str, name: str) -> ScaleView:
        return self.targets.view(namespace, api_version, kind, name)

    def scale(self, view: ScaleView, replicas: int) -> ScaleView:
        key = f"{view.namespace}/{view.name}"
        self.attempts.append((key, replicas))
        self.targets.journal.append(f"scale {replicas}")
        if key in self.refuse:
            raise self.refuse[key]
        if self.fail_next:
            raise self.fail_next.pop(0)
        self.calls.append((f"{view.namespace}/{view.name}", replicas))
        new = replace(view, replicas=replicas, ready=replicas)
        self.targets.views[f"{view.namespace}/{view.name}"] = new
        return new


@dataclass
class FakeMetrics:
    """Readings by trigger name for every policy; records each batch it was asked for."""

    values: dict[str, Reading] = field(default_factory=dict)
    batches: list[list[MetricRequest]] = field(default_factory=list)

    def __call__(self, requests: Sequence[MetricRequest], now: float) -> Mapping[ReadingKey, Reading]:
        self.batches.append(list(requests))
        out = {}
        for r in requests:
            reading = self.values.get(r.trigger)
            if reading is not None:
                out[(r.policy, r.trigger)] = replace(reading, at=now) if reading.at is None else reading
        return out


@dataclass
class FakeSink:
    events: list[ScalingEvent] = field(default_factory=list)

    def emit(self, event: ScalingEvent) -> None:
        self.events.append(event)


@dataclass
class FakeStatus:
    written: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def write(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.written[f"{namespace}/{name}"] = status


def a_policy_object(name: str = "svc", **spec: Any) -> dict[str, Any]:
    doc = policy_doc(name=name, **spec)
    doc["metadata"]["generation"] = 1
    return doc


def a_view(name: str = "svc", replicas: int = 2) -> ScaleView:
    return ScaleView("ml", "Deployment", name, replicas, replicas, f"app={name}")


@dataclass
class World:
    clock: FakeClock
    targets: FakeTargets
    scaler: FakeScaler
    metrics: FakeMetrics
    sink: FakeSink
    status: FakeStatus
    controller: Controller

    def step(self, seconds: float = 0.0, full: bool | None = None) -> Any:
        self.clock.advance(seconds)
        report = self.controller.reconcile_once(full=full)
        self.controller.flush_status()
        return report

    def conditions(self, key: str) -> dict[str, Mapping[str, Any]]:
        return {str(c["type"]): c for c in self.status.written[key]["conditions"]}


@pytest.fixture
def world() -> World:
    clock = FakeClock(NOW)
    targets = FakeTargets({"ml/svc": a_view()})
    scaler = FakeScaler(targets)
    metrics = FakeMetrics()
    sink, status = FakeSink(), FakeStatus()
    controller = Controller(
        targets, scaler, metrics, [sink], status, config=ControllerConfig(), clock=clock, registry=TRIGGERS
    )
    return World(clock, targets, scaler, metrics, sink, status, controller)


def test_a_gpu_reading_over_target_scales_the_target_through_scale_and_says_why(world: World) -> None:
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4, 1.4))
    world.controller.upsert(a_policy_object(triggers=[gpu_trigger(70)]))
    world.step()
    assert world.scaler.calls == [("ml/svc", 4)]
    [event] = world.sink.events
    assert event.acted and event.record["replicas"] == {"current": 2, "desired": 4}
    assert "2 → 4 replicas" in event.record["reason"]
    status = world.status.written["ml/svc"]
    assert status["desiredReplicas"] == 4 and "lastScaleTime" in status
    assert world.conditions("ml/svc")["Ready"]["status"] == "True"


def test_an_invalid_policy_is_not_ready_with_the_field_and_the_others_keep_working(world: World) -> None:
    world.targets.views["ml/other"] = a_view("other")
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4, 1.4))
    bad = a_policy_object("svc")
    del bad["spec"]["maxReplicas"]
    world.controller.upsert(bad)
    world.controller.upsert(a_policy_object("other", triggers=[gpu_trigger(70)]))
    world.step()
    ready = world.conditions("ml/svc")["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "maxReplicas" in str(ready["message"])
    assert world.scaler.calls == [("ml/other", 4)]


def test_a_trigger_type_the_controller_was_not_given_is_not_ready_and_names_the_known_ones(
    world: World,
) -> None:
    only_gpu = TriggerRegistry()
    only_gpu.register(TRIGGERS.get("GPUUtilization"))
    controller = Controller(
        world.targets,
        world.scaler,
        world.metrics,
        [world.sink],
        world.status,
        clock=world.clock,
        registry=only_gpu,
    )
    lag = {"type": "KafkaLag", "name": "lag", "topic": "docs", "group": "embed", "lagPerReplica": 100}
    entry = controller.upsert(a_policy_object(triggers=[lag]))
    assert entry.policy is None and entry.compiled is None
    assert entry.error == "ml/svc: spec.triggers: no trigger type 'KafkaLag' (known: GPUUtilization)"
    controller.reconcile_once(full=True)
    assert world.scaler.calls == [] and world.metrics.batches == []


def test_a_target_that_does_not_exist_is_not_ready_and_nothing_is_patched(world: World) -> None:
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4, 1.4))
    world.controller.upsert(a_policy_object("ghost", triggers=[gpu_trigger(70)]))
    for _ in range(3):
        world.step(15, full=True)
    ready = world.conditions("ml/ghost")["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "TargetNotFound")
    assert "Deployment/ghost in ml" in str(ready["message"])
    assert world.scaler.attempts == []
    # one Warning Event for the transition, not one per sweep
    [event] = world.sink.events
    assert event.failure is not None and event.failure.reason == "TargetNotFound" and not event.acted
    assert event.record["failure"]["kind"] == "NotFound"
    # the Deployment is created: the policy is served at once on the next sweep, and says so
    world.targets.views["ml/ghost"] = a_view("ghost")
    world.step(15, full=True)
    assert world.scaler.calls == [("ml/ghost", 4)]
    assert world.conditions("ml/ghost")["Ready"]["status"] == "True"


def test_a_failing_metric_brings_the_fallback_replicas_and_a_fallback_condition_never_zero(
    world: World,
) -> None:
    world.metrics.values["gpu"] = Reading(error="Prometheus at http://127.0.0.1:1 is unreachable")
    world.controller.upsert(a_policy_object(fallback={"failureThreshold": 2, "replicas": 5}))
    for _ in range(4):
        world.step(15, full=True)
    assert world.scaler.calls == [("ml/svc", 5)]
    fallback = world.conditions("ml/svc")["Fallback"]
    assert fallback["status"] == "True" and "unreachable" in str(fallback["message"])
    assert any(e.record.get("fallback") for e in world.sink.events)


def test_without_fallback_a_failing_metric_keeps_the_replicas_and_says_so(world: World) -> None:
    world.metrics.values["gpu"] = Reading(error="query returned no series")
    world.controller.upsert(a_policy_object())
    for _ in range(3):
        world.step(15, full=True)
    assert world.scaler.calls == []
    [event] = world.sink.events  # the refusal is announced once, not every sweep
    assert event.record["rule"] == "MetricsUnavailable" and not event.acted


def test_a_woken_policy_is_decided_at_once_and_a_quiet_one_waits_for_its_sweep(world: World) -> None:
    world.targets.views["ml/other"] = a_view("other")
    world.metrics.values["gpu"] = Reading(per_gpu=(0.7, 0.7))
    world.controller.upsert(a_policy_object("svc"))
    world.controller.upsert(a_policy_object("other"))
    world.step(0, full=True)
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4, 1.4))
    world.metrics.batches.clear()
    world.controller.wake(["ml/svc"], "Alertmanager alert GPUHot")
    report = world.step(1)
    assert report.decided == 1
    assert [r.policy for r in world.metrics.batches[0]] == ["ml/svc"]
    assert world.scaler.calls == [("ml/svc", 4)]
    # the wake was served 1 s (fake clock) after it came: that is the reaction the metrics record
    assert world.sink.events[-1].extra["reactionSeconds"] == "1.000"


def test_kafka_lag_is_polled_every_second_between_sweeps_and_acted_on_at_once(world: World) -> None:
    lag = {"type": "KafkaLag", "name": "lag", "topic": "docs", "group": "embed", "lagPerReplica": 100}
    world.metrics.values["lag"] = Reading(200.0, series={"partitions": 12})
    world.controller.upsert(a_policy_object(triggers=[lag]))
    world.step(0, full=True)
    assert world.scaler.calls == []
    world.metrics.values["lag"] = Reading(1000.0, series={"partitions": 12})
    world.step(1)
    # 10 wanted; HPA's default scale-up policy allows +4 pods (or +100 %) per 15 s: 2 → 6
    assert world.scaler.calls == [("ml/svc", 6)]
    assert world.sink.events[-1].record["rule"] == "ScaleUpLimit"


def test_a_restarted_controller_keeps_the_scale_down_stabilization_from_the_status(world: World) -> None:
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4, 1.4))
    world.controller.upsert(a_policy_object(behavior={"scaleDown": {"stabilizationWindowSeconds": 300}}))
    world.step(0, full=True)
    assert world.scaler.calls == [("ml/svc", 4)]
    stored = dict(world.status.written["ml/svc"])
    # a new controller process, reading the policy with its status, sees low load a minute later
    fresh = Controller(
        world.targets,
        world.scaler,
        world.metrics,
        [world.sink],
        world.status,
        clock=world.clock,
        registry=TRIGGERS,
    )
    obj = a_policy_object(behavior={"scaleDown": {"stabilizationWindowSeconds": 300}})
    obj["status"] = stored
    fresh.upsert(obj)
    world.metrics.values["gpu"] = Reading(per_gpu=(0.1, 0.1, 0.1, 0.1))
    world.clock.advance(60)
    d = fresh.reconcile_once(full=True)
    assert d.decided == 1
    assert world.scaler.calls == [("ml/svc", 4)]  # still 4: the window remembers the recommendation of 4
    assert fresh.entries["ml/svc"].last is not None
    assert fresh.entries["ml/svc"].last.rule == "ScaleDownStabilized"


def test_a_conflict_on_the_patch_is_retried_at_once_after_a_second_and_the_next_success_resets(
    world: World,
) -> None:
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4, 1.4))
    world.controller.upsert(a_policy_object())
    world.scaler.fail_next = [Conflict("Deployment/svc in ml: scaling to 4: HTTP 409 conflict (4 attempts)")]
    report = world.step(0, full=True)
    assert report.errors == 0 and report.failures == {"Conflict": 1} and world.scaler.calls == []
    assert "ml/svc" not in world.status.written and world.sink.events == []  # one conflict: not reported
    world.step(1)
    assert world.scaler.calls == [("ml/svc", 4)]
    entry = world.controller.entries["ml/svc"]
    assert (entry.act_failures, entry.retry_at, entry.reported) == (0, None, None)


def test_an_unexpected_error_on_a_retry_is_logged_and_not_retried_on_every_tick(world: World) -> None:
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4, 1.4))
    world.controller.upsert(a_policy_object())
    world.scaler.fail_next = [Conflict("Deployment/svc in ml: scaling to 4: HTTP 409"), ValueError("a bug")]
    world.step(0, full=True)
    report = world.step(1)
    assert report.failures == {"Unexpected": 1} and report.errors == 1
    for _ in range(20):
        world.step(0.1)
    assert len(world.scaler.attempts) == 2  # back on its schedule: the next sweep
    world.step(13, full=True)
    assert world.scaler.calls == [("ml/svc", 4)]


def scaled_once(world: World) -> tuple[Any, str | None]:
    """svc scaled 2 → 4 at the first sweep: (its state after that scale, its lastScaleTime)."""
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4, 1.4))
    world.controller.upsert(a_policy_object())
    world.step(0, full=True)
    assert world.scaler.calls == [("ml/svc", 4)]
    entry = world.controller.entries["ml/svc"]
    return entry.state, entry.last_scale_time


def test_a_refused_patch_leaves_the_history_as_it_was_and_is_not_ready_with_a_warning_event(
    world: World,
) -> None:
    state, scaled_at = scaled_once(world)
    forbidden = PermanentError(
        'Deployment/svc in ml: scaling to 8: HTTP 403 deployments.apps "svc" is forbidden: User '
        '"system:serviceaccount:ml:tidescale" cannot update resource "deployments/scale"'
    )
    world.scaler.refuse["ml/svc"] = forbidden
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4,) * 4)  # 140 % on 4 replicas: 8 wanted
    report = world.step(15, full=True)
    assert report.failures == {"Permanent": 1}
    assert world.scaler.attempts[-1] == ("ml/svc", 8) and world.scaler.calls == [("ml/svc", 4)]
    entry = world.controller.entries["ml/svc"]
    assert entry.state is state and entry.last_scale_time == scaled_at  # no scale that did not happen
    ready = world.conditions("ml/svc")["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ScaleFailed")
    assert "forbidden" in str(ready["message"])
    status = world.status.written["ml/svc"]
    assert "lastScaleTime" not in status and "state" not in status
    assert (status["currentReplicas"], status["desiredReplicas"]) == (4, 8)
    failure = world.sink.events[-1]
    assert failure.failure is not None and failure.failure.reason == "ScaleFailed"
    assert not failure.acted and failure.record["acted"] is False
    assert not [e for e in world.sink.events if e.acted and e.record["replicas"]["desired"] == 8]
    # refused again on each sweep (RBAC may be fixed without a spec change), told once
    events = len(world.sink.events)
    world.step(15, full=True)
    assert world.scaler.attempts.count(("ml/svc", 8)) == 2 and len(world.sink.events) == events
    # the Role is fixed: the next sweep scales, records it, and the policy is Ready again
    del world.scaler.refuse["ml/svc"]
    world.step(15, full=True)
    assert world.scaler.calls[-1] == ("ml/svc", 8)
    assert entry.state is not state and entry.last_scale_time != scaled_at
    assert world.conditions("ml/svc")["Ready"]["status"] == "True"
    assert world.sink.events[-1].acted and world.sink.events[-1].failure is None


def test_failing_patches_back_off_doubling_to_the_sync_period_and_are_reported_after_the_retries(
    world: World,
) -> None:
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4, 1.4))
    world.controller.upsert(a_policy_object())
    unavailable = TemporaryError("Deployment/svc in ml: scaling to 4: HTTP 503 the server is unavailable")
    world.scaler.fail_next = [Conflict("Deployment/svc in ml: scaling to 4: HTTP 409")] * 2 + [
        unavailable
    ] * 3
    tried_at: list[int] = []
    reported_at: int | None = None
    for second in range(31):
        world.controller.wake(["ml/svc"], "an alert every second")  # wakes wait for the backoff too
        world.step(0 if second == 0 else 1)
        if len(world.scaler.attempts) > len(tried_at):
            tried_at.append(second)
        if reported_at is None and world.sink.events:
            reported_at = second
    # 1 s doubling, capped at the 15 s sync period; the 6th attempt succeeds
    assert tried_at == [0, 1, 3, 7, 15, 30]
    assert world.scaler.calls == [("ml/svc", 4)]
    # three retries are silent; the fourth failure is reported, once
    assert reported_at == 7
    failed = [e for e in world.sink.events if e.failure is not None]
    assert len(failed) == 1 and failed[0].failure is not None
    assert "HTTP 503" in failed[0].failure.message and "4 attempts failed" in failed[0].failure.message
    assert failed[0].failure.kind == "Temporary"
    # then the success: recorded as a scale, Ready again, the backoff reset
    assert world.sink.events[-1].acted
    assert world.conditions("ml/svc")["Ready"]["status"] == "True"
    entry = world.controller.entries["ml/svc"]
    assert (entry.act_failures, entry.retry_at, entry.reported) == (0, None, None)


def test_a_target_deleted_before_its_patch_is_not_patched_again_until_it_is_back(world: World) -> None:
    world.targets.views["ml/svc"] = replace(a_view(), resource_version="7")
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4, 1.4))
    world.controller.upsert(a_policy_object())
    world.scaler.refuse["ml/svc"] = NotFound('Deployment/svc in ml: scaling to 4: HTTP 404 "svc" not found')
    report = world.step(0, full=True)
    assert report.failures == {"NotFound": 1}
    ready = world.conditions("ml/svc")["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "TargetNotFound")
    # the informer has not seen the deletion yet: the same view is not patched again, nothing told twice
    world.step(15, full=True)
    world.step(15, full=True)
    assert world.scaler.attempts == [("ml/svc", 4)]
    assert [e.failure.reason for e in world.sink.events if e.failure] == ["TargetNotFound"]
    # the informer drops it: still TargetNotFound, still one Event
    del world.targets.views["ml/svc"]
    world.step(15, full=True)
    assert [e.failure.reason for e in world.sink.events if e.failure] == ["TargetNotFound"]
    # created again (a new resourceVersion): patched, Ready
    del world.scaler.refuse["ml/svc"]
    world.targets.views["ml/svc"] = replace(a_view(), resource_version="12")
    world.step(15, full=True)
    assert world.scaler.calls == [("ml/svc", 4)]
    assert world.conditions("ml/svc")["Ready"]["status"] == "True"


def test_one_policy_failing_every_way_does_not_stop_the_others(world: World) -> None:
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4, 1.4))
    names = ["refused", "storm", "surprise", "fine"]
    for name in names:
        world.targets.views[f"ml/{name}"] = a_view(name)
        world.controller.upsert(a_policy_object(name, triggers=[gpu_trigger(70)]))
    world.scaler.refuse["ml/refused"] = PermanentError("Deployment/refused in ml: scaling to 4: HTTP 403")
    world.scaler.refuse["ml/storm"] = Conflict("Deployment/storm in ml: scaling to 4: HTTP 409")
    world.scaler.refuse["ml/surprise"] = ValueError("a bug in the scaler")
    report = world.step(0, full=True)
    assert report.failures == {"Permanent": 1, "Conflict": 1, "Unexpected": 1} and report.errors == 1
    assert world.scaler.calls == [("ml/fine", 4)]
    # the history of the three shows no scale; the one that scaled has it
    for name in ("refused", "storm", "surprise"):
        entry = world.controller.entries[f"ml/{name}"]
        assert entry.state is None and entry.last_scale_time is None, name
    assert world.controller.entries["ml/fine"].last_scale_time is not None
    # the next sweep serves the healthy one again: more load on its 4 replicas, 8 of them
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4,) * 4)
    report = world.step(15, full=True)
    assert world.scaler.calls == [("ml/fine", 4), ("ml/fine", 8)]
    assert report.failures == {"Permanent": 1, "Conflict": 1, "Unexpected": 1}


def test_alert_labels_find_policies_by_name_or_by_target(world: World) -> None:
    world.controller.upsert(a_policy_object("svc"))
    assert world.controller.find({"namespace": "ml", "scalingpolicy": "svc"}) == ["ml/svc"]
    assert world.controller.find({"namespace": "ml", "deployment": "svc"}) == ["ml/svc"]
    assert world.controller.find({"namespace": "other", "deployment": "svc"}) == []


def test_a_policy_change_wakes_it_and_an_unchanged_generation_does_not_revalidate(world: World) -> None:
    first = world.controller.upsert(a_policy_object())
    assert world.controller.upsert(a_policy_object()) is first
    changed = a_policy_object(maxReplicas=3)
    changed["metadata"]["generation"] = 2
    assert world.controller.upsert(changed) is not first
    world.clock.advance(timedelta(seconds=1).total_seconds())
    assert world.step().decided == 1


@dataclass
class FakeProvider:
    """A node-pool provider that records what it was asked and reports machines still booting."""

    booting: int = 0
    added: list[int] = field(default_factory=list)
    type: str = "ClusterAPI"
    full: int = 0  # ready nodes with every GPU requested

    def nodes(self, pool: Any, now: float, previous: Mapping[str, Any]) -> tuple[Any, ...]:
        from autoscaler.core.nodepool import PoolNode

        gpus = pool.spec.node.gpus
        return tuple(
            PoolNode(f"{pool.metadata.name}-{i}", pool.metadata.name, gpus, gpus) for i in range(self.full)
        )

    def provisioning(self, pool: Any) -> int:
        return self.booting

    def add(self, pool: Any, count: int) -> Any:
        from autoscaler.controller.ports import PoolChangeResult

        self.added.append(count)
        self.booting += count
        return PoolChangeResult(pool.metadata.name, added=tuple(f"md#{i}" for i in range(count)))

    def remove(self, pool: Any, names: Sequence[str]) -> Any:
        raise AssertionError("nothing to remove here")

    def cordon(self, pool: Any, names: Sequence[str], cordoned: bool) -> Any:
        raise AssertionError("nothing to cordon here")


def two_four_gpu_replicas_in_h100() -> dict[str, Any]:
    return a_policy_object(
        minReplicas=2,
        maxReplicas=2,
        nodePool="h100",
        podRequests={"nvidia.com/gpu": 4, "cpu": "8", "memory": "64Gi"},
    )


def test_machines_still_booting_are_not_asked_for_again(world: World) -> None:
    provider = FakeProvider()
    world.controller.providers["ClusterAPI"] = provider
    world.controller.upsert_pool(
        {
            "apiVersion": "tidescale.io/v1alpha1",
            "kind": "NodePool",
            "metadata": {"name": "h100"},
            "spec": {
                "node": {
                    "gpuModel": "H100",
                    "gpus": 4,
                    "gpuMemoryMiB": 81559,
                    "cpu": "48",
                    "memory": "512Gi",
                },
                "maxNodes": 8,
                "hourlyPrice": 49.0,
                "provisioningSeconds": 300,
                "provider": {"type": "ClusterAPI", "machineDeployment": {"name": "gpu-md"}},
            },
        }
    )
    world.targets.views["ml/svc"] = replace(a_view(), ready=0)
    world.metrics.values["gpu"] = Reading(per_gpu=(0.5,))
    world.controller.upsert(two_four_gpu_replicas_in_h100())
    world.step(0, full=True)
    assert provider.added == [2]  # two 4-GPU replicas, no node: two machines
    world.step(15, full=True)
    world.step(15, full=True)
    assert provider.added == [2]  # booting machines count: nothing asked twice


def test_pods_bound_before_the_watch_tells_are_confirmed_from_the_api_before_a_node_is_added(
    world: World,
) -> None:
    # the nodes (listed from the API) already hold both replicas' GPUs; the pod watch lags behind
    provider = FakeProvider(full=2)
    world.controller.providers["ClusterAPI"] = provider
    world.controller.upsert_pool(a_pool_object())
    world.targets.views["ml/svc"] = a_view(replicas=2)
    world.targets.unbound_in_watch = 2
    world.metrics.values["gpu"] = Reading(per_gpu=(0.5,))
    world.controller.upsert(two_four_gpu_replicas_in_h100())
    world.step(0, full=True)
    assert world.targets.fresh_reads == 1
    assert provider.added == []  # counted once, on their nodes: no third node for them


# --- scale-down that empties nodes: pod-deletion-cost before the /scale patch ------------------------------


def four_pods_three_on_node_a(world: World, **spec: Any) -> None:
    """svc at 4 replicas, svc-0..2 on node a and svc-3 on node b, its load low enough for 1 replica."""
    world.controller.providers["ClusterAPI"] = FakeProvider()
    world.controller.upsert_pool(a_pool_object())
    world.targets.views["ml/svc"] = a_view(replicas=4)
    world.targets.nodes = {"svc-0": "a", "svc-1": "a", "svc-2": "a", "svc-3": "b"}
    world.metrics.values["gpu"] = Reading(per_gpu=(0.1,) * 4)
    world.controller.upsert(
        a_policy_object(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}}, **spec)
    )


def test_a_scale_down_with_a_node_pool_first_gives_each_pod_the_count_of_pods_on_its_node(
    world: World,
) -> None:
    four_pods_three_on_node_a(world, nodePool="h100", podRequests={"nvidia.com/gpu": 1})
    world.step(0, full=True)
    assert world.targets.journal == [
        "cost svc-0=3",
        "cost svc-1=3",
        "cost svc-2=3",
        "cost svc-3=1",
        "scale 1",
    ]
    assert world.sink.events[-1].record["deletionCosts"] == {"set": 4, "failed": []}


def test_only_the_pods_whose_deletion_cost_changes_are_patched(world: World) -> None:
    four_pods_three_on_node_a(world, nodePool="h100", podRequests={"nvidia.com/gpu": 1})
    world.targets.costs = {"svc-0": 3, "svc-1": 3, "svc-2": 3, "svc-3": 2}
    world.step(0, full=True)
    assert world.targets.journal == ["cost svc-3=1", "scale 1"]


def test_a_scale_down_whose_pods_already_carry_their_costs_writes_no_annotation(world: World) -> None:
    four_pods_three_on_node_a(world, nodePool="h100", podRequests={"nvidia.com/gpu": 1})
    world.targets.costs = {"svc-0": 3, "svc-1": 3, "svc-2": 3, "svc-3": 1}
    world.step(0, full=True)
    assert world.targets.journal == ["scale 1"]
    assert "deletionCosts" not in world.sink.events[-1].record


def test_a_scale_down_without_a_node_pool_leaves_the_pods_unannotated(world: World) -> None:
    four_pods_three_on_node_a(world)
    world.step(0, full=True)
    assert world.targets.journal == ["scale 1"]


def test_a_refused_annotation_is_logged_and_recorded_and_the_scale_down_goes_ahead(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    four_pods_three_on_node_a(world, nodePool="h100", podRequests={"nvidia.com/gpu": 1})
    world.targets.refuse_costs["svc-3"] = PermanentError("pod svc-3 in ml: HTTP 403 forbidden")
    report = world.step(0, full=True)
    assert world.scaler.calls == [("ml/svc", 1)]
    assert report.failures == {"DeletionCost": 1}
    assert world.sink.events[-1].record["deletionCosts"] == {
        "set": 3,
        "failed": ["svc-3: pod svc-3 in ml: HTTP 403 forbidden"],
    }
    assert any("1 of 4 pod deletion cost(s) not set" in r.getMessage() for r in caplog.records)
    assert world.conditions("ml/svc")["Ready"]["status"] == "True"


# --- misconfigurations: a condition, an Event on the policy and a log line when they start and clear ------


def a_pool_object(name: str = "h100", max_nodes: int = 8) -> dict[str, Any]:
    return {
        "apiVersion": "tidescale.io/v1alpha1",
        "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "node": {"gpuModel": "H100", "gpus": 4, "gpuMemoryMiB": 81559, "cpu": "48", "memory": "512Gi"},
            "maxNodes": max_nodes,
            "hourlyPrice": 49.0,
            "provisioningSeconds": 300,
            "provider": {"type": "ClusterAPI", "machineDeployment": {"name": "gpu-md"}},
        },
    }


def told(world: World) -> list[tuple[str, str, str]]:
    """(Warning|Normal, reason, regarding kind) of the events that tell a problem or its end."""
    out = []
    for e in world.sink.events:
        if e.failure is not None:
            out.append(("Warning", e.failure.reason, e.involved[1]))
        if e.recovery is not None:
            out.append(("Normal", e.recovery.reason, e.involved[1]))
    return out


def test_a_missing_node_pool_is_told_once_when_it_starts_and_once_when_it_clears(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.controller.providers["ClusterAPI"] = FakeProvider()
    world.metrics.values["gpu"] = Reading(per_gpu=(0.5, 0.5))
    world.controller.upsert(a_policy_object(nodePool="l40s"))
    with caplog.at_level("INFO", logger="autoscaler.controller.loop"):
        for _ in range(3):
            world.step(15, full=True)
        pool = world.conditions("ml/svc")["NodePoolReady"]
        assert (pool["status"], pool["reason"]) == ("False", "NodePoolNotFound")
        assert "'l40s' names no NodePool" in str(pool["message"])
        assert told(world) == [("Warning", "NodePoolNotFound", "ScalingPolicy")]
        world.controller.upsert_pool(a_pool_object("l40s"))
        world.step(15, full=True)
        world.step(15, full=True)
    pool = world.conditions("ml/svc")["NodePoolReady"]
    assert (pool["status"], pool["reason"]) == ("True", "NodePoolFound")
    assert told(world) == [
        ("Warning", "NodePoolNotFound", "ScalingPolicy"),
        ("Normal", "NodePoolFound", "ScalingPolicy"),
    ]
    lines = [(r.levelname, getattr(r, "reason", "")) for r in caplog.records if getattr(r, "policy", "")]
    assert lines == [("WARNING", "NodePoolNotFound"), ("INFO", "NodePoolFound")]


def test_a_metric_source_down_is_told_when_it_goes_and_when_it_comes_back(world: World) -> None:
    world.metrics.values["gpu"] = Reading(error="Prometheus at http://prom:9090: connection refused")
    world.controller.upsert(a_policy_object())
    for _ in range(3):
        world.step(15, full=True)
    metrics = world.conditions("ml/svc")["MetricsAvailable"]
    assert (metrics["status"], metrics["reason"]) == ("False", "MetricsUnavailable")
    assert "connection refused" in str(metrics["message"])
    world.metrics.values["gpu"] = Reading(per_gpu=(0.5, 0.5))
    world.step(15, full=True)
    world.step(15, full=True)
    assert world.conditions("ml/svc")["MetricsAvailable"]["status"] == "True"
    assert told(world) == [
        ("Warning", "MetricsUnavailable", "ScalingPolicy"),
        ("Normal", "MetricsAvailable", "ScalingPolicy"),
    ]


def test_replicas_left_pending_by_a_pool_at_max_nodes_are_told_with_their_count(world: World) -> None:
    world.controller.providers["ClusterAPI"] = FakeProvider(full=1)
    world.controller.upsert_pool(a_pool_object("h100", max_nodes=1))
    world.targets.views["ml/svc"] = replace(a_view(replicas=4), ready=0)  # 4 replicas, none on a node
    world.metrics.values["gpu"] = Reading(per_gpu=(0.5,))
    world.controller.upsert(
        a_policy_object(
            minReplicas=4, maxReplicas=4, nodePool="h100", podRequests={"nvidia.com/gpu": 4, "cpu": "8"}
        )
    )
    world.step(0, full=True)
    assert "PodsScheduled" not in world.conditions("ml/svc")  # the scheduler's and provisioner's time first
    world.step(31, full=True)
    pods = world.conditions("ml/svc")["PodsScheduled"]
    assert (pods["status"], pods["reason"]) == ("False", "NodePoolAtMax")
    assert "4 of 4 replicas" in str(pods["message"]) and "maxNodes 1" in str(pods["message"])
    world.targets.views["ml/svc"] = a_view(replicas=4)  # all on nodes now
    world.step(15, full=True)
    assert world.conditions("ml/svc")["PodsScheduled"]["status"] == "True"
    assert told(world) == [
        ("Warning", "NodePoolAtMax", "ScalingPolicy"),
        ("Normal", "PodsScheduled", "ScalingPolicy"),
    ]


def test_a_missing_target_is_told_on_the_policy_and_its_return_too(world: World) -> None:
    world.metrics.values["gpu"] = Reading(per_gpu=(0.5, 0.5))
    del world.targets.views["ml/svc"]
    world.controller.upsert(a_policy_object())
    world.step(15, full=True)
    world.step(15, full=True)
    world.targets.views["ml/svc"] = a_view()
    world.step(15, full=True)
    assert told(world) == [
        ("Warning", "TargetNotFound", "ScalingPolicy"),
        ("Normal", "TargetFound", "ScalingPolicy"),
    ]


def test_a_decision_that_changes_something_is_one_info_line(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.metrics.values["gpu"] = Reading(per_gpu=(1.4, 1.4))
    world.controller.upsert(a_policy_object())
    with caplog.at_level("INFO", logger="autoscaler.controller.loop"):
        world.step(15, full=True)
        world.metrics.values["gpu"] = Reading(per_gpu=(0.7,) * 4)  # on target: nothing changes any more
        world.step(15, full=True)
        world.step(15, full=True)
    [line] = [r for r in caplog.records if r.levelname == "INFO"]
    assert line.getMessage() == "ml/svc: GPU 140% of target 70%: 2 → 4 replicas"
    assert (getattr(line, "policy", None), getattr(line, "reason", None)) == ("ml/svc", "DesiredWithinRange")


def test_a_failing_trigger_counts_once_per_read_while_a_faster_trigger_decides_every_second(
    world: World,
) -> None:
    # The lag watch reads every second and decides each time; the GPU trigger, read every 5 s, fails. Its
    # failures are reads, not decisions: four decisions in 4 s are one failure, far from the threshold.
    world.metrics.values["gpu"] = Reading(error="no GPU series for the target's pods")
    world.metrics.values["lag"] = Reading(value=0.0)
    lag = {"type": "KafkaLag", "name": "lag", "topic": "docs", "group": "embed", "lagPerReplica": 100}
    fallback = {"failureThreshold": 3, "replicas": 5}
    world.controller.upsert(
        a_policy_object(triggers=[gpu_trigger(70, pollSeconds=5), lag], fallback=fallback)
    )
    world.step()
    for _ in range(4):
        world.step(1)
    entry = world.controller.entries["ml/svc"]
    assert entry.state is not None and dict(entry.state.failures)["gpu"] == 1
    assert world.scaler.calls == []  # no fallback: one failed read is not three
    for _ in range(3):  # three more reads of the GPU trigger, 5 s apart
        world.step(5)
    assert dict(world.controller.entries["ml/svc"].state.failures)["gpu"] == 4  # type: ignore[union-attr]
    assert world.scaler.calls == [("ml/svc", 5)]  # the fallback, after more than three failed reads


def test_a_misconfigurations_record_names_the_condition_it_holds_false(world: World) -> None:
    world.metrics.values["gpu"] = Reading(error="Prometheus at http://prom:9090: connection refused")
    world.controller.upsert(a_policy_object())
    world.step(15, full=True)
    world.metrics.values["gpu"] = Reading(per_gpu=(0.5, 0.5))
    world.step(15, full=True)
    problems = [
        (e.record["rule"], e.record.get("condition"))
        for e in world.sink.events
        if e.failure is not None or e.recovery is not None
    ]
    assert problems == [("MetricsUnavailable", "MetricsAvailable"), ("MetricsAvailable", "MetricsAvailable")]
