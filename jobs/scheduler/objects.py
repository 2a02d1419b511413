"""Kubernetes objects (plain JSON dicts, as the informers keep them) -> the scheduler core's values.

Nodes become `Node`s (capacity and devices through `jobs.vocabulary`, taints, readiness); pods become a
`PodRequest` (containers summed, each init container as a floor, overhead added — what kube-scheduler
counts), their tolerations, node selector, priority, queue and gang membership. Volcano `Queue`s become
core `Queue`s and Volcano / coscheduling `PodGroup`s a `GroupSpec`. Anything malformed is a `ValueError`
that names the object and the field.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from jobs.queues import Queue
from jobs.resources import Resources, parse_quantity
from jobs.snapshot import DEFAULT_MAX_PODS, Node, Taint, Toleration
from jobs.vocabulary import NVIDIA_GPU, PodRequest, node_capacity, pod_request

# gang membership (../shared/reference/launcher.md §3)
VOLCANO_GROUP = "scheduling.k8s.io/group-name"
VOLCANO_GROUP_NEW = "scheduling.volcano.sh/group-name"
COSCHEDULING_GROUP = "scheduling.x-k8s.io/pod-group"
ARENA_GROUP = "pod-group.scheduling.sigs.k8s.io/name"
ARENA_MIN_AVAILABLE = "pod-group.scheduling.sigs.k8s.io/min-available"
# queue membership of a pod without a PodGroup
VOLCANO_QUEUE = "scheduling.volcano.sh/queue-name"
TIDESCALE_QUEUE = "tidescale.io/queue"
# per-queue policy on a Volcano Queue
QUEUE_POLICY = "tidescale.io/queue-policy"
QUEUE_POLICIES = ("FIFO", "LIFO", "Priority", "Capacity", "FairShare")
DEFAULT_QUEUE = "default"
VOLCANO_COHORT = "volcano"  # every Volcano queue lends its idle share to the others, as Volcano reclaims
RACK_LABEL = "tidescale.io/rack"
ZONE_LABEL = "topology.kubernetes.io/zone"

# quota names: Kubernetes resource names in a Volcano Queue -> the core's quota resources
_QUOTA_NAMES = {"cpu": "cpu", "memory": "memory", "ephemeral-storage": "ephemeral-storage", NVIDIA_GPU: "gpu"}


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def key_of(obj: Mapping[str, Any]) -> str:
    m = meta(obj)
    return f"{m.get('namespace')}/{m.get('name')}" if m.get("namespace") else str(m.get("name"))


# -- nodes ---------------------------------------------------------------------------------------


def node_of(obj: Mapping[str, Any]) -> Node:
    """A Node object as the core sees it. A node that is not Ready is unschedulable (as kube-scheduler
    treats the `node.kubernetes.io/not-ready` taint the node controller adds)."""
    m, spec, status = meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    labels = dict(m.get("labels") or {})
    allocatable = dict(status.get("allocatable") or status.get("capacity") or {})
    try:
        capacity, devices = node_capacity(allocatable, labels, dict(m.get("annotations") or {}))
    except ValueError as e:
        raise ValueError(f"Node {m.get('name')}: status.allocatable: {e}") from None
    if "pods" not in allocatable:
        capacity = capacity + Resources.of(pods=DEFAULT_MAX_PODS)
    taints = tuple(
        Taint(str(t.get("key", "")), str(t.get("value", "") or ""), str(t.get("effect", "NoSchedule")))
        for t in spec.get("taints") or []
    )
    ready = next(
        (c.get("status") == "True" for c in status.get("conditions") or [] if c.get("type") == "Ready"), True
    )
    topology = {k: v for k, v in (("zone", labels.get(ZONE_LABEL)), ("rack", labels.get(RACK_LABEL))) if v}
    return Node(
        str(m.get("name")),
        capacity,
        devices,
        labels,
        taints,
        bool(spec.get("unschedulable")) or not ready,
        topology,
    )


# -- pods ----------------------------------------------------------------------------------------


def _amounts(container: Mapping[str, Any]) -> dict[str, Fraction]:
    """A container's requests; a resource with only a limit is requested at its limit (API defaulting)."""
    res = container.get("resources") or {}
    out = {k: parse_quantity(v) for k, v in (res.get("limits") or {}).items()}
    out.update({k: parse_quantity(v) for k, v in (res.get("requests") or {}).items()})
    return out


