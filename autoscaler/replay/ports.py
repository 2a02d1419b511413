"""The controller's own ports, implemented by the simulated cluster, so that the replay drives the controller
that ships (`autoscaler.controller.loop.Controller.reconcile_once`) as Karpenter runs its real provisioner
against a fake cloud provider.

- `SimTargets`: the target's /scale view (spec replicas, ready replicas, its selector) and its pods, whose
  pod-deletion-cost annotations become the tick's `Actions.deletion_costs` (kept on the simulated pods);
- `SimScaler`: a /scale patch becomes the tick's `Actions.replicas`;
- `SimNodePools`: the pool's nodes as the KWOK provider lists them (one row per node, through the same
  `pool_nodes`), and add / remove (cordon, drain, delete) / cordon as the tick's node actions;
- `SimMetrics`: every request answered from the simulator's metric pipeline (scrape interval and delay, or a
  direct poll), with the queries each trigger type asks for and the reading it forms from their answers —
  the trigger modules' own functions, the ones the live Prometheus source calls.

`LoopController` is the simulator's `Controller`: each second it points the ports at the simulation, moves
the fake clock to the simulated time, runs one `reconcile_once`, and hands the simulator what the controller
did. Nothing here decides: every decision is the controller's.

Pure: no I/O; time is the simulation's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from autoscaler.api.policy import NodePool, ScalingPolicy
from autoscaler.controller.kube.selectors import Selector
from autoscaler.controller.loop import Controller, ControllerConfig
from autoscaler.controller.ports import (
    MetricRequest,
    PoolChangeResult,
    ReadingKey,
    ScaleView,
)
from autoscaler.core.decide import pool_nodes
from autoscaler.core.deletion_cost import PlacedPod
from autoscaler.core.nodepool import PoolNode
from autoscaler.core.promql import Result
from autoscaler.core.promql import Sample as PromSample
from autoscaler.core.triggers import Reading, Scope, TriggerRegistry
from autoscaler.core.triggers.gpu_utilization import UTILIZATION_FIELDS
from autoscaler.core.triggers.trigger import PROMETHEUS as PROMETHEUS_SOURCE
from autoscaler.replay.environment import PROMETHEUS, Pipeline
from autoscaler.replay.simulator import Actions, Simulation
from kernel.clock import FakeClock
from kernel.errors import PermanentError

# The replay's wall clock starts here (a Thursday, so cron windows in examples fall on working days).
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class _Tick:
    """What the controller did during one reconcile: the simulator applies it as one `Actions`."""

    replicas: int | None = None
    add: int = 0
    drain: list[str] = field(default_factory=list)
    cordon: list[str] = field(default_factory=list)
    uncordon: list[str] = field(default_factory=list)
    costs: dict[str, int] = field(default_factory=dict)  # pod → the pod-deletion-cost set on it

    def actions(self) -> Actions | None:
        nodes = self.add or self.drain or self.cordon or self.uncordon
        if self.replicas is None and not (nodes or self.costs):
            return None
        return Actions(
            replicas=self.replicas,
            add_nodes=self.add,
            drain_nodes=tuple(self.drain),
            cordon=tuple(self.cordon),
            uncordon=tuple(self.uncordon),
            deletion_costs=tuple(self.costs.items()),
        )


class _Bound:
    """A port that reads the simulation it is currently pointed at."""

    def __init__(self) -> None:
        self._sim: Simulation | None = None
        self.tick = _Tick()

    def point_at(self, sim: Simulation, tick: _Tick | None = None) -> None:
        self._sim, self.tick = sim, tick or _Tick()

    @property
    def sim(self) -> Simulation:
        if self._sim is None:
            raise RuntimeError("the port is not pointed at a simulation")
        return self._sim


class SimTargets(_Bound):
    """`loop.Targets` over the simulated Deployment (every pod matches its selector)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def view(self, namespace: str, api_version: str, kind: str, name: str) -> ScaleView:
        if name != self.target:
            raise PermanentError(f"{kind} {namespace}/{name} not found (the replay serves {self.target})")
        sim = self.sim
        return ScaleView(namespace, kind, name, sim.spec, sim.ready_replicas(), f"app={name}", api_version)

    def pods(self, namespace: str, selector: Selector, fresh: bool = False) -> list[PlacedPod]:
        # the simulator's pods are always fresh
        return [
            PlacedPod(p.name, p.node if p.bound_at is not None else None, p.deletion_cost)
            for p in self.sim.live.values()
        ]

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        self.tick.costs[pod] = cost  # kept on the pod, before this tick's /scale patch is applied


