"""A cluster snapshot: the YAML/JSON edge model and the mutable in-memory state the scheduler works on.

The document lists nodes (labels, taints, allocatable in Kubernetes resource names, topology such as
zone / rack / hypernode / pool, and optionally explicit GPUs and NICs with NVLink and PCIe ids) and the
pods already bound to them. `ClusterState` holds, per node, the free scalars and a `DeviceState`;
`bind` / `unbind` change it one pod at a time so that policies can try, keep or roll back.

`ClusterState` also keeps the nodes in equivalence classes, incrementally: two nodes are in one class
when their static identity (capacity, devices, labels but the per-node ones, taints, unschedulable,
topology), their used scalars and their device state are equal, so every request gets the same answer
from both. Class ids only grow; a class that emptied is never revived under its id, so an answer
cached per class id stays true for as long as the state lives.

Pure apart from `read_snapshot`, which reads one file.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, field_validator

from jobs.devices import Accelerator, DeviceAssignment, DeviceState, Gpu, Nic, NodeDevices
from jobs.resources import Resources, canonical
from jobs.vocabulary import PodRequest, node_capacity, pod_request
from kernel.documents import Spec, locate, parse_document, read_text
from kernel.errors import InvalidSpec

API_VERSION = "tidescale.io/v1alpha1"
DEFAULT_MAX_PODS = 110
Quantity = str | int | float
# Labels whose value differs on every node: left out of a node's class identity (else no two real
# nodes would share a class); the placement checks a node selector on them node by node.
PER_NODE_LABELS = frozenset({"kubernetes.io/hostname"})


def _check_quantities(raw: Mapping[str, Quantity]) -> Mapping[str, Quantity]:
    for name, value in raw.items():
        try:
            canonical(name, value)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return raw


class TaintSpec(Spec):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class GpuSpec(Spec):
    index: int = Field(ge=0)
    model: str = ""
    memory_mib: int = Field(0, ge=0, alias="memoryMiB")
    nvlink: int | None = None
    pcie: int | None = None


class NicSpec(Spec):
    index: int = Field(ge=0)
    pcie: int | None = None
    vfs: int = Field(1, ge=1)


class AcceleratorSpec(Spec):
    index: int = Field(ge=0)
    model: str = ""


class NodeSpec(Spec):
    name: str = Field(min_length=1)
    labels: dict[str, str] = {}
    taints: list[TaintSpec] = []
    unschedulable: bool = False
    allocatable: dict[str, Quantity]
    topology: dict[str, str] = {}
    gpus: list[GpuSpec] | None = None
    nics: list[NicSpec] | None = None
    npus: list[AcceleratorSpec] | None = None

    @field_validator("allocatable")
    @classmethod
    def _quantities(cls, v: dict[str, Quantity]) -> dict[str, Quantity]:
        _check_quantities(v)
        return v


class BoundPodSpec(Spec):
    name: str = Field(min_length=1)
    namespace: str = "default"
    node: str
    requests: dict[str, Quantity] = {}
    annotations: dict[str, str] = {}
    gpus: list[int] | None = None  # device indices the pod holds, when known
    queue: str | None = None
    group: str | None = None
    priority: int = 0

    @field_validator("requests")
    @classmethod
    def _quantities(cls, v: dict[str, Quantity]) -> dict[str, Quantity]:
        _check_quantities(v)
        return v


class SnapshotSpec(Spec):
    api_version: Literal["tidescale.io/v1alpha1"] = "tidescale.io/v1alpha1"
    kind: Literal["ClusterSnapshot"] = "ClusterSnapshot"
    nodes: list[NodeSpec]
    pods: list[BoundPodSpec] = []


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"

    def __str__(self) -> str:
        return f"{self.key}={self.value}" if self.value else self.key


@dataclass(frozen=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"  # or Exists
    value: str = ""
    effect: str = ""  # empty: any effect

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if not self.key:
            return self.operator == "Exists"
        if self.key != taint.key:
            return False
        return self.operator == "Exists" or self.value == taint.value


@dataclass(frozen=True)
class Node:
    name: str
    capacity: Resources
    devices: NodeDevices = field(default_factory=NodeDevices)
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    topology: Mapping[str, str] = field(default_factory=dict)

    def domain(self, key: str) -> str | None:
        """The node's value for a topology key: `node`, a `topology` entry, or a label."""
        if key in ("node", "kubernetes.io/hostname"):
            return self.name
        return self.topology.get(key) or self.labels.get(key)