def _quantity(value: Fraction) -> str | int:
    return int(value) if value.denominator == 1 else str(float(value))


def summed_requests(pod: Mapping[str, Any]) -> dict[str, str | int]:
    """What the pod asks of a node: the containers summed, at least each init container, plus overhead."""
    spec = pod.get("spec") or {}
    total: dict[str, Fraction] = {}
    for c in spec.get("containers") or []:
        for k, v in _amounts(c).items():
            total[k] = total.get(k, Fraction(0)) + v
    for c in spec.get("initContainers") or []:
        for k, v in _amounts(c).items():
            total[k] = max(total.get(k, Fraction(0)), v)
    for k, v in (spec.get("overhead") or {}).items():
        total[k] = total.get(k, Fraction(0)) + parse_quantity(v)
    return {k: _quantity(v) for k, v in total.items()}


def request_of(pod: Mapping[str, Any]) -> PodRequest:
    """The pod's demand; a ValueError names the pod and the resource it could not read."""
    try:
        return pod_request(summed_requests(pod), dict(meta(pod).get("annotations") or {}))
    except ValueError as e:
        raise ValueError(f"Pod {key_of(pod)}: {e}") from None


def tolerations_of(pod: Mapping[str, Any]) -> tuple[Toleration, ...]:
    return tuple(
        Toleration(
            str(t.get("key", "") or ""),
            str(t.get("operator", "Equal") or "Equal"),
            str(t.get("value", "") or ""),
            str(t.get("effect", "") or ""),
        )
        for t in (pod.get("spec") or {}).get("tolerations") or []
    )


def node_selector_of(pod: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in ((pod.get("spec") or {}).get("nodeSelector") or {}).items()}


def priority_of(pod: Mapping[str, Any]) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


