"""The policy documents: `ScalingPolicy` and `NodePool` (apiVersion tidescale.io/v1alpha1) as pydantic models,
and loading them from YAML with errors that name file, line, field and reason.

A policy file holds one or more YAML documents (`---`); each is a `ScalingPolicy` or a `NodePool`.
Validation happens once, here; inside, code passes these frozen models and small dataclasses.
Percents are integers. Triggers are a discriminated union on `type`; the registry of evaluators
that gives each `type` its meaning lives in `autoscaler.core.triggers`.

Pure apart from `read_policy_file`, which reads one file. No clock, no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from autoscaler.api.cron import CronError, parse_cron
from jobs.vocabulary import NVIDIA_GPU, pod_request
from kernel.documents import document_path, line_of, load_documents
from kernel.errors import InvalidSpec

API_VERSION = "tidescale.io/v1alpha1"

# DCGM fields the GPUUtilization trigger accepts and the scale of their raw values: the DCGM `PROF` fields
# are ratios 0–1, the `DEV_*_UTIL` fields percents (../shared/reference/gpu-metrics.md §2).
UTILIZATION_FIELDS: dict[str, float] = {
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": 100.0,
    "DCGM_FI_PROF_SM_ACTIVE": 100.0,
    "DCGM_FI_PROF_SM_OCCUPANCY": 100.0,
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": 100.0,
    "DCGM_FI_PROF_DRAM_ACTIVE": 100.0,
    "DCGM_FI_DEV_GPU_UTIL": 1.0,
    "DCGM_FI_DEV_MEM_COPY_UTIL": 1.0,
}
# Other DCGM gauges a `DCGM` trigger may scale on, with their unit (targets are in that unit).
DCGM_FIELDS: dict[str, str] = {
    "DCGM_FI_DEV_FB_USED": "MiB",
    "DCGM_FI_DEV_FB_FREE": "MiB",
    "DCGM_FI_DEV_POWER_USAGE": "W",
    "DCGM_FI_DEV_GPU_TEMP": "°C",
    "DCGM_FI_DEV_MEMORY_TEMP": "°C",
    "DCGM_FI_PROF_PCIE_TX_BYTES": "B/s",
    "DCGM_FI_PROF_PCIE_RX_BYTES": "B/s",
    **{name: "ratio" if scale == 100.0 else "%" for name, scale in UTILIZATION_FIELDS.items()},
}


class Spec(BaseModel):
    """Base of the edge models: frozen, strict about unknown fields, camelCase in documents."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


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


class TriggerBase(Spec):
    name: str | None = Field(None, pattern=r"^[a-z][a-z0-9-]*$")
    # A sample older than this is treated as missing (stale series; gpu-metrics.md §1).
    max_sample_age_seconds: int = Field(120, ge=1)
    # How often the controller reads this trigger's source. Below the Prometheus scrape interval it needs
    # `endpoint` (the exporter's /metrics read directly, as Knative reads its queue-proxies).
    poll_seconds: int | None = Field(None, ge=1)
    endpoint: str | None = None


class GPUUtilizationTrigger(TriggerBase):
    """Per-GPU utilisation from DCGM, aggregated over the target's GPUs, against a percent target."""

    type: Literal["GPUUtilization"]
    metric: str = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
    aggregation: Literal["mean", "max", "sum"] = "mean"
    target: int = Field(ge=1, le=10000, description="percent; per GPU for mean/max, per replica for sum")

    @model_validator(mode="after")
    def _known_metric(self) -> GPUUtilizationTrigger:
        if self.metric not in UTILIZATION_FIELDS:
            raise ValueError(
                f"metric: not a DCGM utilisation field: {self.metric!r} "
                f"(known: {', '.join(sorted(UTILIZATION_FIELDS))})"
            )
        if self.aggregation != "sum" and self.target > 100:
            raise ValueError(f"target: {self.target}% is above 100% for aggregation {self.aggregation}")
        return self


class DCGMTrigger(TriggerBase):
    """Any DCGM gauge (memory, power, temperature, PCIe) in its own unit, over the target's GPUs."""

    type: Literal["DCGM"]
    metric: str
    aggregation: Literal["mean", "max", "sum"] = "mean"
    target: float = Field(gt=0)

    @model_validator(mode="after")
    def _known_metric(self) -> DCGMTrigger:
        if self.metric not in DCGM_FIELDS:
            raise ValueError(
                f"metric: not a DCGM gauge tidescale knows: {self.metric!r} "
                f"(known: {', '.join(sorted(DCGM_FIELDS))})"
            )
        return self


class PrometheusTrigger(TriggerBase):
    """A raw PromQL instant query returning one series: `Value` (per replica) or `AverageValue` (a total)."""

    type: Literal["Prometheus"]
    query: str = Field(min_length=1)
    target_type: Literal["Value", "AverageValue"] = "AverageValue"
    target: float = Field(gt=0)
    activation_threshold: float = Field(0, ge=0)


