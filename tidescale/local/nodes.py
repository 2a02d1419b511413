"""KWOK nodes for the local control plane: a small YAML spec of node pools → real `v1.Node` objects.

Each node carries the KWOK annotation so the KWOK controller keeps it Ready and runs its pods, the
pool/zone/rack labels the scheduler and the node-pool autoscaler use, taints, and a capacity that may
name any extended resource (`nvidia.com/gpu`, shared-GPU, vGPU, NPU, FPGA, RDMA names).
Nodes can be added and removed while the control plane runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autoscaler.controller.pools import node_manifest as shared
from autoscaler.core.nodepool import POOL_LABEL
from jobs.vocabulary import GFD_MEMORY, GFD_PRODUCT
from kernel.clock import SYSTEM_CLOCK, Deadline
from kernel.documents import read_document

# The manifest itself is `autoscaler.controller.pools.node_manifest.kwok_node`, shared with the KWOK node-pool
# provider; its names are repeated here for the local environment's callers.
KWOK_ANNOTATION = shared.KWOK_ANNOTATION
GPU_PRODUCT_LABEL = GFD_PRODUCT
GPU_MEMORY_LABEL = GFD_MEMORY
RACK_LABEL = "tidescale.io/rack"
ZONE_LABEL = "topology.kubernetes.io/zone"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Taint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class Gpu(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    model: str
    memory_mib: int = Field(alias="memoryMiB", gt=0)


class NodePoolSpec(BaseModel):
    """`count` nodes named `<name>-<i>`; racks are assigned round-robin."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    count: int = Field(default=1, ge=0, le=5000)
    zone: str = "zone-a"
    racks: list[str] = Field(default_factory=lambda: ["rack-0"])
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)
    capacity: dict[str, str | int] = Field(default_factory=dict)
    gpu: Gpu | None = None

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _NAME.match(value) or len(value) > 50:
            raise ValueError(
                "must be a DNS label (lower-case letters, digits and '-', at most 50 characters)"
            )
        return value

    @field_validator("capacity")
    @classmethod
    def _with_defaults(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        return {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"} | value


class NodesSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    api_version: Literal["tidescale.io/v1alpha1"] = Field(default="tidescale.io/v1alpha1", alias="apiVersion")
    kind: Literal["LocalNodes"] = "LocalNodes"
    pools: list[NodePoolSpec]


def gpu_pool(count: int, name: str = "gpu") -> NodePoolSpec:
    """What `--gpu-nodes N` creates: N nodes with 8 H100s and one RDMA NIC each."""
    return NodePoolSpec(
        name=name,
        count=count,
        capacity={"cpu": "96", "memory": "1Ti", "nvidia.com/gpu": "8", "rdma/hca": "1"},
        gpu=Gpu(model="NVIDIA H100 80GB HBM3", memory_mib=81559),
    )


def load(path: Path) -> NodesSpec:
    """Read a nodes spec; errors name the file, the line, the field and the reason."""
    return read_document(path, NodesSpec)


def node_manifest(pool: NodePoolSpec, index: int) -> dict[str, Any]:
    name = f"{pool.name}-{index}"
    labels = {
        POOL_LABEL: pool.name,
        ZONE_LABEL: pool.zone,
        RACK_LABEL: pool.racks[index % len(pool.racks)],
    }
    if pool.gpu is not None:
        labels |= shared.gpu_labels(pool.gpu.model, pool.gpu.memory_mib)
    return shared.kwok_node(name, labels | pool.labels, pool.capacity, [t.model_dump() for t in pool.taints])


def _core(kubeconfig: str) -> Any:
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))


def existing(kubeconfig: str, pool: str | None = None) -> list[str]:
    selector = f"{POOL_LABEL}={pool}" if pool else POOL_LABEL
    return sorted(n.metadata.name for n in _core(kubeconfig).list_node(label_selector=selector).items)


def add(kubeconfig: str, pool: NodePoolSpec, count: int | None = None, timeout: float = 60) -> list[str]:
    """Create `count` (default `pool.count`) more nodes of `pool`, numbered after the existing ones,
    and wait until KWOK reports them Ready."""
    core = _core(kubeconfig)
    taken = {
        int(n.rsplit("-", 1)[1]) for n in existing(kubeconfig, pool.name) if n.rsplit("-", 1)[1].isdigit()
    }
    indexes: list[int] = []
    candidate = 0
    while len(indexes) < (pool.count if count is None else count):
        if candidate not in taken:
            indexes.append(candidate)
        candidate += 1
    names = []
    for index in indexes:
        manifest = node_manifest(pool, index)
        core.create_node(manifest)
        names.append(manifest["metadata"]["name"])
    wait_ready(kubeconfig, names, timeout)
    return names


def wait_ready(kubeconfig: str, names: list[str], timeout: float) -> None:
    """Wait until KWOK reports every node Ready and the node lifecycle controller has taken its
    `node.kubernetes.io/not-ready` taint off again (until then a pod created at once is refused)."""
    core = _core(kubeconfig)
    deadline = Deadline(timeout)
    pending = set(names)
    while pending:
        for name in sorted(pending):
            node = core.read_node(name)
            conditions = {c.type: c.status for c in (node.status.conditions or [])}
            if conditions.get("Ready") == "True" and not _lifecycle_taints(node):
                pending.discard(name)
        if pending and deadline.expired():
            raise TimeoutError(
                f"KWOK did not make {', '.join(sorted(pending))} Ready (and untainted) within {timeout:.0f} s"
            )
        if pending:
            SYSTEM_CLOCK.sleep(0.2)


LIFECYCLE_TAINTS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})


def _lifecycle_taints(node: Any) -> list[str]:
    return [t.key for t in (node.spec.taints or []) if t.key in LIFECYCLE_TAINTS]


def delete(kubeconfig: str, names: list[str]) -> None:
    core = _core(kubeconfig)
    for name in names:
        core.delete_node(name)
