"""Backtests: one policy file replayed on one trace under tidescale's decision core and the HPA, KEDA and KPA
baselines, every controller in the same simulator from the same start.

`TidescaleController` is the shell the replay gives the decision core: it turns what the simulated cluster
exposes into `Observations` (each trigger through its own pipeline: Prometheus, or a direct read when the
trigger has `endpoint` and `pollSeconds`), calls `decide` whenever a new sample arrives, and applies the
replicas and node-pool changes. The baselines run under the Cluster Autoscaler. The service model takes the
SLO from the policy's SLO trigger and the node shape, price and provisioning delay from its NodePool.

Pure: no I/O, no clock (the CLI reads the files).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from autoscaler.api.policy import (
    DCGMTrigger,
    GPUUtilizationTrigger,
    KafkaLagTrigger,
    NodePool,
    PolicyFile,
    PrometheusTrigger,
    QueueDepthTrigger,
    ScalingPolicy,
    ScheduleTrigger,
    SLOTrigger,
    trigger_name,
)
from autoscaler.core.decide import NodeView, PolicyState, decide, pool_nodes
from autoscaler.core.nodepool import PoolNode, template_node
from autoscaler.replay.baselines import PROMETHEUS, Baseline, Pipeline, default_registry
from autoscaler.replay.baselines.cluster_autoscaler import ClusterAutoscaler, NodeUse
from autoscaler.replay.service_model import ServiceModel
from autoscaler.replay.simulator import Actions, Result, Simulation, replay
from autoscaler.replay.trace import Requests
from jobs.snapshot import BoundPod, ClusterState
from jobs.vocabulary import pod_request

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
T0 = EPOCH.timestamp()
BASELINES = ("hpa", "keda", "kpa")
_WINDOW = re.compile(r"\[\d+[smh]\]")


class NoPolicy(ValueError):
    """The policy file has no ScalingPolicy to backtest."""


def default_pool(model: ServiceModel) -> NodePool:
    return NodePool.model_validate(
        {
            "apiVersion": "tidescale.io/v1alpha1",
            "kind": "NodePool",
            "metadata": {"name": "default-gpu"},
            "spec": {
                "node": {
                    "gpuModel": "H100",
                    "gpus": model.gpus_per_node,
                    "gpuMemoryMiB": 81559,
                    "cpu": "192",
                    "memory": "2Ti",
                },
                "minNodes": model.initial_nodes,
                "maxNodes": model.max_nodes,
                "hourlyPrice": model.node_hourly_price,
                "provisioningSeconds": int(model.node_provisioning_s),
            },
        }
    )


def service_model_for(policy: ScalingPolicy, pool: NodePool | None, base: ServiceModel) -> ServiceModel:
    """The replay's service model: the SLO from the policy's SLO trigger; the node shape, price, provisioning
    delay and node bounds from the pool; GPUs per replica from the policy's pod requests."""
    m = base
    slo = next((t for t in policy.spec.triggers if isinstance(t, SLOTrigger)), None)
    if slo is not None:
        m = replace(
            m,
            slo_ttft_s=slo.latency.target_milliseconds / 1000.0,
            slo_percentile=float(slo.latency.percentile),
        )
    if pool is not None:
        s = pool.spec
        m = replace(
            m,
            gpus_per_node=s.node.gpus,
            node_provisioning_s=float(s.provisioning_seconds),
            node_hourly_price=s.hourly_price,
            initial_nodes=max(1, s.min_nodes),
            max_nodes=s.max_nodes,
        )
    return replace(m, gpus_per_replica=max(1, policy.spec.gpus_per_replica))


def _pipeline(t: Any) -> Pipeline:
    if t.endpoint and t.poll_seconds:
        return Pipeline(float(t.poll_seconds))
    return PROMETHEUS


class _Snapshots:
    """Scheduler snapshots of the simulated nodes, rebuilt only when nodes or bindings change."""

    def __init__(self, pool: NodePool, requests: dict[str, str | int | float]) -> None:
        self.pool = pool
        self.request = pod_request(dict(requests))
        self.key: tuple[object, ...] | None = None
        self.state: ClusterState | None = None

    def of(self, sim: Simulation) -> ClusterState:
        key = tuple((n.name, len(n.pods), n.removed_at is None, n.cordoned) for n in sim.nodes.values())
        if key == self.key and self.state is not None:
            return self.state
        nodes = [
            replace(template_node(self.pool, n.name), unschedulable=n.cordoned)
            for n in sim.nodes.values()
            if n.removed_at is None
        ]
        state = ClusterState(nodes)
        for i, n in enumerate(n for n in sim.nodes.values() if n.removed_at is None):
            for pod in sorted(n.pods):
                got = state.dev[i].assign(self.request.devices)
                if isinstance(got, str):
                    continue
                state.bind(i, BoundPod(pod, n.name, self.request, got))
        self.key, self.state = key, state
        return state


