"""A cluster's GPUs as the simulated exporter sees them: which nodes have GPUs, which pod container holds
each one, and the devices (series) that follows — what the real dcgm-exporter learns from the kubelet's
pod-resources API.

- A node with `nvidia.com/gpu` capacity has that many GPUs; the model comes from the GPU feature
  discovery label `nvidia.com/gpu.product` (`NVIDIA-H100-80GB-HBM3`), the memory from
  `nvidia.com/gpu.memory` (MiB); UUIDs and PCI bus ids are synthesised from the node name and GPU index,
  as in a static spec, so they are stable across restarts.
- A pod bound to such a node, not terminated (phase neither Succeeded nor Failed), holds GPUs for each
  container that requests `nvidia.com/gpu` (limits, else requests), as the device plugin allocates them.
- A pod that the tidescale scheduler (or a gpushare scheduler) bound carries its GPUs in its annotations
  (`tidescale.io/gpus`, `tidescale.io/gpu-slices`, `ALIYUN_COM_GPU_MEM_IDX`, read by
  `jobs.device_annotations.read_assignment`): those are its GPUs, exactly, so the series name the pod the
  scheduler put there. A GPU shared by several pods (slices, gpushare) names one of them, the first in
  (namespace, name) order — as dcgm-exporter does with `-k` alone (the pod-resources API maps a device to
  one pod; ../shared/reference/gpu-metrics.md §4).
- Otherwise allocation is stable: a container keeps its GPUs while its pod lives; new containers take the
  lowest-numbered free GPUs, pods in (namespace, name) order. A container that does not fit gets what it
  held before and the shortfall is reported (the scheduler should never let that happen).
- A pod's Deployment is its controlling ReplicaSet's name minus the `pod-template-hash` suffix
  (`llm-5d9f8c7b6` → `llm`); a pod without one has none, and the load selector falls back to the
  pod name's prefix.

Pure: API objects (plain mappings) and values in, values out. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from exporter import model
from exporter.model import SimDevice
from exporter.reading import DeviceLabels, PodRef
from exporter.spec import MemoryMode, gpu_pci_bus_id, gpu_uuid
from jobs.device_annotations import GPUSHARE_ALLOCATION, GPUSHARE_IDX, read_assignment

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
TERMINATED_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class GpuNode:
    """A node with GPUs; `product` is the GFD label's value (spaces written as dashes)."""

    name: str
    gpus: int
    product: str | None = None
    memory_mib: int | None = None


@dataclass(frozen=True)
class GpuContainer:
    name: str
    gpus: int


@dataclass(frozen=True)
class GpuPod:
    """A live pod bound to a node, with the containers that request GPUs. `assigned`: the GPU indices its
    scheduler recorded in its annotations (empty when it recorded none); `shared`: those GPUs are shares
    (vGPU slices, gpushare memory) that other pods may hold too."""

    uid: str
    namespace: str
    name: str
    node: str
    containers: tuple[GpuContainer, ...]
    deployment: str | None = None
    assigned: tuple[int, ...] = ()
    shared: bool = False


Slot = tuple[str, int]  # (node, GPU index)
Holder = tuple[str, str]  # (pod uid, container)


@dataclass(frozen=True)
class Allocation:
    """Which container holds each GPU, and why some container holds fewer than it asked for."""

    holders: Mapping[Slot, Holder]
    shortfalls: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterSettings:
    """What the API server does not say about the GPUs: driver, memory behaviour, defaults for nodes
    without feature-discovery labels."""

    driver_version: str = "550.127.05"
    memory_mode: MemoryMode = "preallocated"
    memory_cap_percent: int = 90
    default_model: str = "NVIDIA H100 80GB HBM3"
    default_memory_mib: int = 81559


DEFAULT_SETTINGS = ClusterSettings()