@dataclass(frozen=True)
class BoundPod:
    name: str
    node: str
    request: PodRequest
    devices: DeviceAssignment = field(default_factory=DeviceAssignment)
    namespace: str = "default"
    queue: str | None = None
    group: str | None = None
    priority: int = 0


@dataclass(frozen=True)
class Receipt:
    """What `bind` changed, so that `unbind` can give it back."""

    node: int
    pod: BoundPod


def static_identity(node: Node) -> Hashable:
    """Everything about a node that placement reads and binding does not change, but its name and
    the `PER_NODE_LABELS`."""
    return (
        tuple(sorted(node.capacity.amounts.items())),
        node.devices,
        tuple(sorted((k, v) for k, v in node.labels.items() if k not in PER_NODE_LABELS)),
        node.taints,
        node.unschedulable,
        tuple(sorted(node.topology.items())),
    )


class ClusterState:
    """Free capacity per node; one pod at a time goes in (`bind`) or out (`unbind`).

    `cls[i]` is node i's equivalence class and `members[c]` the nodes of class c (see the module
    docstring); `token` identifies this state (a copy gets its own), for caches keyed by class id.
    """

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = tuple(nodes)
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        self.used: list[Resources] = [Resources() for _ in self.nodes]
        self.dev: list[DeviceState] = [DeviceState.fresh(n.devices) for n in self.nodes]
        self.bound: list[BoundPod] = []
        statics: dict[Hashable, int] = {}
        self.static: list[int] = [statics.setdefault(static_identity(n), len(statics)) for n in self.nodes]
        self.cls: NDArray[np.int64] = np.zeros(len(self.nodes), dtype=np.int64)
        self.members: list[set[int]] = []
        self._class_ids: dict[Hashable, int] = {}
        self.token = object()
        for i in range(len(self.nodes)):
            self.cls[i] = self._join(i)

    def copy(self) -> ClusterState:
        out = ClusterState.__new__(ClusterState)
        out.nodes = self.nodes
        out.index = self.index
        out.used = list(self.used)
        out.dev = [d.copy() for d in self.dev]
        out.bound = list(self.bound)
        out.static = self.static
        # a copy has its own token, so its class ids may start afresh: the live classes, renumbered
        # in their order (emptied ones left behind; binding a snapshot's pods leaves many)
        live = [c for c, m in enumerate(self.members) if m]
        new_id = {c: k for k, c in enumerate(live)}
        out.cls = np.asarray([new_id[int(c)] for c in self.cls], dtype=np.int64).reshape(len(self.nodes))
        out.members = [set(self.members[c]) for c in live]
        out._class_ids = {key: new_id[c] for key, c in self._class_ids.items() if c in new_id}
        out.token = object()
        return out

    @property
    def classes(self) -> int:
        """How many class ids were ever handed out (live and emptied)."""
        return len(self.members)

    def class_key(self, i: int) -> Hashable:
        return (self.static[i], tuple(sorted(self.used[i].amounts.items())), self.dev[i].signature())

    def _join(self, i: int) -> int:
        key = self.class_key(i)
        c = self._class_ids.get(key)
        if c is not None and self.members[c]:
            self.members[c].add(i)
            return c
        c = len(self.members)
        self.members.append({i})
        self._class_ids[key] = c
        return c

    def _moved(self, i: int) -> None:
        self.members[int(self.cls[i])].discard(i)
        self.cls[i] = self._join(i)

    def free(self, i: int) -> Resources:
        return self.nodes[i].capacity - self.used[i]

    def bind(self, i: int, pod: BoundPod) -> Receipt:
        self.used[i] = self.used[i] + pod.request.resources
        taken = self.dev[i].apply(pod.request.devices, pod.devices, +1)
        if taken != pod.devices or taken.slices != pod.devices.slices:
            pod = replace(pod, devices=taken)  # the vGPU slots it took, so unbind frees exactly those
        self.bound.append(pod)
        self._moved(i)
        return Receipt(i, pod)

    def unbind(self, receipt: Receipt) -> None:
        i, pod = receipt.node, receipt.pod
        self.used[i] = self.used[i] - pod.request.resources
        self.dev[i].apply(pod.request.devices, pod.devices, -1)
        # rollbacks undo the newest bindings first: look from the end, by identity
        for k in range(len(self.bound) - 1, -1, -1):
            if self.bound[k] is pod:
                del self.bound[k]
                break
        else:
            self.bound.remove(pod)
        self._moved(i)

    @property
    def capacity(self) -> Resources:
        total = Resources()
        for n in self.nodes:
            total = total + n.capacity
        return total