class KafkaLagTrigger(TriggerBase):
    """Consumer-group lag of a topic: `ceil(lag / lagPerReplica)`, capped at the partition count."""

    type: Literal["KafkaLag"]
    topic: str = Field(min_length=1)
    group: str = Field(min_length=1)
    bootstrap_servers: str | None = None
    lag_per_replica: int = Field(ge=1)
    activation_lag: int = Field(0, ge=0)
    allow_idle_consumers: bool = False


class QueueDepthTrigger(TriggerBase):
    """Requests waiting at the gateway (a signal that exists with zero pods), per replica."""

    type: Literal["QueueDepth"]
    query: str = Field(min_length=1)
    target_per_replica: int = Field(ge=1)
    activation_threshold: int = Field(0, ge=0)


class ScheduleWindow(Spec):
    cron: str
    duration_seconds: int = Field(ge=60)
    replicas: int = Field(ge=0)

    @model_validator(mode="after")
    def _cron(self) -> ScheduleWindow:
        try:
            parse_cron(self.cron)
        except CronError as e:
            raise ValueError(f"cron: {e}") from None
        return self


class ScheduleTrigger(TriggerBase):
    """Replica floors during cron windows (UTC): the policy never goes below `replicas` inside a window."""

    type: Literal["Schedule"]
    windows: list[ScheduleWindow] = Field(min_length=1)


class Latency(Spec):
    percentile: int = Field(99, ge=50, le=100)
    target_milliseconds: int = Field(ge=1)


class CapacityProfile(Spec):
    """What one replica sustains, measured by a load test: prefill and decode tokens per second."""

    prefill_tokens_per_second: float = Field(gt=0)
    decode_tokens_per_second: float = Field(gt=0)
    # Used before token rates have been observed (and when the token series are not provided).
    mean_prompt_tokens: int = Field(1024, ge=0)
    mean_generated_tokens: int = Field(128, ge=0)


class SLOTrigger(TriggerBase):
    """A latency objective and a per-replica capacity profile → the replicas that meet it (queueing model)."""

    type: Literal["SLO"]
    latency: Latency
    capacity: CapacityProfile
    request_rate_query: str = Field(min_length=1)
    prompt_token_rate_query: str | None = None
    generated_token_rate_query: str | None = None
    queue_query: str | None = None
    # Rate windows: a long one for steady sizing and a short one (a tenth of it) that catches bursts.
    window_seconds: int = Field(60, ge=5)
    # A backlog is sized to drain within this time; replicas added for it serve only after their model start.
    drain_seconds: int = Field(60, ge=1)
    activation_threshold: float = Field(0, ge=0)


Trigger = Annotated[
    GPUUtilizationTrigger
    | DCGMTrigger
    | PrometheusTrigger
    | KafkaLagTrigger
    | QueueDepthTrigger
    | ScheduleTrigger
    | SLOTrigger,
    Field(discriminator="type"),
]
TRIGGER_TYPES = ("GPUUtilization", "DCGM", "Prometheus", "KafkaLag", "QueueDepth", "Schedule", "SLO")
# Signals that exist with zero pods (gateway, broker, Prometheus queries on other jobs); GPU series do not.
ZERO_POD_TYPES = frozenset({"Prometheus", "KafkaLag", "QueueDepth", "SLO", "Schedule"})


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


class Forecast(Spec):
    """Online forecasting of demand from past samples only (Holt's linear trend with an error band)."""

    horizon_seconds: int | None = Field(None, ge=0, description="default: the model start lead time")
    level_smoothing_percent: int = Field(30, ge=1, le=100)
    trend_smoothing_percent: int = Field(10, ge=0, le=100)
    band_sigmas_percent: int = Field(0, ge=0, le=1000, description="upper band in hundredths of sigma")
    # Keep capacity for the demand seen recently: this percentile of the last `historySeconds`.
    history_seconds: int = Field(300, ge=0, le=86400)
    history_percentile: int = Field(90, ge=0, le=100)


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
                    "add a QueueDepth, KafkaLag, SLO or Prometheus trigger"
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
    for k, (node, data) in enumerate(docs):
        prefix = f"[document {k + 1}] " if len(docs) > 1 else ""
        line = node.start_mark.line + 1
        if not isinstance(data, dict):
            problems.append(
                f"{line}: {prefix}(document): a mapping with apiVersion and kind, not {type(data).__name__}"
            )
            continue
        kind = data.get("kind")
        model = KINDS.get(str(kind))
        if model is None:
            problems.append(
                f"{line_of(node, ('kind',))}: {prefix}kind: no kind {kind!r} (known: {', '.join(KINDS)})"
            )
            continue
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
    if not path.is_file():
        raise InvalidSpec(str(path), ["0: (document): file not found"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidSpec(str(path), [f"0: (document): cannot read: {e}"]) from None
    return parse_policy_file(text, str(path))
