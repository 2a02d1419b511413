"""Backtests: one policy file replayed on one trace under tidescale's decision core and the HPA, KEDA and KPA
baselines, every controller in the same simulator from the same start.

tidescale's row is the controller that ships: `autoscaler.replay.ports.LoopController` runs its reconcile loop
(`Controller.reconcile_once`) each simulated second against simulator-backed implementations of its own ports
(targets, /scale, metric sources reading each trigger through its pipeline — Prometheus, or a direct read when
the trigger has `endpoint` and `pollSeconds` —, the node-pool provider, the clock). The baselines run under
the Cluster Autoscaler. The service model takes the SLO from the policy's SLO trigger and the node shape,
price and provisioning delay from its NodePool.

Pure: no I/O, no clock (the CLI reads the files).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from autoscaler.api.policy import (
    NodePool,
    PolicyFile,
    ScalingPolicy,
    SLOTrigger,
)
from autoscaler.controller.pools.nodes_view import node_view
from autoscaler.core.triggers import TriggerRegistry
from autoscaler.replay.baselines import Baseline, default_registry
from autoscaler.replay.baselines.cluster_autoscaler import ClusterAutoscaler, NodeUse
from autoscaler.replay.forecast_error import ForecastError, for_policy
from autoscaler.replay.ports import LoopController, SimNodePools
from autoscaler.replay.service_model import ServiceModel
from autoscaler.replay.simulator import Actions, Result, Simulation, replay
from autoscaler.replay.trace import Requests, index_of_dispersion
from jobs.snapshot import ClusterState

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
T0 = EPOCH.timestamp()
BASELINES = ("hpa", "keda", "kpa")


# the time scales the arrivals' index of dispersion is reported at
DISPERSION_WINDOWS_S = (1.0, 10.0, 60.0)


@dataclass(frozen=True)
class Variability:
    """How bursty the replayed arrivals are (the index of dispersion of their counts per window) and how
    variable their service times (cs²): what an SLO trigger's `arrivalVariability` and
    `capacity.serviceVariability` describe, measured on the counted part of the trace."""

    dispersion: tuple[tuple[float, float], ...]  # (window s, index of dispersion)
    service: float | None  # cs²

    @classmethod
    def of(cls, requests: Requests, model: ServiceModel, measure_from: float = 0.0) -> Variability:
        counted = requests.arrival >= measure_from
        service, _ = model.times(requests)
        mean = float(service[counted].mean()) if counted.any() else 0.0
        cs2 = float(service[counted].var()) / mean**2 if mean > 0 else None
        rows = ((w, index_of_dispersion(requests.arrival, w, measure_from)) for w in DISPERSION_WINDOWS_S)
        return cls(tuple((w, d) for w, d in rows if d is not None), cs2)

    def render(self) -> dict[str, Any]:
        return {
            "index_of_dispersion": {f"{w:g}s": round(d, 2) for w, d in self.dispersion},
            "service_variability": None if self.service is None else round(self.service, 3),
        }

    def describe(self) -> str:
        over = ", ".join(f"{d:.3g} over {w:g} s" for w, d in self.dispersion) or "too few requests"
        cs2 = "-" if self.service is None else f"{self.service:.2f}"
        return (
            f"arrivals: index of dispersion {over} (Poisson: 1); service times cs² {cs2} "
            "(an SLO trigger's arrivalVariability and capacity.serviceVariability)"
        )


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
    """The replay's service model: the SLO from the policy's SLO trigger; the model start from the policy's
    `lead` when it states one; the node shape, price, provisioning delay and node bounds from the pool; GPUs
    per replica from the policy's pod requests."""
    m = base
    if "lead" in policy.spec.model_fields_set:
        m = replace(m, cold_start_s=float(policy.spec.lead.model_start_seconds))
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


def _node_uses(sim: Simulation) -> list[NodeUse]:
    g = sim.model.gpus_per_replica
    return [
        NodeUse(n.name, n.gpus, len(n.pods) * g, n.ready_at <= sim.t)
        for n in sim.nodes.values()
        if n.removed_at is None
    ]


