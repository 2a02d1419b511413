"""The launcher's YAML vocabulary, `tidescale.io/v1alpha1`: InferenceService, TrainingJob, BatchJob.

```yaml
apiVersion: tidescale.io/v1alpha1
kind: TrainingJob
metadata: {name: llama-ft, namespace: research}
spec:
  image: trainer:1
  command: [torchrun, train.py]
  workers: 4                      # an Indexed Job; MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK set
  resources: {cpu: "16", memory: 128Gi, gpus: 2, devices: {rdma/hca: 1}}
  queue: research                 # a Volcano Queue; the gang's PodGroup is in it
  gang: true                      # the default: all workers bound together or none
```

One pod's `resources` ask whole GPUs (`gpus: N`, `nvidia.com/gpu`), a share of one GPU (`gpuShare:
{memoryMiB, cores}`, HAMi's `nvidia.com/gpumem` and `nvidia.com/gpucores`) or vGPU slices (`vgpu: {ratio:
2|4|8}`, `nvidia.com/gpu` plus the `tidescale.io/vgpu-ratio` annotation) — at most one of the three — and
any other resource by its Kubernetes name under `devices`. An InferenceService may carry its
`scalingPolicy` inline: the spec of a `ScalingPolicy` without `targetRef`, which is the service's
Deployment; it is kept as a mapping here and validated with the model the composition root passes in
(`parse_jobs(..., scaling_policy=ScalingPolicy)`), since jobs may not import the autoscaler.

A file may hold several jobs (`---`); errors name the file, the line and the field of every problem.

Pure apart from `read_jobs`, which reads one file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from jobs.snapshot import Quantity, _check_quantities
from jobs.vocabulary import HAMI_CORES, HAMI_MEM, NVIDIA_GPU, VGPU_RATIO, pod_request
from jobs.workload import TolerationSpec
from kernel.documents import Spec, document_path, documents_by_kind, line_of, load_documents, read_text
from kernel.errors import InvalidSpec

API_VERSION = "tidescale.io/v1alpha1"
KIND_NAMES = ("InferenceService", "TrainingJob", "BatchJob")
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX = 50  # room for `-master`, `-<index>` and the Job controller's suffixes inside 63
DEFAULT_SCHEDULER = "tidescale"
DEFAULT_QUEUE = "default"
DEFAULT_MASTER_PORT = 29500  # torch.distributed's default
DEFAULT_SERVICE_PORT = 8000
# Resource names a pod's `resources` sets through its own fields, not through `devices`.
_GPU_FIELDS = {NVIDIA_GPU: "gpus", HAMI_MEM: "gpuShare", HAMI_CORES: "gpuShare"}


def _quantity(value: Quantity) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _env_value(x: Any) -> Any:
    if isinstance(x, bool):
        return str(x).lower()
    return str(x) if isinstance(x, int | float) else x


class GpuShare(Spec):
    """A share of one GPU, isolated HAMi-style: memory in MiB and, optionally, a percent of its cores."""

    memory_mib: int = Field(alias="memoryMiB", gt=0)
    cores: int | None = Field(None, ge=1, le=100)


class VGpu(Spec):
    """`count` fixed slices of 1/`ratio` GPU each."""

    ratio: Literal[2, 4, 8]
    count: int = Field(1, ge=1)


class Resources(Spec):
    """What one pod asks (rendered as container limits; requests default to them)."""

    cpu: Quantity | None = None
    memory: Quantity | None = None
    gpus: int | None = Field(None, ge=1)
    gpu_share: GpuShare | None = None
    vgpu: VGpu | None = None
    devices: dict[str, Quantity] = {}  # any other resource by name: rdma/hca, huawei.com/Ascend910, …

    @field_validator("cpu", "memory")
    @classmethod
    def _scalar(cls, v: Quantity | None) -> Quantity | None:
        # one spelling whatever the YAML's type (`cpu: 8` and `--cpu 8` are the same job)
        return None if v is None else _quantity(v)

    @field_validator("devices")
    @classmethod
    def _devices(cls, v: dict[str, Quantity]) -> dict[str, Quantity]:
        for name in v:
            if name in _GPU_FIELDS:
                raise ValueError(f"{name}: ask GPUs with `{_GPU_FIELDS[name]}`, not under devices")
            if name in ("cpu", "memory"):
                raise ValueError(f"{name}: ask it with `{name}`, not under devices")
        _check_quantities(v)
        return {k: _quantity(x) for k, x in v.items()}

    @model_validator(mode="after")
    def _one_gpu_form(self) -> Resources:
        forms = [n for n, v in (("gpus", self.gpus), ("gpuShare", self.gpu_share), ("vgpu", self.vgpu)) if v]
        if len(forms) > 1:
            raise ValueError(f"{' and '.join(forms)}: ask GPUs one way (whole, shared or vGPU slices)")
        try:
            pod_request(self.limits(), self.annotations())
        except ValueError as e:
            raise ValueError(str(e)) from None
        return self

    def limits(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.cpu is not None:
            out["cpu"] = _quantity(self.cpu)
        if self.memory is not None:
            out["memory"] = _quantity(self.memory)
        if self.gpus:
            out[NVIDIA_GPU] = str(self.gpus)
        if self.gpu_share is not None:
            out[NVIDIA_GPU] = "1"
            out[HAMI_MEM] = str(self.gpu_share.memory_mib)
            if self.gpu_share.cores is not None:
                out[HAMI_CORES] = str(self.gpu_share.cores)
        if self.vgpu is not None:
            out[NVIDIA_GPU] = str(self.vgpu.count)
        out |= {k: _quantity(v) for k, v in self.devices.items()}
        return out

    def annotations(self) -> dict[str, str]:
        return {VGPU_RATIO: str(self.vgpu.ratio)} if self.vgpu is not None else {}


class Metadata(Spec):
    name: str = Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)
    namespace: str | None = Field(None, min_length=1, max_length=63, pattern=NAME_PATTERN)
    labels: dict[str, str] = {}


class Workload(Spec):
    """What every kind's pods share: the container, its resources, and how the scheduler sees them."""

    image: str = Field(min_length=1)
    command: list[str] = []
    args: list[str] = []
    env: dict[str, str] = {}
    resources: Resources = Resources()
    queue: str | None = Field(None, min_length=1)  # a Volcano Queue; unset: `--queue`, else `default`
    priority: str | None = Field(None, min_length=1)  # a PriorityClass name (Arena's --priority)
    node_selector: dict[str, str] = {}
    tolerations: list[TolerationSpec] = []
    annotations: dict[str, str] = {}  # extra pod annotations (e.g. nvidia.com/use-gputype)
    scheduler_name: str | None = Field(None, min_length=1)  # unset: `tidescale`

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, v: Any) -> Any:
        # YAML reads `WORKERS: 4` as a number and `DEBUG: true` as a boolean; the container sees strings
        if isinstance(v, Mapping):
            return {k: _env_value(x) for k, x in v.items()}
        return v


