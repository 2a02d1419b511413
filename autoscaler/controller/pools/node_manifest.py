"""KWOK Node manifests: the one place that says what a fake GPU node looks like as a `v1.Node` object.

A node carries the KWOK annotation (so the KWOK controller keeps it Ready and runs its pods), the
well-known host labels, GPU Feature Discovery's product and memory labels, and a capacity (equal to its
allocatable) that may name any extended resource. The KWOK node-pool provider shapes nodes from a
`NodePool`'s node shape; the local environment (`tidescale.local.nodes`) from its nodes spec — both
through `kwok_node`.

Pure: builds dictionaries, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autoscaler.api.policy import NodePool
from autoscaler.core.nodepool import DEFAULT_MAX_PODS, POOL_LABEL
from jobs.vocabulary import GFD_MEMORY, GFD_PRODUCT, NVIDIA_GPU

KWOK_ANNOTATION = "kwok.x-k8s.io/node"


def gpu_labels(model: str, memory_mib: int) -> dict[str, str]:
    """GPU Feature Discovery's labels for a GPU model (label values have no spaces: they become '-')."""
    return {GFD_PRODUCT: model.replace(" ", "-"), GFD_MEMORY: str(memory_mib)}


def kwok_node(
    name: str,
    labels: Mapping[str, str],
    capacity: Mapping[str, str | int],
    taints: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """A KWOK-managed Node named `name`: host labels, then `labels`; allocatable = capacity."""
    resources = {k: str(v) for k, v in capacity.items()}
    host = {
        "type": "kwok",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": host | dict(labels),
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": [dict(t) for t in taints]},
        "status": {
            "capacity": resources,
            "allocatable": dict(resources),
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "containerRuntimeVersion": "kwok",
            },
        },
    }


def pool_node(pool: NodePool, name: str) -> dict[str, Any]:
    """A node of `pool` shaped from its node shape (GPU count and model, CPU, memory), with the pool label
    and the pool's own labels."""
    shape = pool.spec.node
    labels = {
        **gpu_labels(shape.gpu_model, shape.gpu_memory_mib),
        **pool.spec.labels,
        POOL_LABEL: pool.metadata.name,
    }
    capacity: dict[str, str | int] = {
        "cpu": shape.cpu,
        "memory": shape.memory,
        NVIDIA_GPU: shape.gpus,
        "pods": DEFAULT_MAX_PODS,
        "ephemeral-storage": "1Ti",
    }
    return kwok_node(name, labels, capacity)