def _node_uses(sim: Simulation) -> list[NodeUse]:
    g = sim.model.gpus_per_replica
    return [
        NodeUse(n.name, n.gpus, len(n.pods) * g, n.ready_at <= sim.t)
        for n in sim.nodes.values()
        if n.removed_at is None
    ]


class BaselineController:
    """A baseline replica controller with the Cluster Autoscaler for its nodes."""

    def __init__(self, baseline: Baseline, pool: NodePool, policy: ScalingPolicy) -> None:
        self.baseline = baseline
        self.name = baseline.name
        self.ca = ClusterAutoscaler(pool, dict(policy.spec.pod_requests))
        self.description = f"{baseline.description}; {self.ca.description}"
        self.snapshots = _Snapshots(pool, dict(policy.spec.pod_requests))

    def step(self, sim: Simulation) -> Actions | None:
        desired = self.baseline.step(sim)
        pending = sim.pending_pods() + max(0, (desired or 0) - sim.spec)
        snapshot = self.snapshots.of(sim) if pending else ClusterState([])
        nodes = self.ca.step(sim.now, _node_uses(sim), pending, snapshot, sim.model.gpus_per_replica)
        if desired is None and nodes is None:
            return None
        return Actions(
            replicas=desired,
            add_nodes=nodes.add if nodes else 0,
            remove_nodes=nodes.remove if nodes else (),
            drain_nodes=nodes.drain if nodes else (),
        )


@dataclass
class _Seen:
    samples: tuple[int | None, ...] = ()