def _node(spec: NodeSpec) -> Node:
    capacity, devices = node_capacity(spec.allocatable, spec.labels)
    if "pods" not in spec.allocatable:
        capacity = capacity + Resources.of(pods=DEFAULT_MAX_PODS)  # the kubelet's default
    if spec.gpus is not None:
        devices = NodeDevices(
            tuple(Gpu(g.index, g.model, g.memory_mib, g.nvlink, g.pcie) for g in spec.gpus),
            devices.nics,
            devices.npus,
            devices.fpgas,
        )
    if spec.nics is not None:
        devices = NodeDevices(
            devices.gpus, tuple(Nic(n.index, n.pcie, n.vfs) for n in spec.nics), devices.npus, devices.fpgas
        )
    if spec.npus is not None:
        devices = NodeDevices(
            devices.gpus, devices.nics, tuple(Accelerator(a.index, a.model) for a in spec.npus), devices.fpgas
        )
    topology = dict(spec.topology)
    zone = spec.labels.get("topology.kubernetes.io/zone")
    if zone and "zone" not in topology:
        topology["zone"] = zone
    return Node(
        spec.name,
        capacity,
        devices,
        dict(spec.labels),
        tuple(Taint(t.key, t.value, t.effect) for t in spec.taints),
        spec.unschedulable,
        topology,
    )


def build_state(spec: SnapshotSpec, source: str = "<snapshot>", text: str | None = None) -> ClusterState:
    """The in-memory state of a validated snapshot: nodes, then the bound pods applied in order."""

    def fail(path: tuple[str | int, ...], reason: str) -> InvalidSpec:
        line = locate(text, path) if text else 0
        return InvalidSpec(source, [f"{line}: {'.'.join(map(str, path))}: {reason}"])

    names = [n.name for n in spec.nodes]
    for k, name in enumerate(names):
        if names.index(name) != k:
            raise fail(("nodes", k, "name"), f"duplicate node name {name!r}")
    state = ClusterState([_node(n) for n in spec.nodes])
    for k, p in enumerate(spec.pods):
        i = state.index.get(p.node)
        if i is None:
            raise fail(("pods", k, "node"), f"no node {p.node!r} in this snapshot")
        try:
            request = pod_request(p.requests, p.annotations)
        except ValueError as e:
            raise fail(("pods", k, "requests"), str(e)) from None
        if p.gpus is not None:
            got: DeviceAssignment | str = DeviceAssignment(gpus=tuple(p.gpus))
            bad = [g for g in p.gpus if g >= len(state.dev[i].devices.gpus)]
            if bad:
                raise fail(("pods", k, "gpus"), f"node {p.node} has no GPU {bad[0]}")
        else:
            got = state.dev[i].assign(request.devices)
        if isinstance(got, str):
            raise fail(("pods", k), f"does not fit its node {p.node}: {got}")
        state.bind(i, BoundPod(p.name, p.node, request, got, p.namespace, p.queue, p.group, p.priority))
    return state


def parse_snapshot(text: str, source: str = "<snapshot>") -> ClusterState:
    return build_state(parse_document(text, SnapshotSpec, source), source, text)


def read_snapshot(path: Path) -> ClusterState:
    return parse_snapshot(read_text(path), str(path))