class BaselineController:
    """A baseline replica controller with the Cluster Autoscaler for its nodes. The Cluster Autoscaler fits
    pending pods on the same node view the controller's node-pool plans use (`nodes_view.node_view`)."""

    def __init__(self, baseline: Baseline, pool: NodePool, policy: ScalingPolicy) -> None:
        self.baseline = baseline
        self.name = baseline.name
        self.pool = pool
        self.requests = dict(policy.spec.pod_requests)
        self.ca = ClusterAutoscaler(pool, self.requests)
        self.description = f"{baseline.description}; {self.ca.description}"
        self.nodes = SimNodePools(pool.spec.provider.type)

    def step(self, sim: Simulation) -> Actions | None:
        desired = self.baseline.step(sim)
        pending = sim.pending_pods() + max(0, (desired or 0) - sim.spec)
        snapshot = ClusterState([])
        if pending:
            self.nodes.point_at(sim)
            current = self.nodes.nodes(self.pool, sim.now, {})
            snapshot = node_view(self.pool, current, self.requests, 0).snapshot
        nodes = self.ca.step(sim.now, _node_uses(sim), pending, snapshot, sim.model.gpus_per_replica)
        if desired is None and nodes is None:
            return None
        return Actions(
            replicas=desired,
            add_nodes=nodes.add if nodes else 0,
            remove_nodes=nodes.remove if nodes else (),
            drain_nodes=nodes.drain if nodes else (),
        )


@dataclass(frozen=True)
class Backtest:
    trace: str
    model: ServiceModel
    results: tuple[Result, ...]
    policy: str
    # the seasonal forecast's error on 5-minute request counts one model start ahead, beside the recent level
    forecast: ForecastError | None = None
    measured_from_s: float = 0.0  # GPU-hours and violations count from here (`simulator.replay`)
    variability: Variability | None = None

    def render_json(self) -> dict[str, Any]:
        return {
            "trace": self.trace,
            "policy": self.policy,
            "measured_from_s": self.measured_from_s,
            "service_model": self.model.render(),
            "variability": self.variability.render() if self.variability is not None else None,
            "rows": [r.row() | {"config": r.description} for r in self.results],
            "forecast": self.forecast.render() if self.forecast is not None else None,
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
    *,
    triggers: TriggerRegistry,
    measure_from: float = 0.0,
) -> Backtest:
    """`triggers`: the trigger types the policy is compiled against (built once by the caller);
    `measure_from`: GPU-hours and SLO figures count from that second on (`simulator.replay`)."""
    policy, pool = pick(file, policy_name)
    model = service_model_for(policy, pool, base or ServiceModel())
    pool = pool or default_pool(model)
    results = [replay(requests, model, LoopController(policy, pool, triggers), measure_from=measure_from)]
    registry = default_registry()
    for name in baselines:
        controller = BaselineController(registry.build(name, policy, model), pool, policy)
        results.append(replay(requests, model, controller, measure_from=measure_from))
    return Backtest(
        requests.name,
        model,
        tuple(results),
        f"{policy.metadata.namespace}/{policy.metadata.name}",
        for_policy(policy, T0 + requests.arrival),
        measure_from,
        Variability.of(requests, model, measure_from),
    )


def format_table(bt: Backtest) -> str:
    head = (
        f"{'policy':<10} {'GPU-h':>7} {'node GPU-h':>10} {'cost $':>8} {'SLO viol.':>9} {'viol. min':>9} "
        f"{'p50 s':>7} {'p99 s':>7} {'scale ev.':>9} {'cold st.':>8} {'react s':>7} {'capacity s':>10}"
    )
    lines = [
        f"trace: {bt.trace} ({bt.results[0].requests} requests); policy {bt.policy}",
        *(f"  {d}" for d in bt.model.describe()),
        *([f"  {bt.variability.describe()}"] if bt.variability is not None else []),
        *(
            [f"  counted from {bt.measured_from_s:g} s: the start-up before it is left out"]
            if bt.measured_from_s
            else []
        ),
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
    if bt.forecast is not None:
        lines.append(bt.forecast.describe())
    return "\n".join(lines)


def to_json_line(bt: Backtest) -> str:
    return json.dumps(bt.render_json(), separators=(",", ":"))