class TidescaleController:
    """The decision core behind the replay: observe each trigger through its pipeline, decide on every new
    sample, apply replicas and node-pool changes."""

    name = "tidescale"

    def __init__(self, policy: ScalingPolicy, pool: NodePool, manage_nodes: bool = True) -> None:
        self.policy = policy
        self.pool = pool
        self.manage_nodes = manage_nodes
        self.state: PolicyState | None = None
        self.last_samples: tuple[int | None, ...] | None = None
        self.pipelines = [_pipeline(t) for t in policy.spec.triggers]
        self.names = [trigger_name(t, i) for i, t in enumerate(policy.spec.triggers)]
        self.snapshots = _Snapshots(pool, dict(policy.spec.pod_requests))
        self.pool_nodes: dict[str, PoolNode] = {}
        self.decisions: list[Any] = []
        self.record = False
        via = sorted({p.label for p in self.pipelines})
        self.description = (
            f"decision core; triggers {', '.join(self.names)} via {', '.join(via)}; "
            f"node pool {pool.metadata.name} planned by tidescale"
        )

    def readings(self, sim: Simulation) -> dict[str, Any]:
        from autoscaler.core.triggers import Reading

        out: dict[str, Reading] = {}
        for t, name, pipe in zip(self.policy.spec.triggers, self.names, self.pipelines, strict=True):
            if isinstance(t, GPUUtilizationTrigger | DCGMTrigger):
                got = sim.gpu_values(t.metric, pipe)
                out[name] = (
                    Reading(per_gpu=got[0], at=T0 + got[1])
                    if got
                    else Reading(error="no GPU series for the target")
                )
            elif isinstance(t, QueueDepthTrigger | PrometheusTrigger):
                s = sim.query(t.query, pipe)
                out[name] = Reading(value=s.value, at=T0 + s.at) if s else Reading(error="empty result")
            elif isinstance(t, SLOTrigger):
                step = pipe.direct_poll_s or sim.model.scrape_interval_s
                long_w = t.window_seconds
                short_w = max(int(step), long_w // 10)
                rate = sim.query(_WINDOW.sub(f"[{long_w}s]", t.request_rate_query), pipe)
                if rate is None:
                    out[name] = Reading(error="empty result")
                    continue
                short = sim.query(_WINDOW.sub(f"[{short_w}s]", t.request_rate_query), pipe)
                series: dict[str, float] = {"requestsPerSecondShort": short.value if short else rate.value}
                if t.prompt_token_rate_query and t.generated_token_rate_query:
                    p = sim.query(_WINDOW.sub(f"[{long_w}s]", t.prompt_token_rate_query), pipe)
                    g = sim.query(_WINDOW.sub(f"[{long_w}s]", t.generated_token_rate_query), pipe)
                    if p is not None and g is not None:
                        series["promptTokensPerSecond"] = p.value
                        series["generatedTokensPerSecond"] = g.value
                if t.queue_query:
                    q = sim.query(t.queue_query, pipe)
                    if q is not None:
                        series["waiting"] = q.value
                out[name] = Reading(value=rate.value, series=series, at=T0 + rate.at)
            elif isinstance(t, KafkaLagTrigger):
                out[name] = Reading(error="Kafka lag is not part of an LLM request trace")
            elif isinstance(t, ScheduleTrigger):
                continue
        return out

    def step(self, sim: Simulation) -> Actions | None:
        from autoscaler.core.triggers import Observations

        samples = tuple(sim.sample_time(p) for p in self.pipelines)
        if samples == self.last_samples:
            return None
        self.last_samples = samples
        now = EPOCH + timedelta(seconds=sim.t)
        seen = Observations(sim.spec, sim.ready_replicas(), self.readings(sim))
        nodes = None
        if self.manage_nodes:
            rows = [
                (u.name, u.gpus, u.requested, u.ready, sim.nodes[u.name].cordoned) for u in _node_uses(sim)
            ]
            current = pool_nodes(self.pool, rows, self.pool_nodes, T0 + sim.now)
            self.pool_nodes = {n.name: n for n in current}
            bound = sum(1 for p in sim.live.values() if p.bound_at is not None)
            nodes = NodeView((self.pool,), self.snapshots.of(sim), current, bound)
        d = decide(self.policy, seen, self.state, now, nodes=nodes)
        self.state = d.state
        if self.record:
            self.decisions.append(d)
        add = sum(c.add for c in d.node_pools)
        remove = tuple(n for c in d.node_pools for n in c.remove)
        cordon = tuple(n for c in d.node_pools for n in c.cordon)
        uncordon = tuple(n for c in d.node_pools for n in c.uncordon)
        if d.desired == sim.spec and not (add or remove or cordon or uncordon):
            return None
        return Actions(
            replicas=d.desired if d.desired != sim.spec else None,
            add_nodes=add,
            remove_nodes=remove,
            pack=self.manage_nodes,  # the shell sets pod-deletion-cost = replicas on the pod's node
            cordon=cordon,
            uncordon=uncordon,
        )


@dataclass(frozen=True)
class Backtest:
    trace: str
    model: ServiceModel
    results: tuple[Result, ...]
    policy: str

    def render_json(self) -> dict[str, Any]:
        return {
            "trace": self.trace,
            "policy": self.policy,
            "service_model": self.model.render(),
            "rows": [r.row() | {"config": r.description} for r in self.results],
        }


def pick(file: PolicyFile, name: str | None = None) -> tuple[ScalingPolicy, NodePool | None]:
    if not file.policies:
        raise NoPolicy(f"{file.source}: no ScalingPolicy to backtest")
    policy = (
        file.policies[0]
        if name is None
        else next((p for p in file.policies if p.metadata.name == name), None)
    )
    if policy is None:
        known = ", ".join(p.metadata.name for p in file.policies)
        raise NoPolicy(f"{file.source}: no ScalingPolicy {name!r} (known: {known})")
    pool = (
        file.pool(policy.spec.node_pool) if policy.spec.node_pool else (file.pools[0] if file.pools else None)
    )
    return policy, pool


def run_backtest(
    file: PolicyFile,
    requests: Requests,
    base: ServiceModel | None = None,
    baselines: Sequence[str] = BASELINES,
    policy_name: str | None = None,
) -> Backtest:
    policy, pool = pick(file, policy_name)
    model = service_model_for(policy, pool, base or ServiceModel())
    pool = pool or default_pool(model)
    results = [replay(requests, model, TidescaleController(policy, pool))]
    registry = default_registry()
    for name in baselines:
        results.append(
            replay(requests, model, BaselineController(registry.build(name, policy), pool, policy))
        )
    return Backtest(
        requests.name, model, tuple(results), f"{policy.metadata.namespace}/{policy.metadata.name}"
    )


def format_table(bt: Backtest) -> str:
    head = (
        f"{'policy':<10} {'GPU-h':>7} {'node GPU-h':>10} {'cost $':>8} {'SLO viol.':>9} {'viol. min':>9} "
        f"{'p50 s':>7} {'p99 s':>7} {'scale ev.':>9} {'cold st.':>8} {'react s':>7} {'capacity s':>10}"
    )
    lines = [
        f"trace: {bt.trace} ({bt.results[0].requests} requests); policy {bt.policy}",
        *(f"  {d}" for d in bt.model.describe()),
        "",
        head,
    ]
    for r in bt.results:
        react = "-" if r.reaction_s is None else f"{r.reaction_s:.0f}"
        cap = "-" if r.capacity_s is None else f"{r.capacity_s:.0f}"
        lines.append(
            f"{r.policy:<10} {r.gpu_hours:>7.2f} {r.node_gpu_hours:>10.2f} {r.cost:>8.2f} "
            f"{r.slo_violations:>9d} {r.slo_violation_minutes:>9d} {r.p50_latency_s:>7.2f} "
            f"{r.p99_latency_s:>7.2f} {r.scale_events:>9d} "
            f"{r.cold_starts:>8d} {react:>7} {cap:>10}"
        )
    lines.append("")
    lines.extend(f"{r.policy}: {r.description}" for r in bt.results)
    return "\n".join(lines)


def to_json_line(bt: Backtest) -> str:
    return json.dumps(bt.render_json(), separators=(",", ":"))
