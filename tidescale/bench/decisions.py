"""The decision-core benchmark: how many `decide` calls per second one process makes for N policies.

Policies are generated from three shapes — an LLM service (SLO, queue depth and GPU triggers, a seasonal
forecast with headroom, panic, scale to zero), a Kafka-fed worker (lag, fallback) and a Prometheus-driven API
(AverageValue, a cron floor) — with varied bounds and targets, and compiled once against the trigger registry
the caller built (as the controller compiles a policy when it changes); observations are deterministic
pseudo-random readings that move every round (one per trigger the registry says has a source, each shape
saying what its triggers read), and each policy's state is carried from one decision to the next, as the
controller would. The LLM policies start from a seasonal state that has learned eight days of a daily cycle
(`warm_seasonal`, untimed), so the timed decisions pay for a forecast with both profiles in use, and the
first round closes a 5-minute bucket for each of them.

Pure apart from `run`, which reads the monotonic clock through `kernel.clock` to time itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from autoscaler.api.policy import ScalingPolicy
from autoscaler.core import forecast as fc
from autoscaler.core.decide import CompiledPolicy, PolicyState, compile_policy, decide
from autoscaler.core.triggers import Observations, Reading, TriggerRegistry
from kernel.clock import SYSTEM_CLOCK, Clock

EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _llm(i: int) -> dict[str, Any]:
    return {
        "targetRef": {"kind": "Deployment", "name": f"llm-{i}"},
        "minReplicas": 0,
        "maxReplicas": 64 + i % 64,
        "triggers": [
            {
                "type": "SLO",
                "name": "ttft",
                "latency": {"percentile": 99, "targetMilliseconds": 1500 + 100 * (i % 10)},
                "capacity": {"prefillTokensPerSecond": 8000, "decodeTokensPerSecond": 1500},
                "requestRateQuery": "sum(rate(gateway_requests_total[1m]))",
                "promptTokenRateQuery": "sum(rate(gateway_prompt_tokens_total[1m]))",
                "generatedTokenRateQuery": "sum(rate(gateway_generated_tokens_total[1m]))",
                "queueQuery": "sum(gateway_queue_depth)",
            },
            {
                "type": "QueueDepth",
                "name": "queue",
                "query": "sum(gateway_queue_depth)",
                "targetPerReplica": 64,
            },
            {"type": "GPUUtilization", "name": "gpu", "target": 80},
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
        "scaleToZero": {"idleSeconds": 900},
        "forecast": {
            "historySeconds": 1800,
            "historyPercentile": 75,
            "seasonality": "auto",
            "headroomPercentile": 90,
        },
        "panic": {"thresholdPercent": 200, "stableSeconds": 60},
    }


def _kafka(i: int) -> dict[str, Any]:
    return {
        "targetRef": {"kind": "Deployment", "name": f"embed-{i}"},
        "minReplicas": 1,
        "maxReplicas": 48,
        "triggers": [
            {"type": "KafkaLag", "name": "lag", "topic": f"docs-{i}", "group": "embed", "lagPerReplica": 500},
            {"type": "GPUUtilization", "name": "gpu", "target": 70, "aggregation": "max"},
        ],
        "fallback": {"failureThreshold": 3, "replicas": 4},
    }


def _api(i: int) -> dict[str, Any]:
    return {
        "targetRef": {"kind": "StatefulSet", "name": f"api-{i}"},
        "minReplicas": 2,
        "maxReplicas": 40,
        "triggers": [
            {
                "type": "Prometheus",
                "name": "rps",
                "query": "sum(rate(http_requests_total[1m]))",
                "target": 100,
            },
            {
                "type": "Schedule",
                "windows": [{"cron": "0 8 * * 1-5", "durationSeconds": 36000, "replicas": 4}],
            },
        ],
    }


def policies(n: int) -> list[ScalingPolicy]:
    """`n` policies cycling through the three shapes."""
    shapes = (_llm, _kafka, _api)
    return [
        ScalingPolicy.model_validate(
            {
                "apiVersion": "tidescale.io/v1alpha1",
                "kind": "ScalingPolicy",
                "metadata": {"name": f"p-{i}", "namespace": f"team-{i % 7}"},
                "spec": shapes[i % 3](i),
            }
        )
        for i in range(n)
    ]


def _slo(wave: float, k: int, at: float) -> Reading:
    rate = 40.0 * wave
    return Reading(
        rate,
        series={
            "requestsPerSecondShort": rate * (1.5 if k % 11 == 0 else 1.0),
            "promptTokensPerSecond": rate * 2048,
            "generatedTokensPerSecond": rate * 28,
            "waiting": 30.0 if k % 13 == 0 else 0.0,
        },
        at=at,
    )


def _gpus(wave: float, k: int, at: float) -> Reading:
    return Reading(per_gpu=tuple(0.3 + 0.6 * wave for _ in range(4)), at=at)


def _queue(wave: float, k: int, at: float) -> Reading:
    return Reading(100.0 * wave, at=at)


def _total(wave: float, k: int, at: float) -> Reading:
    return Reading(2000.0 * wave, at=at)


# What the shapes' triggers read, by trigger name, at relative load `wave` in round `k`.
_READS = {"ttft": _slo, "gpu": _gpus, "queue": _queue, "lag": _total, "rps": _total}


def _readings(policy: CompiledPolicy, k: int, i: int, at: float) -> dict[str, Reading]:
    wave = 0.5 + 0.5 * math.sin((k + 7 * i) / 5.0)
    return {
        name: _READS[name](wave, k, at)
        for name, kind in zip(policy.names, policy.types, strict=True)
        if kind.source is not None
    }


def warm_seasonal(seasonality: str, until: float, days: int = 8) -> fc.Seasonal:
    """A seasonal state that has seen `days` of a daily cycle of demand (a sample a minute) up to `until`."""
    s = fc.seasonal_start(seasonality)
    start = until - days * 86400.0
    for k in range(days * 1440):
        t = start + 60.0 * k
        s = fc.observe(s, 20.0 + 15.0 * math.sin(2 * math.pi * t / 86400.0), t)
    return s


@dataclass(frozen=True)
class BenchResult:
    policies: int
    decisions: int
    seconds: float

    @property
    def decisions_per_second(self) -> float:
        return self.decisions / self.seconds if self.seconds > 0 else 0.0


def run(n: int, triggers: TriggerRegistry, rounds: int = 20, clock: Clock = SYSTEM_CLOCK) -> BenchResult:
    """Decide `rounds` times for each of `n` policies (2 s apart), timing only the `decide` calls."""
    ps = [compile_policy(p, triggers) for p in policies(n)]
    warm: dict[str, fc.Seasonal] = {}
    states: list[PolicyState | None] = []
    for p in ps:
        f = p.policy.spec.forecast
        if f is None or f.seasonality == "none":
            states.append(None)
            continue
        if f.seasonality not in warm:
            warm[f.seasonality] = warm_seasonal(f.seasonality, EPOCH.timestamp() - 1.0)
        states.append(PolicyState(seasonal=warm[f.seasonality]))
    replicas = [max(1, p.policy.spec.min_replicas) for p in ps]
    inputs = []
    for k in range(rounds):
        now = EPOCH + timedelta(seconds=2 * k)
        at = now.timestamp()
        inputs.append((now, [_readings(p, k, i, at) for i, p in enumerate(ps)]))
    decisions = 0
    start = clock.monotonic()
    for now, readings in inputs:
        for i, p in enumerate(ps):
            d = decide(p, Observations(replicas[i], replicas[i], readings[i]), states[i], now)
            states[i] = d.state
            replicas[i] = d.desired
            decisions += 1
    return BenchResult(n, decisions, clock.monotonic() - start)
