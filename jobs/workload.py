"""Pod groups: the YAML/JSON edge model of a unit of work and its in-memory form.

A pod group is a set of tasks (each `replicas` identical pods with Kubernetes resource requests,
annotations, node selector and tolerations), the queue it is submitted to, its priority, and how it
must be placed (`placement`, a composition of the plugins in `jobs.placement`: Binpack, Spread, FGD,
Tidescale, Topology, Gang, Bundle).

Pure apart from `read_pod_group`, which reads one file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from jobs.snapshot import Quantity, Toleration, _check_quantities
from jobs.vocabulary import PodRequest, pod_request
from kernel.documents import Spec, parse_document, read_text


class TolerationSpec(Spec):
    key: str = ""
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""


class TaskSpec(Spec):
    name: str = Field(min_length=1)
    replicas: int = Field(1, ge=1)
    requests: dict[str, Quantity] = {}
    annotations: dict[str, str] = {}
    node_selector: dict[str, str] = {}
    tolerations: list[TolerationSpec] = []

    @field_validator("requests")
    @classmethod
    def _quantities(cls, v: dict[str, Quantity]) -> dict[str, Quantity]:
        _check_quantities(v)
        return v

    @model_validator(mode="after")
    def _translates(self) -> TaskSpec:
        pod_request(self.requests, self.annotations)  # raises ValueError naming the resource
        return self


class BinpackSpec(Spec):
    type: Literal["Binpack"] = "Binpack"
    weights: dict[str, int] = {"cpu": 1, "memory": 1, "gpu": 2}


class SpreadSpec(Spec):
    type: Literal["Spread"] = "Spread"
    weights: dict[str, int] = {"cpu": 1, "memory": 1, "gpu": 2}


class FGDSpec(Spec):
    type: Literal["FGD"] = "FGD"


class TidescaleSpec(Spec):
    type: Literal["Tidescale"] = "Tidescale"


class TopologySpec(Spec):
    type: Literal["Topology"] = "Topology"
    key: str = Field(min_length=1)
    mode: Literal["hard", "soft"] = "hard"
    inner: PlacementSpec = Field(default_factory=BinpackSpec)


class GangSpec(Spec):
    type: Literal["Gang"] = "Gang"
    min_member: int | None = Field(None, ge=1)
    inner: PlacementSpec = Field(default_factory=BinpackSpec)


class BundleSpec(Spec):
    type: Literal["Bundle"] = "Bundle"
    key: str = "node"
    inner: PlacementSpec = Field(default_factory=BinpackSpec)


PlacementSpec = Annotated[
    BinpackSpec | SpreadSpec | FGDSpec | TidescaleSpec | TopologySpec | GangSpec | BundleSpec,
    Field(discriminator="type"),
]
for _m in (TopologySpec, GangSpec, BundleSpec):
    _m.model_rebuild()


class MetadataSpec(Spec):
    name: str = Field(min_length=1)
    namespace: str = "default"


class PodGroupBody(Spec):
    queue: str = "default"
    priority: int = 0
    placement: PlacementSpec = Field(default_factory=BinpackSpec)
    tasks: list[TaskSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_tasks(self) -> PodGroupBody:
        names = [t.name for t in self.tasks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"task names must be unique: {', '.join(dup)}")
        return self


class PodGroupSpec(Spec):
    api_version: Literal["tidescale.io/v1alpha1"] = "tidescale.io/v1alpha1"
    kind: Literal["PodGroup"] = "PodGroup"
    metadata: MetadataSpec
    spec: PodGroupBody


@dataclass(frozen=True)
class Pod:
    """One pod of a group, ready to place."""

    name: str
    task: str
    request: PodRequest
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()


@dataclass(frozen=True)
class PodGroup:
    name: str
    pods: tuple[Pod, ...]
    placement: PlacementSpec = field(default_factory=BinpackSpec)
    namespace: str = "default"
    queue: str = "default"
    priority: int = 0


def pod_group(spec: PodGroupSpec) -> PodGroup:
    pods: list[Pod] = []
    for task in spec.spec.tasks:
        request = pod_request(task.requests, task.annotations)
        tolerations = tuple(Toleration(t.key, t.operator, t.value, t.effect) for t in task.tolerations)
        for r in range(task.replicas):
            pods.append(
                Pod(
                    f"{spec.metadata.name}-{task.name}-{r}",
                    task.name,
                    request,
                    task.node_selector,
                    tolerations,
                )
            )
    return PodGroup(
        spec.metadata.name,
        tuple(pods),
        spec.spec.placement,
        spec.metadata.namespace,
        spec.spec.queue,
        spec.spec.priority,
    )


def parse_pod_group(text: str, source: str = "<pod group>") -> PodGroup:
    return pod_group(parse_document(text, PodGroupSpec, source))


def read_pod_group(path: Path) -> PodGroup:
    return parse_pod_group(read_text(path), str(path))