def gpu_node(obj: Mapping[str, Any]) -> GpuNode | None:
    """A `v1.Node` (as JSON) → its GPUs; None when it has none."""
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    count = _count((status.get("capacity") or {}).get(GPU_RESOURCE))
    if not count:
        return None
    labels = metadata.get("labels") or {}
    memory = _count(labels.get(GPU_MEMORY_LABEL))
    return GpuNode(
        name=str(metadata.get("name", "")),
        gpus=count,
        product=labels.get(GPU_PRODUCT_LABEL) or None,
        memory_mib=memory or None,
    )


def gpu_pod(obj: Mapping[str, Any]) -> GpuPod | None:
    """A `v1.Pod` (as JSON) → what it holds; None when it is unbound, terminated or asks for no GPU."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    node = spec.get("nodeName")
    if not node or (obj.get("status") or {}).get("phase") in TERMINATED_PHASES:
        return None
    containers = []
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        requests = resources.get("requests") or {}
        count = _count(limits.get(GPU_RESOURCE, requests.get(GPU_RESOURCE)))
        if count:
            containers.append(GpuContainer(str(container.get("name", "")), count))
    assigned, shared = _assigned(metadata.get("annotations") or {})
    if assigned and not containers:  # a share asked for in memory (gpushare), not in nvidia.com/gpu
        first = (spec.get("containers") or [{}])[0]
        containers.append(GpuContainer(str(first.get("name", "")), len(assigned)))
    if not containers:
        return None
    return GpuPod(
        uid=str(metadata.get("uid", "")),
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        node=str(node),
        containers=tuple(containers),
        deployment=deployment_of(metadata),
        assigned=assigned,
        shared=shared,
    )


def _assigned(annotations: Mapping[str, str]) -> tuple[tuple[int, ...], bool]:
    """The GPU indices a scheduler recorded on the pod, and whether they are shares; a malformed record
    counts as none (the pod then gets GPUs as the device plugin would hand them out)."""
    try:
        assignment = read_assignment(annotations)
    except ValueError:
        return (), False
    if assignment is None or not assignment.gpus:
        return (), False
    gpushare = GPUSHARE_IDX in annotations or GPUSHARE_ALLOCATION in annotations
    return assignment.gpus, bool(assignment.slices) or gpushare


def deployment_of(metadata: Mapping[str, Any]) -> str | None:
    """The Deployment behind a pod: its controlling ReplicaSet's name without `-<pod-template-hash>`."""
    template_hash = (metadata.get("labels") or {}).get(POD_TEMPLATE_HASH_LABEL)
    for owner in metadata.get("ownerReferences") or []:
        if owner.get("kind") == "ReplicaSet" and owner.get("controller"):
            name = str(owner.get("name", ""))
            suffix = f"-{template_hash}"
            if template_hash and name.endswith(suffix) and len(name) > len(suffix):
                return name.removesuffix(suffix)
    return None