class SimScaler(_Bound):
    """`ReplicaTarget`: the patch is the tick's replicas."""

    def read(self, namespace: str, api_version: str, kind: str, name: str) -> ScaleView:
        sim = self.sim
        return ScaleView(namespace, kind, name, sim.spec, sim.ready_replicas(), f"app={name}", api_version)

    def scale(self, view: ScaleView, replicas: int) -> ScaleView:
        self.tick.replicas = replicas
        return ScaleView(
            view.namespace, view.kind, view.name, replicas, view.ready, view.selector, "", view.api_version
        )


class SimNodePools(_Bound):
    """`NodePoolProvider` over the simulated nodes (the policy's one pool)."""

    def __init__(self, type_: str) -> None:
        super().__init__()
        self.type = type_

    def nodes(self, pool: NodePool, now: float, previous: Mapping[str, PoolNode]) -> tuple[PoolNode, ...]:
        sim = self.sim
        g = sim.model.gpus_per_replica
        rows = [
            (n.name, n.gpus, len(n.pods) * g, n.ready_at <= sim.t, n.cordoned)
            for n in sim.nodes.values()
            if n.removed_at is None
        ]
        return pool_nodes(pool, rows, previous, now)

    def provisioning(self, pool: NodePool) -> int:
        return 0  # a simulated node exists (not Ready) from the moment it is asked for, as a KWOK node does

    def add(self, pool: NodePool, count: int) -> PoolChangeResult:
        self.tick.add += count
        return PoolChangeResult(pool.metadata.name, reason=f"{count} node(s) asked for")

    def remove(self, pool: NodePool, names: Sequence[str]) -> PoolChangeResult:
        self.tick.drain.extend(names)  # cordon, drain (the ReplicaSet replaces the pods), delete
        return PoolChangeResult(pool.metadata.name, removed=tuple(names))

    def cordon(self, pool: NodePool, names: Sequence[str], cordoned: bool) -> PoolChangeResult:
        (self.tick.cordon if cordoned else self.tick.uncordon).extend(names)
        return PoolChangeResult(
            pool.metadata.name,
            cordoned=tuple(names) if cordoned else (),
            uncordoned=() if cordoned else tuple(names),
        )


def pipeline_of(trigger: Any) -> Pipeline:
    """How the controller that ships sees a trigger's source: through Prometheus (scrape interval and delay),
    whatever the trigger's `endpoint` says — the controller has no direct reader of an endpoint yet, so the
    replay gives it none either (the baselines' own direct reads, such as Knative's, are theirs)."""
    return PROMETHEUS


class SimMetrics(_Bound):
    """The controller's `ReadMetrics`: each request's queries (as its trigger type states them) answered by
    the simulator at what its pipeline has made visible, formed into a reading by the trigger type."""

    def __init__(self, registry: TriggerRegistry, epoch: datetime) -> None:
        super().__init__()
        self.registry = registry
        self.t0 = epoch.timestamp()

    def __call__(self, requests: Sequence[MetricRequest], now: float) -> Mapping[ReadingKey, Reading]:
        return {(r.policy, r.trigger): self.read_one(r) for r in requests}

    def read_one(self, request: MetricRequest) -> Reading:
        return sim_reading(self.registry, self.sim, request, self.t0)


