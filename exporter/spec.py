"""The simulation spec (`tidescale exporter --simulate SPEC`): nodes, their GPUs and MIG instances,
the pods that hold them, driver version, power per GPU model, and how memory and noise behave.

Validated once at load; every problem names the file, line, field and reason (`kernel.errors.InvalidSpec`).
Reads the one file it is given; no other I/O, no clock.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from kernel.errors import InvalidSpec

MemoryMode = Literal["preallocated", "dynamic"]

# NVIDIA MIG profiles: `<slices>g.<GiB>gb`, optionally `+me` (media extensions) or `+gfx`.
MIG_PROFILE = re.compile(r"^(?P<slices>[1-7])g\.(?P<gb>\d+)gb(\+me|\+gfx)?$")
MIG_SLICES_PER_GPU = 7

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
_UUID_NAMESPACE = uuidlib.UUID("6f1d6d2e-0b52-4c1e-9a7a-7469646573c1")

Name = Annotated[str, Field(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN)]
Label = Annotated[str, Field(min_length=1, max_length=63, pattern=_DNS_LABEL)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class PodSpec(_Model):
    """The pod (and container) the device is allocated to, as the kubelet reports it."""

    namespace: Label
    name: Name
    container: Label


class MigInstanceSpec(_Model):
    """One MIG GPU instance; its series carry `GPU_I_PROFILE` and `GPU_I_ID`."""

    profile: Annotated[str, Field(pattern=MIG_PROFILE.pattern)]
    gpu_instance_id: Annotated[int, Field(ge=0, le=14)]
    uuid: Annotated[str | None, Field(pattern=r"^MIG-[0-9A-Za-z-]+$")] = None
    memory_mib: Annotated[int | None, Field(gt=0, alias="memoryMiB")] = None
    pod: PodSpec | None = None

    @property
    def slices(self) -> int:
        match = MIG_PROFILE.match(self.profile)
        assert match is not None  # validated by the field pattern
        return int(match["slices"])

    @property
    def resolved_memory_mib(self) -> int:
        match = MIG_PROFILE.match(self.profile)
        assert match is not None
        return self.memory_mib if self.memory_mib is not None else int(match["gb"]) * 1024

    def resolved_uuid(self, node: str, index: int) -> str:
        return self.uuid or f"MIG-{uuidlib.uuid5(_UUID_NAMESPACE, f'{node}/{index}/{self.gpu_instance_id}')}"


class GpuSpec(_Model):
    """One physical GPU; its index on the node is its position in the list."""

    model: Annotated[str, Field(min_length=1, max_length=96)]
    memory_mib: Annotated[int, Field(gt=0, alias="memoryMiB")]
    uuid: Annotated[str | None, Field(pattern=r"^GPU-[0-9A-Za-z-]+$")] = None
    pci_bus_id: Annotated[
        str | None, Field(pattern=r"^[0-9A-Fa-f]{8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$")
    ] = None
    pod: PodSpec | None = None
    memory_mode: MemoryMode | None = None
    mig: tuple[MigInstanceSpec, ...] = ()

    def resolved_uuid(self, node: str, index: int) -> str:
        return self.uuid or gpu_uuid(node, index)

    def resolved_pci_bus_id(self, index: int) -> str:
        return self.pci_bus_id or gpu_pci_bus_id(index)


def gpu_uuid(node: str, index: int) -> str:
    """The UUID a GPU without an explicit one gets: stable for (node, index) across runs."""
    return f"GPU-{uuidlib.uuid5(_UUID_NAMESPACE, f'{node}/{index}')}"


def gpu_pci_bus_id(index: int) -> str:
    """The PCI bus id a GPU without an explicit one gets: one bus per GPU index, as on an HGX board."""
    return f"00000000:{(0x18 + index) & 0xFF:02X}:00.0"


class NodeSpec(_Model):
    name: Name
    gpus: Annotated[tuple[GpuSpec, ...], Field(min_length=1)]


class ModelPowerSpec(_Model):
    """Power draw of one GPU model: idle, and at full load (W)."""

    idle_power_watts: Annotated[int, Field(gt=0)]
    max_power_watts: Annotated[int, Field(gt=0)]

    @model_validator(mode="after")
    def _max_above_idle(self) -> ModelPowerSpec:
        if self.max_power_watts <= self.idle_power_watts:
            raise ValueError(
                f"maxPowerWatts ({self.max_power_watts}) must be above "
                f"idlePowerWatts ({self.idle_power_watts})"
            )
        return self


class NoiseSpec(_Model):
    """Deterministic jitter on utilization, in percentage points, reproducible from `seed`."""

    seed: int = 0
    percent: Annotated[int, Field(ge=0, le=20)] = 2


class ExporterSpec(_Model):
    driver_version: Annotated[str, Field(min_length=1, max_length=32)]
    memory_mode: MemoryMode = "preallocated"
    memory_cap_percent: Annotated[int, Field(ge=1, le=100)] = 90
    thermal_time_constant_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    noise: NoiseSpec | None = None
    models: dict[str, ModelPowerSpec] = Field(default_factory=dict)
    nodes: Annotated[tuple[NodeSpec, ...], Field(min_length=1)]


def load_spec(path: Path) -> ExporterSpec:
    """Read and validate a spec; raise `InvalidSpec` listing every problem with its line."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidSpec(file, [f" cannot read: {e.strerror or e}"]) from e
    return parse_spec(text, file)


