"""Small builders for the autoscaler tests: policies, pools, readings, observations, request logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from autoscaler.api.policy import NodePool, ScalingPolicy
from autoscaler.core import decide as core
from autoscaler.core.decide import CompiledPolicy, Decision, NodeView, PolicyState, compile_policy
from autoscaler.core.triggers import Observations, Reading, TriggerRegistry, register_builtins
from autoscaler.replay.environment import Pipeline, PodInfo, Sample
from autoscaler.replay.trace import Requests

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday
T0 = NOW.timestamp()
# The built-in trigger types, as the controller and the commands build them.
TRIGGERS = register_builtins(TriggerRegistry())


def compiled(policy: ScalingPolicy) -> CompiledPolicy:
    return compile_policy(policy, TRIGGERS)


def decide(
    policy: ScalingPolicy | CompiledPolicy,
    seen: Observations,
    state: PolicyState | None,
    now: datetime,
    *,
    nodes: NodeView | None = None,
) -> Decision:
    """`autoscaler.core.decide.decide` on `policy` compiled against the built-in trigger types (compiled on
    each call when given the document: a test decides a handful of times)."""
    c = policy if isinstance(policy, CompiledPolicy) else compiled(policy)
    return core.decide(c, seen, state, now, nodes=nodes)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def gpu_trigger(target: int = 70, **kw: Any) -> dict[str, Any]:
    return {"type": "GPUUtilization", "name": "gpu", "target": target, **kw}


def slo_trigger(target_ms: int = 2000, percentile: int = 99, **kw: Any) -> dict[str, Any]:
    return {
        "type": "SLO",
        "name": "ttft",
        "latency": {"percentile": percentile, "targetMilliseconds": target_ms},
        "capacity": {"prefillTokensPerSecond": 8000, "decodeTokensPerSecond": 1500},
        "requestRateQuery": "sum(rate(gateway_requests_total[1m]))",
        **kw,
    }


def queue_trigger(per_replica: int = 10, **kw: Any) -> dict[str, Any]:
    return {
        "type": "QueueDepth",
        "name": "queue",
        "query": "sum(gateway_queue_depth)",
        "targetPerReplica": per_replica,
        **kw,
    }


def policy_doc(
    min_replicas: int = 1,
    max_replicas: int = 20,
    triggers: list[dict[str, Any]] | None = None,
    name: str = "svc",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "tidescale.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {
            "targetRef": {"kind": "Deployment", "name": name},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "triggers": triggers if triggers is not None else [gpu_trigger()],
            **spec,
        },
    }


def a_policy(
    min_replicas: int = 1,
    max_replicas: int = 20,
    triggers: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> ScalingPolicy:
    return ScalingPolicy.model_validate(policy_doc(min_replicas, max_replicas, triggers, **spec))


def a_pool(
    name: str = "h100",
    gpus: int = 8,
    price: float = 98.0,
    min_nodes: int = 0,
    max_nodes: int = 10,
    provisioning: int = 180,
    idle: int = 600,
    gpu_memory: int = 81559,
) -> NodePool:
    return NodePool.model_validate(
        {
            "apiVersion": "tidescale.io/v1alpha1",
            "kind": "NodePool",
            "metadata": {"name": name},
            "spec": {
                "node": {
                    "gpuModel": f"{name}-gpu",
                    "gpus": gpus,
                    "gpuMemoryMiB": gpu_memory,
                    "cpu": "96",
                    "memory": "1Ti",
                },
                "minNodes": min_nodes,
                "maxNodes": max_nodes,
                "hourlyPrice": price,
                "provisioningSeconds": provisioning,
                "scaleDown": {"idleSeconds": idle, "utilizationThreshold": 50},
            },
        }
    )


def gpus(*pct: float, at_s: float = 0.0) -> Reading:
    """A DCGM PROF reading (ratios 0–1) from percents, one per GPU."""
    return Reading(per_gpu=tuple(p / 100.0 for p in pct), at=T0 + at_s)


def value(v: float, at_s: float = 0.0) -> Reading:
    return Reading(v, at=T0 + at_s)


def rates(rps: float, waiting: float = 0.0, short: float | None = None, at_s: float = 0.0) -> Reading:
    """Gateway rates for an SLO trigger: every request 2,048 prompt + 28 generated tokens."""
    series = {
        "promptTokensPerSecond": rps * 2048,
        "generatedTokensPerSecond": rps * 28,
        "waiting": waiting,
        "requestsPerSecondShort": rps if short is None else short,
    }
    return Reading(rps, series=series, at=T0 + at_s)


def seen(replicas: int, ready: int | None = None, **readings: Reading) -> Observations:
    return Observations(replicas, replicas if ready is None else ready, readings)


def requests_at(times: list[float], prompt: float = 8000.0, generated: float = 0.0) -> Requests:
    """A request log: each request costs `prompt / 8000 + generated / 1500` seconds on the default model."""
    t = np.array(sorted(times), dtype=np.float64)
    return Requests("test", t, np.full(len(t), prompt), np.full(len(t), generated))


class FakeView:
    """A ClusterView whose observations the test sets; `now`, replicas and metrics are plain attributes."""

    def __init__(
        self,
        replicas: int = 1,
        ready: int | None = None,
        now: float = 0.0,
        gpu: float | None = None,
        queries: dict[str, float] | None = None,
        concurrency: dict[float, float] | None = None,
        pods: list[PodInfo] | None = None,
    ) -> None:
        self._now = now
        self.replicas = replicas
        self.ready = replicas if ready is None else ready
        self.gpu = gpu  # per-pod value of every ready pod, in the field's unit
        self.queries = queries or {}
        self.conc = concurrency or {}
        self.pod_list = pods

    @property
    def now(self) -> float:
        return self._now

    def spec_replicas(self) -> int:
        return self.replicas

    def status_replicas(self) -> int:
        return self.replicas

    def ready_replicas(self) -> int:
        return self.ready

    def pods(self) -> list[PodInfo]:
        if self.pod_list is not None:
            return self.pod_list
        return [PodInfo(f"p{i}", "Running", i < self.ready, 0.0) for i in range(self.replicas)]

    def pod_gpu_metric(self, metric: str, pipeline: Pipeline) -> tuple[dict[str, float], float] | None:
        if self.gpu is None:
            return None
        return {
            p.name: (self.gpu if p.ready else 0.0) for p in self.pods() if p.phase == "Running"
        }, self._now

    def gpu_values(self, metric: str, pipeline: Pipeline) -> tuple[tuple[float, ...], float] | None:
        got = self.pod_gpu_metric(metric, pipeline)
        return (tuple(got[0].values()), got[1]) if got and got[0] else None

    def query(self, promql: str, pipeline: Pipeline) -> Sample | None:
        return Sample(self.queries[promql], self._now) if promql in self.queries else None

    def concurrency(self, window_s: float) -> float:
        return self.conc.get(window_s, 0.0)