def sim_reading(registry: TriggerRegistry, sim: Simulation, request: MetricRequest, t0: float) -> Reading:
    """One request read from the simulator: its trigger type's queries answered at the sample its pipeline
    has made visible, formed into a reading by the trigger type's own function."""
    kind = registry.get(request.spec.type)
    if kind.source != PROMETHEUS_SOURCE or kind.queries is None or kind.reading is None:
        return Reading(error=f"{kind.type} has no source in an LLM request trace")
    pipe = pipeline_of(request.spec)
    scope = Scope(request.namespace, request.pods, sim.model.scrape_interval_s)
    queries = kind.queries(request.spec, scope)
    results = {expr: sim_result(sim, expr, pipe, request.namespace, t0) for expr in queries.values()}
    return kind.reading(request.spec, scope, queries, results)


def sim_result(sim: Simulation, expr: str, pipe: Pipeline, namespace: str, t0: float) -> Result:
    """What Prometheus would answer for `expr` at this tick: a DCGM field's series one per GPU of each pod
    (labelled as dcgm-exporter labels them; `timestamp(…)` gives their scrape time), anything else the one
    series the simulator computes for it (a counter's rate over its window, a gauge, a GPU aggregate)."""
    stamp = expr.startswith("timestamp(")
    for field_name in UTILIZATION_FIELDS:
        if expr.startswith(f"{field_name}{{") or (stamp and expr.startswith(f"timestamp({field_name}{{")):
            got = sim.pod_gpu_metric(field_name, pipe)
            if got is None:
                return []
            per_pod, s = got
            at = t0 + s
            g = max(1, sim.model.gpus_per_replica)
            return [
                PromSample(
                    {"namespace": namespace, "pod": pod, "gpu": str(i), "UUID": f"GPU-{pod}-{i}"},
                    at if stamp else value,
                    at,
                )
                for pod, value in per_pod.items()
                for i in range(g)
            ]
    got_one = sim.query(expr, pipe)
    return [] if got_one is None else [PromSample({}, got_one.value, t0 + got_one.at)]


class LoopController:
    """The simulator's `Controller`: the shipped reconcile loop over the simulated cluster."""

    name = "tidescale"

    def __init__(
        self,
        policy: ScalingPolicy,
        pool: NodePool,
        registry: TriggerRegistry,
        manage_nodes: bool = True,
        config: ControllerConfig | None = None,
    ) -> None:
        self.policy = policy
        self.pool = pool
        self.clock = FakeClock(EPOCH)
        self.targets = SimTargets(policy.spec.target_ref.name)
        self.scaler = SimScaler()
        self.metrics = SimMetrics(registry, EPOCH)
        self.pools = SimNodePools(pool.spec.provider.type)
        self.ports: tuple[_Bound, ...] = (self.targets, self.scaler, self.metrics, self.pools)
        self.controller = Controller(
            self.targets,
            self.scaler,
            self.metrics,
            providers={self.pools.type: self.pools} if manage_nodes else {},
            config=config or ControllerConfig(),
            clock=self.clock,
            registry=registry,
        )
        document = policy.model_dump(mode="json", by_alias=True, exclude_none=True)
        document["metadata"] = document.get("metadata", {}) | {"generation": 1}
        self.controller.upsert(document)
        self.controller.upsert_pool(pool.model_dump(mode="json", by_alias=True, exclude_none=True))
        via = sorted({pipeline_of(t).label for t in policy.spec.triggers})
        names = list(self.controller.entries)
        self.description = (
            f"the controller's reconcile loop ({', '.join(names)}); triggers via {', '.join(via)}; "
            f"node pool {pool.metadata.name} {'planned by tidescale' if manage_nodes else 'fixed'}"
        )

    def step(self, sim: Simulation) -> Actions | None:
        tick = _Tick()
        for port in self.ports:
            port.point_at(sim, tick)
        now = EPOCH + timedelta(seconds=sim.t)
        self.clock.advance((now - self.clock.now()).total_seconds())
        self.controller.reconcile_once(now)
        return tick.actions()