def allocate(nodes: Sequence[GpuNode], pods: Sequence[GpuPod], previous: Mapping[Slot, Holder]) -> Allocation:
    """Give each GPU-requesting container of each pod its GPUs: 1. what it held before (still on its
    node, still needed); 2. the lowest-numbered free GPUs for the rest."""
    sizes = {n.name: n.gpus for n in nodes}
    ordered = sorted((p for p in pods if p.node in sizes), key=lambda p: (p.namespace, p.name, p.uid))
    holders: dict[Slot, Holder] = {}
    shortfalls: list[str] = []
    # 0. recorded: a pod whose scheduler recorded its GPUs holds exactly those (its containers in order);
    # a whole GPU two records claim goes to the first and the second is reported.
    for pod in (p for p in ordered if p.assigned):
        indices = iter(pod.assigned)
        for container in pod.containers:
            for index in islice(indices, container.gpus):
                slot = (pod.node, index)
                if index >= sizes[pod.node]:
                    shortfalls.append(
                        f"pod {pod.namespace}/{pod.name} records GPU {index} on node {pod.node}, "
                        f"which has {sizes[pod.node]}"
                    )
                elif slot not in holders:
                    holders[slot] = (pod.uid, container.name)
                elif not pod.shared:
                    shortfalls.append(
                        f"pod {pod.namespace}/{pod.name} records GPU {index} on node {pod.node}, "
                        "which another pod holds"
                    )
    recorded = set(holders)
    ordered = [p for p in ordered if not p.assigned]
    wanted: dict[Holder, int] = {(p.uid, c.name): c.gpus for p in ordered for c in p.containers}
    pod_nodes = {p.uid: p.node for p in ordered}
    held: dict[Holder, int] = {}
    # 1. keep: a slot stays with its holder while the holder lives, needs it, and the GPU still exists.
    for slot, holder in sorted(previous.items()):
        node, index = slot
        on_its_node = pod_nodes.get(holder[0]) == node and index < sizes[node]
        if on_its_node and slot not in recorded and held.get(holder, 0) < wanted.get(holder, 0):
            holders[slot] = holder
            held[holder] = held.get(holder, 0) + 1
    # 2. fill: the rest from the node's free GPUs, lowest index first.
    for pod in ordered:
        for container in pod.containers:
            holder = (pod.uid, container.name)
            missing = container.gpus - held.get(holder, 0)
            if missing <= 0:
                continue
            free = [i for i in range(sizes[pod.node]) if (pod.node, i) not in holders]
            if len(free) < missing:
                shortfalls.append(
                    f"pod {pod.namespace}/{pod.name} container {container.name} asks for "
                    f"{container.gpus} GPUs on node {pod.node}, which has {len(free)} free"
                )
                continue
            for index in free[:missing]:
                holders[(pod.node, index)] = holder
            held[holder] = container.gpus
    return Allocation(holders=holders, shortfalls=tuple(shortfalls))


def cluster_devices(
    nodes: Sequence[GpuNode],
    pods: Sequence[GpuPod],
    allocation: Allocation,
    settings: ClusterSettings = DEFAULT_SETTINGS,
) -> tuple[SimDevice, ...]:
    """One device per GPU, nodes by name and GPUs by index; a held GPU carries its pod's labels."""
    by_holder = {(p.uid, c.name): p for p in pods for c in p.containers}
    devices: list[SimDevice] = []
    for node in sorted(nodes, key=lambda n: n.name):
        model_name = model_name_of(node.product, settings.default_model)
        profile = model.KNOWN_PROFILES.get(model_name, model.GENERIC_PROFILE)
        for index in range(node.gpus):
            holder = allocation.holders.get((node.name, index))
            pod = by_holder.get(holder) if holder is not None else None
            uuid = gpu_uuid(node.name, index)
            labels = DeviceLabels(
                gpu=index,
                uuid=uuid,
                pci_bus_id=gpu_pci_bus_id(index),
                model_name=model_name,
                hostname=node.name,
                driver_version=settings.driver_version,
                pod=PodRef(pod.namespace, pod.name, holder[1]) if pod and holder else None,
            )
            devices.append(
                SimDevice(
                    key=uuid,
                    node=node.name,
                    labels=labels,
                    memory_mib=node.memory_mib or settings.default_memory_mib,
                    memory_mode=settings.memory_mode,
                    memory_cap_percent=settings.memory_cap_percent,
                    profile=profile,
                    deployment=pod.deployment if pod else None,
                )
            )
    return tuple(devices)


def model_name_of(product: str | None, default: str) -> str:
    """NVML's model name for a GFD product label: a known model whose name, spaces as dashes, is the
    label (`NVIDIA-H100-80GB-HBM3` → `NVIDIA H100 80GB HBM3`); else the label itself; else `default`."""
    if not product:
        return default
    for known in model.KNOWN_PROFILES:
        if known.replace(" ", "-") == product:
            return known
    return product


def _count(value: object) -> int:
    """A whole-number quantity (`"8"`, 8); 0 for anything else (extended resources are integers)."""
    try:
        count = int(str(value))
    except ValueError:
        return 0
    return max(count, 0)