def parse_spec(text: str, file: str = "<spec>") -> ExporterSpec:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "1"
        reason = getattr(e, "problem", None) or str(e)
        raise InvalidSpec(file, [f"{line}: not valid YAML: {reason}"]) from e
    try:
        spec = ExporterSpec.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        locs = [tuple(err["loc"]) for err in errors]
        problems = [
            _problem(root, loc, _reason(err))
            for loc, err in zip(locs, errors, strict=True)
            # pydantic drops invalid items before checking a list's length: no "too short" beside them.
            if not (err["type"] == "too_short" and any(o[: len(loc)] == loc and o != loc for o in locs))
        ]
        raise InvalidSpec(file, problems) from e
    problems = [_problem(root, loc, reason) for loc, reason in consistency_problems(spec)]
    if problems:
        raise InvalidSpec(file, problems)
    return spec


def consistency_problems(spec: ExporterSpec) -> list[tuple[tuple[str | int, ...], str]]:
    """Rules across fields: unique nodes and UUIDs, MIG instances that fit their GPU, one node per pod."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    nodes_seen: dict[str, int] = {}
    uuids_seen: dict[str, tuple[str | int, ...]] = {}
    pod_nodes: dict[tuple[str, str], str] = {}

    def claim_uuid(value: str, loc: tuple[str | int, ...]) -> None:
        if value in uuids_seen:
            problems.append((loc, f"UUID {value} is also used at {_dotted(uuids_seen[value])}"))
        else:
            uuids_seen[value] = loc

    def place_pod(pod: PodSpec, node: str, loc: tuple[str | int, ...]) -> None:
        key = (pod.namespace, pod.name)
        other = pod_nodes.setdefault(key, node)
        if other != node:
            problems.append(
                (loc, f"pod {pod.namespace}/{pod.name} is already on node {other}; a pod runs on one node")
            )

    for n, node in enumerate(spec.nodes):
        if node.name in nodes_seen:
            problems.append(
                (("nodes", n, "name"), f"node {node.name} is also nodes[{nodes_seen[node.name]}]")
            )
        nodes_seen.setdefault(node.name, n)
        buses: dict[str, int] = {}
        for i, gpu in enumerate(node.gpus):
            loc: tuple[str | int, ...] = ("nodes", n, "gpus", i)
            claim_uuid(gpu.resolved_uuid(node.name, i), (*loc, "uuid"))
            bus = gpu.resolved_pci_bus_id(i).upper()
            if bus in buses:
                problems.append(
                    ((*loc, "pciBusId"), f"PCI bus id {bus} is also gpus[{buses[bus]}] on this node")
                )
            buses.setdefault(bus, i)
            if gpu.pod is not None:
                if gpu.mig:
                    problems.append(
                        ((*loc, "pod"), "a GPU in MIG mode is held through its instances: set pod on each")
                    )
                place_pod(gpu.pod, node.name, (*loc, "pod"))
            if gpu.mig:
                slices = sum(m.slices for m in gpu.mig)
                if slices > MIG_SLICES_PER_GPU:
                    problems.append(
                        ((*loc, "mig"), f"MIG instances use {slices} slices; a GPU has {MIG_SLICES_PER_GPU}")
                    )
                memory = sum(m.resolved_memory_mib for m in gpu.mig)
                if memory > gpu.memory_mib:
                    problems.append(
                        (
                            (*loc, "mig"),
                            f"MIG instances hold {memory} MiB; the GPU has memoryMiB {gpu.memory_mib}",
                        )
                    )
            ids: set[int] = set()
            for m, inst in enumerate(gpu.mig):
                mloc: tuple[str | int, ...] = (*loc, "mig", m)
                if inst.gpu_instance_id in ids:
                    problems.append(
                        ((*mloc, "gpuInstanceId"), f"GPU instance id {inst.gpu_instance_id} is used twice")
                    )
                ids.add(inst.gpu_instance_id)
                claim_uuid(inst.resolved_uuid(node.name, i), (*mloc, "uuid"))
                if inst.pod is not None:
                    place_pod(inst.pod, node.name, (*mloc, "pod"))
    return problems


def _reason(err: Any) -> str:
    message = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "literal_error":
        return f"{message} (got {err['input']!r})"
    return message.removeprefix("Value error, ")


def _problem(root: yaml.Node | None, loc: tuple[str | int, ...], reason: str) -> str:
    return f"{_line(root, loc)}: {_dotted(loc) or '(document)'}: {reason}"


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for step in loc:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += f".{step}" if out else step
    return out


def _line(root: yaml.Node | None, loc: tuple[str | int, ...]) -> int:
    """The 1-based line of the deepest YAML node on `loc` that exists (the key's line for a mapping entry)."""
    if root is None:
        return 1
    line = root.start_mark.line + 1
    for key_node, value_node in _walk(root, loc):
        line = (key_node or value_node).start_mark.line + 1
    return line


def _walk(node: yaml.Node, loc: tuple[str | int, ...]) -> Iterator[tuple[yaml.Node | None, yaml.Node]]:
    for step in loc:
        if isinstance(node, yaml.MappingNode):
            entry = next(
                ((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(step)),
                None,
            )
            if entry is None:
                return
            yield entry
            node = entry[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            node = node.value[step]
            yield None, node
        else:
            return
