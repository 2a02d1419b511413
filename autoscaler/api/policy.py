"""The policy documents: `ScalingPolicy` and `NodePool` (apiVersion tidescale.io/v1alpha1) as pydantic models,
and loading them from YAML with errors that name file, line, field and reason.

A policy file holds one or more YAML documents (`---`); each is a `ScalingPolicy` or a `NodePool`.
Validation happens once, here; inside, code passes these frozen models and small dataclasses.
Percents are integers. Triggers are a discriminated union on `type`, derived from the built-in trigger
types (`autoscaler.core.triggers.BUILTIN_TYPES`), each of which holds its model beside its evaluator.

Pure apart from `read_policy_file`, which reads one file. No clock, no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union

import yaml
from pydantic import Field, ValidationError, model_validator

from autoscaler.api.base import Spec
from autoscaler.core.triggers import BUILTIN_TYPES, TriggerBase

# The built-in trigger models live with their trigger types (`autoscaler.core.triggers.<type>`); they are
# named here for the modules that take them from the policy documents. A new trigger type needs no line here.
from autoscaler.core.triggers.dcgm import DCGM_FIELDS, DCGMTrigger
from autoscaler.core.triggers.gpu_utilization import (
    UTILIZATION_FIELDS,
    GPUUtilizationTrigger,
)
from autoscaler.core.triggers.kafka_lag import KafkaLagTrigger
from autoscaler.core.triggers.prometheus import PrometheusTrigger
from autoscaler.core.triggers.queue_depth import QueueDepthTrigger
from autoscaler.core.triggers.schedule import (
    ScheduleTrigger,
    ScheduleWindow,
)
from autoscaler.core.triggers.slo import (
    CapacityProfile,
    Latency,
    SLOTrigger,
)
from jobs.vocabulary import NVIDIA_GPU, pod_request
from kernel.documents import document_path, documents_by_kind, line_of, load_documents, read_text
from kernel.errors import InvalidSpec

API_VERSION = "tidescale.io/v1alpha1"

# --- targetRef and metadata -------------------------------------------------------------------------------


class Metadata(Spec):
    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    namespace: str = "default"
    labels: dict[str, str] = {}


class TargetRef(Spec):
    """Anything with a /scale subresource: Deployment, StatefulSet, or a custom resource."""

    api_version: str = "apps/v1"
    kind: str = "Deployment"
    name: str = Field(min_length=1)


# --- triggers ---------------------------------------------------------------------------------------------


# The trigger union, derived from the one list of built-in trigger types: a discriminated union on `type`.
if TYPE_CHECKING:
    Trigger: TypeAlias = TriggerBase
else:
    Trigger = Annotated[Union[tuple(t.model for t in BUILTIN_TYPES)], Field(discriminator="type")]  # noqa: UP007
TRIGGER_TYPES = tuple(t.type for t in BUILTIN_TYPES)
# Signals that exist with zero pods (gateway, broker, Prometheus queries on other jobs); GPU series do not.
ZERO_POD_TYPES = frozenset(t.type for t in BUILTIN_TYPES if t.wakes_from_zero)
# The zero-pod types that measure something (a Schedule floor is not a signal to wake on).
_WAKE_SIGNALS = tuple(t.type for t in BUILTIN_TYPES if t.wakes_from_zero and t.source is not None)


# --- behavior (HPA semantics) -----------------------------------------------------------------------------


class RatePolicy(Spec):
    type: Literal["Pods", "Percent"]
    value: int = Field(ge=1)
    period_seconds: int = Field(ge=1, le=1800)


class ScalingRules(Spec):
    stabilization_window_seconds: int | None = Field(None, ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: list[RatePolicy] | None = None
    tolerance: int = Field(10, ge=0, le=100, description="percent around ratio 1.0 (KEP-4951)")


class Behavior(Spec):
    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


# --- scale to zero, fallback, forecast, panic -------------------------------------------------------------


class ScaleToZero(Spec):
    idle_seconds: int = Field(300, ge=0)
    # Trigger names whose activity wakes the target from zero; default: every trigger that exists with 0 pods.
    activation_triggers: list[str] | None = None


class Fallback(Spec):
    failure_threshold: int = Field(3, ge=0)
    replicas: int = Field(ge=0)
    behavior: Literal["static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"] = (
        "static"
    )


# Without `seasonality` (`none`, the default) the forecast is Holt's linear trend with an error band. With
# `daily`, `weekly` or `auto` (both) it is the seasonal ensemble of `autoscaler.core.forecast`: the recent
# level and, once a whole season has been seen, each season's profile of 5-minute buckets scaled by how the
# recent buckets compare with it, weighted by their recent errors (with less than a season of data: the
# level). A seasonal forecast also pre-warms the node pools: nodes for the demand it expects one node
# provisioning plus one model start ahead are asked for before the replicas that will need them.
class Forecast(Spec):
    """Online forecasting of demand one lead time ahead, from past samples only (Holt, or seasonal)."""

    horizon_seconds: int | None = Field(None, ge=0, description="default: the model start lead time")
    seasonality: Literal["none", "daily", "weekly", "auto"] = Field(
        "none",
        description=(
            "none: Holt's trend; daily, weekly or auto (both): a seasonal forecast that learns the day's "
            "and/or the week's profile of 5-minute buckets and pre-warms node pools"
        ),
    )
    headroom_percentile: int | None = Field(
        None,
        ge=50,
        le=100,
        description=(
            "seasonal forecasts only: scale the forecast by this percentile of the recent actual ÷ forecast "
            "ratios (last 3 h of 5-minute buckets), never below the forecast itself; default: none"
        ),
    )
    level_smoothing_percent: int = Field(
        30, ge=1, le=100, description="Holt's only (seasonality none); a seasonal forecast ignores it"
    )
    trend_smoothing_percent: int = Field(
        10, ge=0, le=100, description="Holt's only (seasonality none); a seasonal forecast ignores it"
    )
    trend_window_seconds: int | None = Field(
        None,
        ge=80,
        le=86400,
        description=(
            "seasonality none: a trend that bursts do not move, in place of Holt's smoothed one "
            "(trendSmoothingPercent is then not used): the median of the slopes between the mean demands of "
            "the window's 8 blocks (Theil–Sen), given once half of them are seen; a seasonal forecast "
            "ignores it"
        ),
    )
    band_sigmas_percent: int = Field(
        0,
        ge=0,
        le=1000,
        description=(
            "Holt's only (seasonality none): upper band in hundredths of sigma; a seasonal forecast ignores "
            "it (headroomPercentile is its headroom)"
        ),
    )
    # Keep capacity for the demand seen recently: this percentile of the last `historySeconds`.
    history_seconds: int = Field(300, ge=0, le=86400)
    history_percentile: int = Field(90, ge=0, le=100)

    @model_validator(mode="after")
    def _coherent(self) -> Forecast:
        # Holt's knobs are not refused beside a seasonality: a policy written back with its defaults (as the
        # replay and other clients dump it) names them all; they are documented as Holt's only
        if self.seasonality == "none" and self.headroom_percentile is not None:
            raise ValueError(
                "headroomPercentile: applies to a seasonal forecast; set seasonality to daily, weekly or "
                "auto, or leave headroomPercentile out (bandSigmasPercent is Holt's headroom)"
            )
        return self


class Panic(Spec):
    """Burst mode: short-window demand ≥ threshold × ready capacity scales at once and blocks scale-down."""

    threshold_percent: int = Field(200, ge=110, le=1000)
    stable_seconds: int = Field(60, ge=0)


class Lead(Spec):
    """Lead times the policy plans with (defaults for what the controller cannot measure)."""

    model_start_seconds: int = Field(60, ge=0)


class ScalingPolicySpec(Spec):
    target_ref: TargetRef
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(ge=1)
    triggers: list[Trigger] = Field(min_length=1)
    behavior: Behavior | None = None
    scale_to_zero: ScaleToZero | None = None
    fallback: Fallback | None = None
    forecast: Forecast | None = None
    panic: Panic | None = None
    lead: Lead = Lead()
    node_pool: str | None = None
    # One replica's requests, for node-pool plans (Kubernetes resource names and quantities).
    pod_requests: dict[str, str | int | float] = {"nvidia.com/gpu": 1, "cpu": "8", "memory": "64Gi"}

    @property
    def gpus_per_replica(self) -> int:
        return int(self.pod_requests.get(NVIDIA_GPU, 0))

    @model_validator(mode="after")
    def _coherent(self) -> ScalingPolicySpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas: {self.min_replicas} is above maxReplicas {self.max_replicas}")
        names = [trigger_name(t, i) for i, t in enumerate(self.triggers)]
        for i, n in enumerate(names):
            if names.index(n) != i:
                raise ValueError(f"triggers: duplicate trigger name {n!r}")
        if self.scale_to_zero is not None:
            if self.min_replicas != 0:
                raise ValueError("scaleToZero needs minReplicas: 0")
            wake = self.scale_to_zero.activation_triggers
            if wake is not None:
                for n in wake:
                    if n not in names:
                        raise ValueError(
                            f"scaleToZero.activationTriggers: no trigger {n!r} (known: {', '.join(names)})"
                        )
                    t = self.triggers[names.index(n)]
                    if t.type not in ZERO_POD_TYPES:
                        raise ValueError(
                            f"scaleToZero.activationTriggers: {n!r} is a {t.type} trigger, which has no "
                            "series while there are zero pods; wake on a gateway, queue or broker signal"
                        )
            elif not any(t.type in ZERO_POD_TYPES for t in self.triggers):
                raise ValueError(
                    "scaleToZero: no trigger exists with zero pods (GPU series vanish with the pods); "
                    f"add a {', '.join(_WAKE_SIGNALS[:-1])} or {_WAKE_SIGNALS[-1]} trigger"
                )
        elif self.min_replicas == 0:
            raise ValueError("minReplicas: 0 needs a scaleToZero section (idle period and activation)")
        try:
            pod_request(dict(self.pod_requests))
        except ValueError as e:
            raise ValueError(f"podRequests: {e}") from None
        if self.fallback is not None and self.fallback.replicas > self.max_replicas:
            raise ValueError(
                f"fallback.replicas: {self.fallback.replicas} is above maxReplicas {self.max_replicas}"
            )
        return self


class ScalingPolicy(Spec):
    api_version: Literal["tidescale.io/v1alpha1"]
    kind: Literal["ScalingPolicy"]
    metadata: Metadata
    spec: ScalingPolicySpec


class NodePoolScaleDown(Spec):
    idle_seconds: int = Field(600, ge=0)
    utilization_threshold: int = Field(50, ge=0, le=100, description="percent of GPUs requested")


class NodeShape(Spec):
    gpu_model: str = Field(min_length=1)
    gpus: int = Field(ge=1)
    gpu_memory_mib: int = Field(ge=1, alias="gpuMemoryMiB")
    cpu: str = Field(min_length=1)
    memory: str = Field(min_length=1)


class KwokProvider(Spec):
    """Nodes created as KWOK-managed Node objects (local use and tests)."""

    type: Literal["KWOK"]


class MachineDeploymentRef(Spec):
    namespace: str = "default"
    name: str = Field(min_length=1)


class ClusterAPIProvider(Spec):
    """Nodes from a Cluster API MachineDeployment, scaled through its /scale subresource."""

    type: Literal["ClusterAPI"]
    machine_deployment: MachineDeploymentRef


Provider = Annotated[KwokProvider | ClusterAPIProvider, Field(discriminator="type")]


class NodePoolSpec(Spec):
    node: NodeShape
    provider: Provider = KwokProvider(type="KWOK")
    min_nodes: int = Field(0, ge=0)
    max_nodes: int = Field(ge=1)
    hourly_price: float = Field(ge=0)
    provisioning_seconds: int = Field(ge=0)
    scale_down: NodePoolScaleDown = NodePoolScaleDown()
    labels: dict[str, str] = {}

    @model_validator(mode="after")
    def _coherent(self) -> NodePoolSpec:
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"minNodes: {self.min_nodes} is above maxNodes {self.max_nodes}")
        return self


class NodePool(Spec):
    api_version: Literal["tidescale.io/v1alpha1"]
    kind: Literal["NodePool"]
    metadata: Metadata
    spec: NodePoolSpec


def trigger_name(trigger: Any, index: int) -> str:
    """A trigger's name: its `name`, or `<type in lower case>-<index>`."""
    return str(trigger.name) if trigger.name else f"{str(trigger.type).lower()}-{index}"


