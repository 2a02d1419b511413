"""The metric source registry: requests grouped by source, one call each, Schedule skipped, never raising.

The sources here are recording fakes (the registry's job is the grouping); the real sources are tested against
Prometheus and Kafka in test_prometheus_source.py and test_kafka_lag_source.py, and together through the
registry at the end of this file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from autoscaler.api.policy import KafkaLagTrigger, PrometheusTrigger, ScheduleTrigger, ScheduleWindow
from autoscaler.controller.ports import MetricRequest, ReadingKey
from autoscaler.controller.sources.registry import MetricSourceRegistry, register_builtins
from autoscaler.core.triggers import Reading
from kernel.clock import SYSTEM_CLOCK
from tests.autoscaler.autoscaler_builders import TRIGGERS
from tidescale.local import environment


@dataclass
class RecordingSource:
    kinds: frozenset[str]
    value: float = 1.0
    fail: bool = False
    calls: list[list[MetricRequest]] = field(default_factory=list)

    def read(self, requests: Sequence[MetricRequest], now: float) -> Mapping[ReadingKey, Reading]:
        self.calls.append(list(requests))
        if self.fail:
            raise RuntimeError("boom")
        return {(r.policy, r.trigger): Reading(value=self.value, at=now) for r in requests}


@dataclass(frozen=True)
class Spec:
    type: str


def a_request(policy: str, kind: str, trigger: str = "t", spec: Any = None) -> MetricRequest:
    return MetricRequest(policy=policy, trigger=trigger, spec=spec or Spec(kind), namespace="ml")


def test_each_source_is_called_once_with_all_of_its_kinds_requests() -> None:
    prom = RecordingSource(frozenset({"Prometheus", "QueueDepth", "GPUUtilization"}), value=1)
    lag = RecordingSource(frozenset({"KafkaLag"}), value=2)
    registry = MetricSourceRegistry(TRIGGERS)
    registry.register(prom)
    registry.register(lag)
    requests = [
        a_request(f"ml/p{i}", kind) for i, kind in enumerate(["Prometheus", "QueueDepth", "KafkaLag"] * 10)
    ]
    requests.append(a_request("ml/g", "GPUUtilization"))
    got = registry.read_all(requests, 100.0)
    assert len(prom.calls) == 1 and len(prom.calls[0]) == 21
    assert len(lag.calls) == 1 and len(lag.calls[0]) == 10
    assert {got[(f"ml/p{i}", "t")].value for i in range(2, 30, 3)} == {2.0}
    assert got[("ml/g", "t")].value == 1.0
    assert registry.sources() == (prom, lag)


def test_schedule_triggers_need_no_source_and_get_no_reading() -> None:
    registry = MetricSourceRegistry(TRIGGERS)
    schedule = ScheduleTrigger(
        type="Schedule", windows=[ScheduleWindow(cron="0 9 * * *", duration_seconds=60, replicas=2)]
    )
    assert registry.read_all([a_request("ml/s", "Schedule", spec=schedule)], 0.0) == {}


@pytest.mark.parametrize(
    ("registered", "kind", "error"),
    [
        ((), "Prometheus", "no metric source for trigger type 'Prometheus' (known: )"),
        (("KafkaLag",), "SLO", "no metric source for trigger type 'SLO' (known: KafkaLag)"),
    ],
    ids=["empty-registry", "other-kinds"],
)
def test_a_kind_without_a_source_reads_as_an_error(
    registered: tuple[str, ...], kind: str, error: str
) -> None:
    registry = MetricSourceRegistry(TRIGGERS)
    if registered:
        registry.register(RecordingSource(frozenset(registered)))
    assert registry.read_all([a_request("ml/x", kind)], 0.0) == {("ml/x", "t"): Reading(error=error)}


def test_a_source_that_raises_fails_only_its_own_requests() -> None:
    registry = MetricSourceRegistry(TRIGGERS)
    registry.register(RecordingSource(frozenset({"Prometheus"}), fail=True))
    registry.register(RecordingSource(frozenset({"KafkaLag"}), value=5))
    got = registry.read_all([a_request("ml/p", "Prometheus"), a_request("ml/k", "KafkaLag")], 0.0)
    assert got[("ml/p", "t")].error == "RecordingSource failed: RuntimeError: boom"
    assert got[("ml/k", "t")].value == 5.0


def test_a_request_the_source_left_out_reads_as_an_error() -> None:
    class Forgetful(RecordingSource):
        def read(self, requests: Sequence[MetricRequest], now: float) -> Mapping[ReadingKey, Reading]:
            return {}

    registry = MetricSourceRegistry(TRIGGERS)
    registry.register(Forgetful(frozenset({"Prometheus"})))
    assert registry.read_all([a_request("ml/p", "Prometheus")], 0.0)[("ml/p", "t")].error == (
        "Forgetful returned no reading"
    )


def test_a_kind_cannot_have_two_sources() -> None:
    registry = MetricSourceRegistry(TRIGGERS)
    registry.register(RecordingSource(frozenset({"Prometheus", "SLO"})))
    with pytest.raises(ValueError, match="SLO already have a metric source"):
        registry.register(RecordingSource(frozenset({"SLO", "KafkaLag"})))


@pytest.mark.integration
def test_the_builtin_sources_read_prometheus_and_kafka_through_one_registry(
    local_env: environment.Environment,
) -> None:
    registry = register_builtins(
        MetricSourceRegistry(TRIGGERS),
        prometheus_url=local_env.prometheus_url,
        kafka_bootstrap=local_env.kafka_bootstrap,
    )
    try:
        requests = [
            a_request(
                "ml/p", "Prometheus", spec=PrometheusTrigger(type="Prometheus", query="vector(7)", target=1)
            ),
            a_request(
                "ml/k",
                "KafkaLag",
                spec=KafkaLagTrigger(
                    type="KafkaLag", topic="no-such-topic-here", group="g", lag_per_replica=1
                ),
            ),
        ]
        got = registry.read_all(requests, SYSTEM_CLOCK.now().timestamp())
    finally:
        registry.close()
    assert got[("ml/p", "t")].value == 7.0
    assert "'no-such-topic-here' does not exist" in (got[("ml/k", "t")].error or "")
