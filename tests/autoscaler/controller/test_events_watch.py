"""`tidescale events watch` in a subprocess, as an operator runs it: it prints the events produced while it
runs, from the Kafka topic and from Kubernetes Events, as JSON lines or readable lines."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client

from autoscaler.api.policy import ScalingPolicy
from autoscaler.controller.ports import ScalingEvent
from autoscaler.controller.sinks.kube_events import KubernetesEventSink
from autoscaler.controller.sources.kafka_events import KafkaEventSink
from autoscaler.core.decide import Decision
from autoscaler.core.events import record
from kernel.clock import FakeClock
from tests.autoscaler.autoscaler_builders import NOW, decide, gpus, policy_doc, seen
from tidescale.commands.policy import event_line

pytestmark = pytest.mark.integration


def a_policy_in(namespace: str, name: str = "llm") -> ScalingPolicy:
    doc = policy_doc(name=name)
    doc["metadata"]["namespace"] = namespace
    return ScalingPolicy.model_validate(doc)


def scaling(namespace: str, name: str = "llm", gpu: float = 140, replicas: int = 2) -> ScalingEvent:
    d: Decision = decide(a_policy_in(namespace, name), seen(replicas, gpu=gpus(*[gpu] * replicas)), None, NOW)
    return ScalingEvent(d, record(d), True, ("apps/v1", "Deployment", namespace, name))


@contextmanager
def watching(*args: str) -> Iterator[subprocess.Popen[str]]:
    """`tidescale events watch ARGS`, returned once it says it is watching (stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidescale", "events", "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready = threading.Event()
    errors: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            errors.append(line)
            if "watching" in line:
                ready.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert ready.wait(60), f"events watch did not start: {''.join(errors)}"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        reader.join(5)


def finish(proc: subprocess.Popen[str]) -> str:
    """The watcher's stdout once it exits by itself (at --max-events, or at --timeout at the latest)."""
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.wait(10)
    return out


def test_watch_json_prints_the_two_kafka_records_produced_while_it_runs(
    local_env: Any, topic: Callable[[str], str]
) -> None:
    name = topic("events")
    sink = KafkaEventSink(local_env.kafka_bootstrap, name)
    sink.emit(scaling("ml", "before"))  # written before the watch: not printed
    assert sink.flush(15) == 0
    with watching(
        "--json", "--max-events", "2", "--timeout", "60", "--kafka-bootstrap", local_env.kafka_bootstrap,
        "--topic", name,
    ) as proc:  # fmt: skip
        sink.emit(scaling("ml"))
        sink.emit(scaling("ml", gpu=20, replicas=4))
        assert sink.flush(15) == 0
        out = finish(proc)
    sink.close()
    assert proc.returncode == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(r["policy"], r["replicas"], r["acted"]) for r in lines] == [
        ("ml/llm", {"current": 2, "desired": 4}, True),
        ("ml/llm", {"current": 4, "desired": 2}, True),
    ]


def test_watch_filters_by_policy_and_prints_readable_lines(
    local_env: Any, topic: Callable[[str], str]
) -> None:
    name = topic("events")
    sink = KafkaEventSink(local_env.kafka_bootstrap, name)
    with watching(
        "--max-events", "1", "--timeout", "60", "--policy", "llm", "--kafka-bootstrap",
        local_env.kafka_bootstrap, "--topic", name,
    ) as proc:  # fmt: skip
        sink.emit(scaling("ml", "other"))
        sink.emit(scaling("ml"))
        assert sink.flush(15) == 0
        out = finish(proc)
    sink.close()
    assert proc.returncode == 0
    assert out.splitlines() == [
        "12:00:00 ml/llm Deployment/llm 2 → 4 ScaleUp: GPU 140% of target 70%: 2 → 4 replicas"
    ]


def test_watch_from_kubernetes_prints_new_events_and_repeats(
    cluster: Any, kube: client.ApiClient, namespace: str
) -> None:
    sink = KubernetesEventSink(kube, clock=FakeClock(NOW))
    with watching(
        "--json", "--max-events", "2", "--timeout", "60", "--kubeconfig", cluster.kubeconfig,
        "--namespace", namespace,
    ) as proc:  # fmt: skip
        up = scaling(namespace)
        sink.emit(up)
        sink.emit(up)  # a repeat: the Event's series count becomes 2
        out = finish(proc)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(r["policy"], r["eventReason"], r["eventType"], r["count"]) for r in lines] == [
        (f"{namespace}/llm", "ScaleUp", "Normal", 1),
        (f"{namespace}/llm", "ScaleUp", "Normal", 2),
    ]


def test_watch_stops_at_its_timeout_and_says_it_saw_too_few(
    local_env: Any, topic: Callable[[str], str]
) -> None:
    command = [sys.executable, "-m", "tidescale", "events", "watch", "--max-events", "1", "--timeout", "3"]
    command += ["--kafka-bootstrap", local_env.kafka_bootstrap, "--topic", topic("events")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "0 of 1 events before the timeout" in proc.stderr


def test_a_readable_line_names_the_time_policy_target_change_and_reason() -> None:
    line = event_line({**record(scaling("ml").decision), "count": 3})
    assert line == "12:00:00 ml/llm Deployment/llm 2 → 4 ScaleUp: GPU 140% of target 70%: 2 → 4 replicas (×3)"