# --- loading ----------------------------------------------------------------------------------------------

KINDS: dict[str, type[ScalingPolicy] | type[NodePool]] = {
    "ScalingPolicy": ScalingPolicy,
    "NodePool": NodePool,
}


@dataclass(frozen=True)
class PolicyFile:
    """The documents of one file, in order."""

    source: str
    policies: tuple[ScalingPolicy, ...]
    pools: tuple[NodePool, ...]

    def pool(self, name: str) -> NodePool | None:
        return next((p for p in self.pools if p.metadata.name == name), None)


_NAMED = re.compile(r"^([a-z][A-Za-z0-9]*(?:\.[a-z][A-Za-z0-9]*)*): (.+)$", re.DOTALL)


def _problems(err: ValidationError, data: Any, node: yaml.Node, prefix: str) -> list[str]:
    out = []
    for e in err.errors():
        loc = document_path(e["loc"], data, TRIGGER_TYPES.__contains__)
        msg = str(e["msg"])
        if msg.startswith(("Value error, ", "Assertion failed, ")):
            msg = msg.split(", ", 1)[1]
            # our validators name the field they are about first: "target: 170% is above 100% …"
            named = _NAMED.match(msg)
            if named:
                loc = (*loc, *named.group(1).split("."))
                msg = named.group(2)
        field = ".".join(str(p) for p in loc) or "(document)"
        if e["type"] == "union_tag_invalid":
            msg = f"no trigger type {e['input'].get('type')!r} (known: {', '.join(TRIGGER_TYPES)})"
        elif e["type"] == "union_tag_not_found":
            msg = f"a trigger needs a type (known: {', '.join(TRIGGER_TYPES)})"
        out.append(f"{line_of(node, tuple(loc))}: {prefix}{field}: {msg}")
    return out


