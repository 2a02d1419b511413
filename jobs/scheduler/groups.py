"""Pending pods -> the core's pending entries: single pods, and gangs held until they can start.

A pod that names a PodGroup joins its gang: the gang is one `Entry` whose placement is `Gang(need)`
around the scheduler's placement, where `need` is what is still missing of `minMember` (pods already
bound or assumed count). A gang with fewer pods than `minMember` in existence is not offered at all (it
waits, `Pending`), and one whose `minResources` exceed what the whole cluster has free waits too. A pod
whose request cannot be read is not offered; its reason is reported as `Unschedulable`.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.queues import Entry
from jobs.resources import Resources
from jobs.scheduler.objects import (
    DEFAULT_QUEUE,
    GroupRef,
    GroupSpec,
    group_of,
    node_selector_of,
    pod_queue,
    priority_of,
    request_of,
    tolerations_of,
)
from jobs.vocabulary import PodRequest
from jobs.workload import GangSpec, PlacementSpec, Pod, PodGroup


@dataclass(frozen=True)
class PendingPod:
    """A pod waiting for this scheduler, with what the cycle needs of it."""

    uid: str
    namespace: str
    name: str
    seq: int  # arrival order (creation, then first seen)
    obj: Mapping[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Held:
    """Why a gang (or a pod) is not offered to the cycle this time."""

    reason: str  # CamelCase: NotEnoughPods, NotEnoughResources, InvalidPodGroup, InvalidPod
    message: str
    pods: tuple[str, ...]  # uids


@dataclass(frozen=True)
class Offer:
    """What one cycle is offered: entries, the pods behind each entry, and what is held back."""

    entries: tuple[Entry, ...]
    members: Mapping[str, tuple[PendingPod, ...]]  # entry uid -> its pods
    gangs: Mapping[str, GroupRef]  # entry uid -> the PodGroup it stands for
    held: Mapping[str, Held]  # entry uid (or pod uid) -> why not offered


def entry_uid(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def build_offer(
    pending: Sequence[PendingPod],
    groups: Mapping[str, GroupSpec],
    invalid_groups: Mapping[str, str],
    running: Mapping[str, int],
    placement: PlacementSpec,
    free: Resources,
    requests: Mapping[str, PodRequest] | None = None,
    known_queues: set[str] | None = None,
) -> Offer:
    """Entries for the cycle. `groups`: PodGroup key -> spec; `invalid_groups`: key -> why unreadable;
    `running`: group key -> pods already bound or assumed; `free`: the cluster's free scalars;
    `requests`: pod uid -> parsed request (a cache; parsed here when missing); `known_queues`: the Queues
    that exist (None: queues are not served, every name is accepted); `default` always exists."""
    entries: list[Entry] = []
    members: dict[str, tuple[PendingPod, ...]] = {}
    gangs: dict[str, GroupRef] = {}
    held: dict[str, Held] = {}
    by_group: dict[str, list[tuple[PendingPod, Pod, int]]] = {}
    refs: dict[str, GroupRef] = {}
    singles: list[tuple[PendingPod, Pod, int, str]] = []
    for p in pending:
        try:
            request = (requests or {}).get(p.uid) or request_of(p.obj)
            ref = group_of(p.obj)
        except ValueError as e:
            held[p.uid] = Held("InvalidPod", str(e), (p.uid,))
            continue
        pod = Pod(p.name, "main", request, node_selector_of(p.obj), tolerations_of(p.obj))
        if ref is None:
            singles.append((p, pod, priority_of(p.obj), pod_queue(p.obj)))
        else:
            by_group.setdefault(ref.key, []).append((p, pod, priority_of(p.obj)))
            refs[ref.key] = ref
    for p, pod, priority, queue in singles:
        uid = entry_uid(p.namespace, p.name)
        group = PodGroup(p.name, (pod,), placement, p.namespace, queue, priority)
        entries.append(Entry(group, p.seq))
        members[uid] = (p,)
    for key, items in sorted(by_group.items()):
        ref = refs[key]
        uid = entry_uid(ref.namespace, ref.name)
        pods_uids = tuple(p.uid for p, _, _ in items)
        if key in invalid_groups:
            held[uid] = Held("InvalidPodGroup", invalid_groups[key], pods_uids)
            continue
        spec = groups.get(key)
        if spec is None and ref.api == "volcano":
            held[uid] = Held(
                "PodGroupNotFound",
                f"PodGroup {key} named by the pods' annotation does not exist",
                pods_uids,
            )
            continue
        if spec is None:  # coscheduling label without an object: the pods present are the gang
            spec = GroupSpec(key, ref.min_available or len(items), queue=pod_queue(items[0][0].obj))
        if known_queues is not None and spec.queue != DEFAULT_QUEUE and spec.queue not in known_queues:
            held[uid] = Held(
                "QueueNotFound", f"PodGroup {key} names queue {spec.queue!r}, which does not exist", pods_uids
            )
            continue
        have = running.get(key, 0)
        if have + len(items) < spec.min_member:
            held[uid] = Held(
                "NotEnoughPods",
                f"{have + len(items)}/{spec.min_member} pods of gang {key} exist; waiting for the rest",
                pods_uids,
            )
            continue
        if have == 0 and spec.min_resources.amounts and not free.fits(spec.min_resources):
            short = ", ".join(free.shortfall(spec.min_resources))
            held[uid] = Held(
                "NotEnoughResources",
                f"minResources of {key} ({spec.min_resources}) exceed the cluster's free {short}",
                pods_uids,
            )
            continue
        need = max(0, spec.min_member - have)
        gang_placement: PlacementSpec = GangSpec(min_member=need, inner=placement) if need > 1 else placement
        priority = max(pr for _, _, pr in items)
        ordered = sorted(items, key=lambda t: (t[0].seq, t[0].name))
        group = PodGroup(
            ref.name, tuple(pod for _, pod, _ in ordered), gang_placement, ref.namespace, spec.queue, priority
        )
        entries.append(Entry(group, min(p.seq for p, _, _ in items)))
        members[uid] = tuple(p for p, _, _ in ordered)
        gangs[uid] = ref
    return Offer(tuple(entries), members, gangs, held)