class InferenceServiceSpec(Workload):
    replicas: int = Field(1, ge=0)
    port: int = Field(DEFAULT_SERVICE_PORT, ge=1, le=65535)
    scaling_policy: dict[str, Any] | None = None  # a ScalingPolicy's spec without targetRef

    @field_validator("scaling_policy")
    @classmethod
    def _no_target(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and "targetRef" in v:
            raise ValueError("targetRef: set by the launcher (the service's Deployment); leave it out")
        return v


class Master(Spec):
    """A rank-0 pod apart from the workers; unset fields are the workers'."""

    image: str | None = Field(None, min_length=1)
    command: list[str] | None = None
    args: list[str] | None = None
    resources: Resources | None = None


class TrainingJobSpec(Workload):
    workers: int = Field(ge=1)
    master: Master | None = None
    gang: bool = True
    min_available: int | None = Field(None, ge=1)  # of the gang; unset: every pod
    port: int = Field(DEFAULT_MASTER_PORT, ge=1, le=65535)  # MASTER_PORT
    backoff_limit: int = Field(0, ge=0)

    @property
    def pods(self) -> int:
        return self.workers + (1 if self.master is not None else 0)

    @model_validator(mode="after")
    def _coherent(self) -> TrainingJobSpec:
        if self.min_available is not None and not self.gang:
            raise ValueError("minAvailable: only a gang has one (gang: false)")
        if self.min_available is not None and self.min_available > self.pods:
            raise ValueError(f"minAvailable: {self.min_available} is more than the job's {self.pods} pods")
        if self.master is not None and not (self.command or self.args):
            # the workers' RANK is their index + 1, set by a shell prefix in front of their command
            raise ValueError("master: the workers need a command (their RANK is set in front of it)")
        return self


class BatchJobSpec(Workload):
    completions: int = Field(1, ge=1)
    parallelism: int = Field(1, ge=1)
    backoff_limit: int = Field(6, ge=0)


class InferenceService(Spec):
    api_version: Literal["tidescale.io/v1alpha1"]
    kind: Literal["InferenceService"]
    metadata: Metadata
    spec: InferenceServiceSpec

    def policy_document(self, namespace: str = "default") -> dict[str, Any] | None:
        """The ScalingPolicy the service carries, aimed at its Deployment (its pod requests filled in from
        the service's resources when the policy does not give them)."""
        if self.spec.scaling_policy is None:
            return None
        spec = dict(self.spec.scaling_policy)
        spec["targetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.metadata.name}
        limits = self.spec.resources.limits()
        if "podRequests" not in spec and limits:
            spec["podRequests"] = limits
        return {
            "apiVersion": API_VERSION,
            "kind": "ScalingPolicy",
            "metadata": {"name": self.metadata.name, "namespace": namespace},
            "spec": spec,
        }


class TrainingJob(Spec):
    api_version: Literal["tidescale.io/v1alpha1"]
    kind: Literal["TrainingJob"]
    metadata: Metadata
    spec: TrainingJobSpec


class BatchJob(Spec):
    api_version: Literal["tidescale.io/v1alpha1"]
    kind: Literal["BatchJob"]
    metadata: Metadata
    spec: BatchJobSpec


Job = InferenceService | TrainingJob | BatchJob
MODELS: dict[str, type[InferenceService] | type[TrainingJob] | type[BatchJob]] = {
    "InferenceService": InferenceService,
    "TrainingJob": TrainingJob,
    "BatchJob": BatchJob,
}


_NAMED = re.compile(r"^([a-z][A-Za-z0-9]*(?:\.[a-z][A-Za-z0-9]*)*): (.+)$", re.DOTALL)


def _located(err: Mapping[str, Any], loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], str]:
    """The problem's path and message; a validator's message that names its field first (`target: 170% is
    above 100%`) moves that field into the path."""
    msg = str(err["msg"])
    if msg.startswith(("Value error, ", "Assertion failed, ")):
        msg = msg.split(", ", 1)[1]
        named = _NAMED.match(msg)
        if named:
            return (*loc, *named.group(1).split(".")), named.group(2)
    return loc, msg


def _problems(e: ValidationError, data: Any, node: yaml.Node, prefix: str) -> list[str]:
    out: list[tuple[int, str]] = []
    for err in e.errors():
        loc, msg = _located(err, document_path(err["loc"], data))
        field = ".".join(str(p) for p in loc) or "(document)"
        out.append((line_of(node, loc), f"{prefix}{field}: {msg}"))
    return [f"{line}: {text}" for line, text in sorted(out, key=lambda t: t[0])]


def _policy_problems(
    job: InferenceService, model: type[BaseModel], node: yaml.Node, prefix: str
) -> list[str]:
    doc = job.policy_document()
    if doc is None:
        return []
    try:
        model.model_validate(doc)
    except ValidationError as e:
        out = []
        for err in e.errors():
            loc, msg = _located(err, document_path(err["loc"], doc))
            # the policy's spec is the service's spec.scalingPolicy
            where = ("spec", "scalingPolicy", *loc[1:]) if loc[:1] == ("spec",) else ("spec", "scalingPolicy")
            field = ".".join(str(p) for p in where)
            out.append(f"{line_of(node, where)}: {prefix}{field}: {msg}")
        return out
    return []


def parse_jobs(
    text: str, source: str = "<jobs>", scaling_policy: type[BaseModel] | None = None
) -> tuple[Job, ...]:
    """Every job of a file, validated; InvalidSpec lists each problem as `LINE: field: reason`.

    `scaling_policy`: the model an InferenceService's inline policy must satisfy (the autoscaler's
    `ScalingPolicy`, passed in by the composition root); None checks only that it is a mapping."""
    docs = load_documents(text, source)
    problems: list[str] = []
    jobs: list[Job] = []
    seen: dict[tuple[str | None, str], int] = {}
    for k, node, data, prefix, model in documents_by_kind(docs, MODELS, problems, KIND_NAMES):
        try:
            job: Job = model.model_validate(data)
        except ValidationError as e:
            problems.extend(_problems(e, data, node, prefix))
            continue
        if isinstance(job, InferenceService) and scaling_policy is not None:
            found = _policy_problems(job, scaling_policy, node, prefix)
            if found:
                problems.extend(found)
                continue
        key = (job.metadata.namespace, job.metadata.name)
        if key in seen:
            problems.append(
                f"{line_of(node, ('metadata', 'name'))}: {prefix}metadata.name: {job.metadata.name!r} "
                f"is also the name of document {seen[key]}"
            )
            continue
        seen[key] = k + 1
        jobs.append(job)
    if problems:
        raise InvalidSpec(source, problems)
    return tuple(jobs)


def read_jobs(path: Path, scaling_policy: type[BaseModel] | None = None) -> tuple[Job, ...]:
    return parse_jobs(read_text(path), str(path), scaling_policy)