def parse_policy_file(text: str, source: str = "<policy>") -> PolicyFile:
    """Every document of a policy file, validated; InvalidSpec lists each problem as `LINE: field: reason`."""
    docs = load_documents(text, source)
    problems: list[str] = []
    policies: list[ScalingPolicy] = []
    pools: list[NodePool] = []
    for _, node, data, prefix, model in documents_by_kind(docs, KINDS, problems):
        try:
            doc = model.model_validate(data)
        except ValidationError as e:
            problems.extend(_problems(e, data, node, prefix))
            continue
        if isinstance(doc, ScalingPolicy):
            policies.append(doc)
        else:
            pools.append(doc)
    if problems:
        raise InvalidSpec(source, problems)
    return PolicyFile(source, tuple(policies), tuple(pools))


def read_policy_file(path: Path) -> PolicyFile:
    return parse_policy_file(read_text(path), str(path))


__all__ = [
    "API_VERSION",
    "DCGM_FIELDS",
    "KINDS",
    "TRIGGER_TYPES",
    "UTILIZATION_FIELDS",
    "ZERO_POD_TYPES",
    "Behavior",
    "CapacityProfile",
    "ClusterAPIProvider",
    "DCGMTrigger",
    "Fallback",
    "Forecast",
    "GPUUtilizationTrigger",
    "KafkaLagTrigger",
    "KwokProvider",
    "Latency",
    "Lead",
    "MachineDeploymentRef",
    "Metadata",
    "NodePool",
    "NodePoolScaleDown",
    "NodePoolSpec",
    "NodeShape",
    "Panic",
    "PolicyFile",
    "PrometheusTrigger",
    "Provider",
    "QueueDepthTrigger",
    "RatePolicy",
    "SLOTrigger",
    "ScaleToZero",
    "ScalingPolicy",
    "ScalingPolicySpec",
    "ScalingRules",
    "ScheduleTrigger",
    "ScheduleWindow",
    "Spec",
    "TargetRef",
    "Trigger",
    "TriggerBase",
    "parse_policy_file",
    "read_policy_file",
    "trigger_name",
]