def is_terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def node_name_of(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def wants_scheduler(pod: Mapping[str, Any], scheduler_name: str) -> bool:
    """A pod this scheduler must place: ours by name, not bound, not finished, not being deleted, ungated."""
    spec = pod.get("spec") or {}
    return (
        spec.get("schedulerName") == scheduler_name
        and not spec.get("nodeName")
        and not is_terminal(pod)
        and not meta(pod).get("deletionTimestamp")
        and not spec.get("schedulingGates")
    )


@dataclass(frozen=True)
class GroupRef:
    """Which gang a pod belongs to: a Volcano PodGroup, a coscheduling PodGroup, or Arena's labels."""

    api: str  # "volcano" | "coscheduling"
    namespace: str
    name: str
    min_available: int | None = None  # from Arena's label when no PodGroup object says

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def group_of(pod: Mapping[str, Any]) -> GroupRef | None:
    m = meta(pod)
    ns = str(m.get("namespace") or "default")
    ann, labels = m.get("annotations") or {}, m.get("labels") or {}
    for key in (VOLCANO_GROUP, VOLCANO_GROUP_NEW):
        if ann.get(key):
            return GroupRef("volcano", ns, str(ann[key]))
    if labels.get(COSCHEDULING_GROUP):
        return GroupRef("coscheduling", ns, str(labels[COSCHEDULING_GROUP]))
    if labels.get(ARENA_GROUP):
        raw = labels.get(ARENA_MIN_AVAILABLE)
        try:
            least = int(raw) if raw else None
        except ValueError:
            raise ValueError(
                f"Pod {key_of(pod)}: label {ARENA_MIN_AVAILABLE}: not a number: {raw!r}"
            ) from None
        return GroupRef("coscheduling", ns, str(labels[ARENA_GROUP]), least)
    return None


def group_key(pod: Mapping[str, Any]) -> str | None:
    """`namespace/name` of the pod's gang; None without one, or when its labels cannot be read (the offer
    reports that pod as invalid)."""
    try:
        ref = group_of(pod)
    except ValueError:
        return None
    return ref.key if ref else None


def pod_queue(pod: Mapping[str, Any]) -> str:
    m = meta(pod)
    ann, labels = m.get("annotations") or {}, m.get("labels") or {}
    return str(ann.get(VOLCANO_QUEUE) or labels.get(TIDESCALE_QUEUE) or DEFAULT_QUEUE)


# -- pod groups and queues -----------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSpec:
    """What a PodGroup object asks: at least `min_member` pods together, `min_resources` free first."""

    key: str
    min_member: int = 1
    min_resources: Resources = field(default_factory=Resources)
    queue: str = DEFAULT_QUEUE
    priority_class: str = ""


def group_spec_of(obj: Mapping[str, Any]) -> GroupSpec:
    """A Volcano (`scheduling.volcano.sh/v1beta1`) or coscheduling (`scheduling.x-k8s.io/v1alpha1`)
    PodGroup; a ValueError names the field."""
    spec = obj.get("spec") or {}
    what = f"PodGroup {key_of(obj)}"
    raw_min = spec.get("minMember", 1)
    if not isinstance(raw_min, int) or raw_min < 0:
        raise ValueError(f"{what}: spec.minMember: a whole number >= 0, got {raw_min!r}")
    raw_res = spec.get("minResources") or {}
    try:
        minimum = Resources.parse(raw_res)
    except ValueError as e:
        raise ValueError(f"{what}: spec.minResources: {e}") from None
    return GroupSpec(
        key_of(obj),
        max(1, raw_min),
        minimum,
        str(spec.get("queue") or DEFAULT_QUEUE),
        str(spec.get("priorityClassName") or ""),
    )


def _quota(raw: Mapping[str, Any], where: str) -> dict[str, str | int | float]:
    out: dict[str, str | int | float] = {}
    for name, value in raw.items():
        mapped = _QUOTA_NAMES.get(str(name))
        if mapped is None:
            continue  # other resources are not governed by queues (documented in the README)
        if not isinstance(value, str | int | float):
            raise ValueError(f"{where}.{name}: not a quantity: {value!r}")
        out[mapped] = value
    return out


@dataclass(frozen=True)
class QueueSpecView:
    """A Volcano Queue as the core's `Queue` plus the policy chosen for it (None: the default)."""

    queue: Queue
    policy: str | None = None


def queue_of(obj: Mapping[str, Any]) -> QueueSpecView:
    """A Volcano Queue: `weight` -> FairShare weight, `capability` -> max, `deserved` (or
    `guarantee.resource`) -> the Capacity policy's guarantee, `reclaimable: false` -> never a reclaim
    victim; every Volcano queue is in one cohort. The policy comes from the `tidescale.io/queue-policy`
    annotation. A ValueError names the queue and the field."""
    m, spec = meta(obj), obj.get("spec") or {}
    name = str(m.get("name"))
    what = f"Queue {name}"
    policy = (m.get("annotations") or {}).get(QUEUE_POLICY)
    if policy is not None and policy not in QUEUE_POLICIES:
        raise ValueError(
            f"{what}: annotation {QUEUE_POLICY}: no queue policy {policy!r}"
            f" (known: {', '.join(QUEUE_POLICIES)})"
        )
    weight = spec.get("weight", 1)
    if not isinstance(weight, int) or weight < 1:
        raise ValueError(f"{what}: spec.weight: a whole number >= 1, got {weight!r}")
    guarantee = spec.get("deserved") or (spec.get("guarantee") or {}).get("resource") or {}
    where = "spec.deserved" if spec.get("deserved") else "spec.guarantee.resource"
    try:
        guaranteed = _quota(guarantee, where)
        capability = _quota(spec.get("capability") or {}, "spec.capability")
        queue = Queue.of(name, guaranteed, capability or None, VOLCANO_COHORT, weight)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None
    if spec.get("reclaimable") is False:
        queue = replace(queue, reclaimable=False)
    return QueueSpecView(queue, policy)
