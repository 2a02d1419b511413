"""The event sinks against the real control plane and the real Kafka: a decision becomes an
events.k8s.io/v1 Event on its target (repeats become a series), and one JSON record on the events topic."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from autoscaler.api.policy import ScalingPolicy
from autoscaler.controller.ports import ScalingEvent
from autoscaler.controller.sinks.kube_events import (
    RECORD_ANNOTATION,
    REPORTING_CONTROLLER,
    KubernetesEventSink,
    as_record,
)
from autoscaler.controller.sources.kafka_events import KafkaEventSink, ensure_topic
from autoscaler.core.decide import Decision, PolicyState
from autoscaler.core.events import record
from kernel.clock import FakeClock
from tests.autoscaler.autoscaler_builders import NOW, at, decide, gpus, policy_doc, seen
from tests.conftest import read_topic

pytestmark = pytest.mark.integration


def a_policy_in(namespace: str, **spec: Any) -> ScalingPolicy:
    doc = policy_doc(name="llm", **spec)
    doc["metadata"]["namespace"] = namespace
    return ScalingPolicy.model_validate(doc)


def a_deployment(kube: client.ApiClient, namespace: str, name: str = "llm") -> Any:
    body = {
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "server", "image": "registry.invalid/llm:1"}]},
            },
        },
    }
    return client.AppsV1Api(kube).create_namespaced_deployment(namespace, body)


def event_for(d: Decision, namespace: str, acted: bool = True) -> ScalingEvent:
    return ScalingEvent(d, record(d), acted, ("apps/v1", "Deployment", namespace, "llm"))


def tidescale_events(kube: client.ApiClient, namespace: str) -> list[Any]:
    listed = client.EventsV1Api(kube).list_namespaced_event(
        namespace, field_selector=f"reportingController={REPORTING_CONTROLLER}"
    )
    return list(listed.items)


def test_a_scale_up_becomes_a_normal_event_on_the_deployment_with_reason_and_numbers(
    kube: client.ApiClient, namespace: str
) -> None:
    target = a_deployment(kube, namespace)
    d = decide(a_policy_in(namespace), seen(2, gpu=gpus(140, 140)), None, NOW)
    sink = KubernetesEventSink(kube, clock=FakeClock(NOW))
    sink.emit(event_for(d, namespace))

    (ev,) = tidescale_events(kube, namespace)
    assert ev.reason == "ScaleUp"
    assert ev.type == "Normal"
    assert ev.note == "GPU 140% of target 70%: 2 → 4 replicas"
    assert ev.action == "Scale"
    assert (ev.regarding.kind, ev.regarding.name, ev.regarding.uid) == (
        "Deployment",
        "llm",
        target.metadata.uid,
    )
    assert (ev.related.kind, ev.related.name) == ("ScalingPolicy", "llm")
    carried = json.loads(ev.metadata.annotations[RECORD_ANNOTATION])
    assert carried["replicas"] == {"current": 2, "desired": 4}
    assert carried["acted"] is True
    # the core API shows it on the Deployment too (what `kubectl describe deployment` reads)
    core = client.CoreV1Api(kube).list_namespaced_event(
        namespace, field_selector=f"involvedObject.uid={target.metadata.uid}"
    )
    ours = [
        e for e in core.items if e.reporting_component == REPORTING_CONTROLLER
    ]  # not the Deployment's own
    assert [e.reason for e in ours] == ["ScaleUp"]
    assert sink.errors == 0


def test_repeated_identical_events_aggregate_into_one_series(kube: client.ApiClient, namespace: str) -> None:
    a_deployment(kube, namespace)
    d = decide(a_policy_in(namespace), seen(2, gpu=gpus(140, 140)), None, NOW)
    clock = FakeClock(NOW)
    sink = KubernetesEventSink(kube, clock=clock, series_patch_seconds=30)
    for _ in range(4):
        sink.emit(event_for(d, namespace))
        clock.advance(5)
    sink.flush()

    (ev,) = tidescale_events(kube, namespace)
    assert ev.series.count == 4
    assert as_record(ev)["count"] == 4
    assert (sink.created, sink.errors) == (1, 0)


def test_a_different_message_or_a_repeat_after_ten_minutes_is_a_new_event(
    kube: client.ApiClient, namespace: str
) -> None:
    a_deployment(kube, namespace)
    policy = a_policy_in(namespace)
    up = decide(policy, seen(2, gpu=gpus(140, 140)), None, NOW)
    more = decide(policy, seen(2, gpu=gpus(175, 175)), None, NOW)
    clock = FakeClock(NOW)
    sink = KubernetesEventSink(kube, clock=clock)
    sink.emit(event_for(up, namespace))
    clock.advance(1)
    sink.emit(event_for(more, namespace))
    clock.advance(601)
    sink.emit(event_for(up, namespace))

    notes = sorted(e.note for e in tidescale_events(kube, namespace))
    assert notes == [
        "GPU 140% of target 70%: 2 → 4 replicas",
        "GPU 140% of target 70%: 2 → 4 replicas",
        "GPU 175% of target 70%: 2 → 5 replicas",
    ]


def test_a_fallback_is_a_warning(kube: client.ApiClient, namespace: str) -> None:
    a_deployment(kube, namespace)
    policy = a_policy_in(namespace, fallback={"failureThreshold": 1, "replicas": 3})
    state: PolicyState | None = None
    for i in range(2):
        d = decide(policy, seen(2), state, at(i * 15))
        state = d.state
    assert d.rule == "Fallback"
    KubernetesEventSink(kube).emit(event_for(d, namespace))

    (ev,) = tidescale_events(kube, namespace)
    assert (ev.type, ev.reason) == ("Warning", "Fallback")
    assert "fallback static: 2 → 3 replicas" in ev.note


def test_an_event_that_cannot_be_written_is_counted_not_raised(kube: client.ApiClient) -> None:
    d = decide(a_policy_in("no-such-namespace"), seen(2, gpu=gpus(140, 140)), None, NOW)
    sink = KubernetesEventSink(kube)
    sink.emit(event_for(d, "no-such-namespace"))
    assert (sink.created, sink.errors) == (0, 1)


def test_the_kafka_sink_writes_one_json_record_per_event_keyed_by_policy(
    local_env: Any, topic: Callable[[str], str]
) -> None:
    name = topic("events")
    up = decide(a_policy_in("ml"), seen(2, gpu=gpus(140, 140)), None, NOW)
    down = decide(a_policy_in("ml"), seen(4, gpu=gpus(20, 20, 20, 20)), None, NOW)
    sink = KafkaEventSink(local_env.kafka_bootstrap, name)
    sink.emit(event_for(up, "ml"))
    sink.emit(event_for(down, "ml", acted=False))
    assert sink.flush(15) == 0
    sink.close()

    values = [json.loads(v) for v in read_topic(local_env.kafka_bootstrap, name, 2)]
    assert sorted((v["replicas"]["desired"], v["acted"]) for v in values) == [(2, False), (4, True)]
    assert {v["policy"] for v in values} == {"ml/llm"}
    assert {v["reason"] for v in values} == {
        "GPU 140% of target 70%: 2 → 4 replicas",
        "GPU 20% of target 70%: 4 → 2 replicas",
    }
    assert (sink.delivered, sink.failed) == (2, 0)


def test_the_kafka_sink_creates_its_topic_once(local_env: Any, topic: Callable[[str], str]) -> None:
    name = topic("events")
    ensure_topic(local_env.kafka_bootstrap, name)
    ensure_topic(local_env.kafka_bootstrap, name)  # existing: nothing to do, no error


def test_the_kafka_sink_counts_what_it_cannot_deliver() -> None:
    sink = KafkaEventSink("127.0.0.1:1", "nowhere")
    d = decide(a_policy_in("ml"), seen(2, gpu=gpus(140, 140)), None, NOW)
    sink.emit(event_for(d, "ml"))  # the broker is away: the record waits in the producer
    sink.close(timeout=1)
    assert (sink.sent, sink.delivered, sink.failed) == (1, 0, 1)
