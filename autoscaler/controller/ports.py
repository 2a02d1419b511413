"""The controller's roles, one `typing.Protocol` each, and the plain values that cross them.

The loop (`autoscaler.controller.loop`) only talks to these: metric sources read one trigger kind for every
policy at once, a replica target reads and patches /scale, a node-pool provider lists, adds and removes a
pool's nodes, an event sink records decisions. Implementations live one per module beside this one and are
wired in `autoscaler.controller.wiring`; tests use recording fakes of the same protocols where the test is
about the loop's decisions, and the real implementations against the local environment otherwise.

No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from autoscaler.api.policy import NodePool
from autoscaler.core.decide import Decision
from autoscaler.core.nodepool import PoolNode
from autoscaler.core.triggers import Reading

# Readings are keyed by (policy key "namespace/name", trigger name).
ReadingKey = tuple[str, str]


@dataclass(frozen=True)
class MetricRequest:
    """One trigger of one policy that a metric source should read."""

    policy: str  # "namespace/name" of the ScalingPolicy
    trigger: str  # the trigger's name (`autoscaler.api.policy.trigger_name`)
    spec: Any  # the trigger model (GPUUtilizationTrigger, PrometheusTrigger, KafkaLagTrigger, …)
    namespace: str  # the target's namespace
    pods: frozenset[str] = frozenset()  # the target's pod names (for per-pod DCGM series)


class MetricSource(Protocol):
    """Reads every request of the trigger kinds it serves in one batch (one PromQL query per kind, one
    admin round per Kafka cluster), never one call per policy."""

    kinds: frozenset[str]  # the trigger `type:` values it reads

    def read(self, requests: Sequence[MetricRequest], now: float) -> Mapping[ReadingKey, Reading]:
        """A reading for every request: a value, per-GPU values or series, or `Reading(error=…)` saying why
        there is none (the source is down, the query returned nothing). Never raises for one bad request."""
        ...


@dataclass(frozen=True)
class ScaleView:
    """A target's /scale subresource."""

    namespace: str
    kind: str
    name: str
    replicas: int  # spec.replicas
    ready: int  # status.replicas as /scale reports it (or readyReplicas where the workload has them)
    selector: str  # status.selector: the label selector of the target's pods
    resource_version: str = ""
    api_version: str = "apps/v1"


class ReplicaTarget(Protocol):
    """Reads and writes a workload's replicas through its /scale subresource."""

    def read(self, namespace: str, api_version: str, kind: str, name: str) -> ScaleView: ...

    def scale(self, view: ScaleView, replicas: int) -> ScaleView:
        """Set spec.replicas. Raises `kernel.errors.NotFound` when the target is gone, `Conflict` when it kept
        changing under the update (after retries), another `TemporaryError` when the API server did not answer
        or failed, `PermanentError` when it refused (403 forbidden, 422 invalid)."""
        ...


@dataclass(frozen=True)
class PoolChangeResult:
    """What a provider did for one `NodePoolChange`."""

    pool: str
    added: tuple[str, ...] = ()  # node (or machine) names created or requested
    removed: tuple[str, ...] = ()
    cordoned: tuple[str, ...] = ()
    uncordoned: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()  # nodes not drained: a PodDisruptionBudget refused an eviction
    reason: str = ""


class NodePoolProvider(Protocol):
    """Lists and changes the nodes of one kind of node pool (`NodePool.spec.provider.type`)."""

    type: str  # "KWOK" or "ClusterAPI"

    def nodes(self, pool: NodePool, now: float, previous: Mapping[str, PoolNode]) -> tuple[PoolNode, ...]:
        """The pool's nodes (ready and provisioning) with their GPU requests, carrying `below_since` over."""
        ...

    def provisioning(self, pool: NodePool) -> int:
        """Nodes asked for that have no Node object yet (Cluster API machines still booting); they count
        against the pool's capacity so that the next reconcile does not ask for them again."""
        ...

    def add(self, pool: NodePool, count: int) -> PoolChangeResult: ...

    def remove(self, pool: NodePool, names: Sequence[str]) -> PoolChangeResult:
        """Cordon, drain (evictions that respect PodDisruptionBudgets), then delete; a node whose drain is
        refused stays, cordoned, and is reported in `blocked`."""
        ...

    def cordon(self, pool: NodePool, names: Sequence[str], cordoned: bool) -> PoolChangeResult: ...


@dataclass(frozen=True)
class ActFailure:
    """Why the loop could not act on a decision, as operators are told: the reason of the `Ready=False`
    condition and of the Warning Event, and a sentence naming the target and the API server's answer."""

    # TargetNotFound, ScaleFailed; a misconfiguration: NodePoolNotFound, MetricsUnavailable, PodsPending …
    reason: str
    message: str
    kind: str  # the error's class: NotFound, Conflict, Temporary, Permanent; Misconfigured


@dataclass(frozen=True)
class ScalingEvent:
    """A decision worth telling operators about, as every sink receives it."""

    decision: Decision
    record: Mapping[str, Any]  # `autoscaler.core.events.record(decision)` plus what the shell did
    acted: bool  # the /scale patch or the node-pool change was made
    # (apiVersion, kind, namespace, name) of the target
    involved: tuple[str, str, str, str] = ("", "", "", "")
    extra: Mapping[str, str] = field(default_factory=dict)
    # set when the decision could not be applied (the target is gone, the patch was refused or kept failing):
    # the event reports the failure, not the decision, and `acted` is False
    failure: ActFailure | None = None
    # set when a failure or a misconfiguration cleared (TargetFound, NodePoolFound, MetricsAvailable,
    # PodsScheduled): the event is a Normal one saying so, not a decision
    recovery: ActFailure | None = None


class EventSink(Protocol):
    """Records scaling events: a Kubernetes Event, a Kafka record, metrics."""

    def emit(self, event: ScalingEvent) -> None:
        """Never raises: a sink that cannot deliver reports it (log, metric) and drops nothing else."""
        ...
