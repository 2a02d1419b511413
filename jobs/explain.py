"""`explain`: where a pod group would go on a snapshot and why, or why not.

Runs the group's placement plugin against a copy of the snapshot (nothing is kept) and turns the
outcome into lines a person reads: each placed pod with its node, devices and score; each pod that
does not fit with the nodes counted per reason.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.placement import Placement, PlacementRegistry, Result, Unschedulable, default_registry
from jobs.snapshot import ClusterState
from jobs.workload import PlacementSpec, PodGroup


def describe(spec: PlacementSpec) -> str:
    """A placement spec as one line: `Gang(min 4, Topology(rack, hard, Binpack))`."""
    inner = getattr(spec, "inner", None)
    args: list[str] = []
    if spec.type == "Topology":
        args = [spec.key, spec.mode]
    elif spec.type == "Bundle":
        args = [spec.key]
    elif spec.type == "Gang" and spec.min_member:
        args = [f"min {spec.min_member}"]
    if inner is not None:
        args.append(describe(inner))
    return f"{spec.type}({', '.join(args)})" if args else spec.type


@dataclass(frozen=True)
class Explanation:
    group: PodGroup
    result: Result

    @property
    def placed(self) -> int:
        return len(self.result.bindings) if isinstance(self.result, Placement) else 0

    @property
    def complete(self) -> bool:
        return isinstance(self.result, Placement) and self.result.complete

    def lines(self) -> list[str]:
        g = self.group
        out = [
            f"pod group {g.namespace}/{g.name}: {len(g.pods)} pods, queue {g.queue}, priority {g.priority},"
            f" placement {describe(g.placement)}"
        ]
        if isinstance(self.result, Unschedulable):
            out.append(f"  unschedulable: {self.result}")
            return out
        out.append(f"  placed {self.placed} of {len(g.pods)} pods")
        for b in self.result.bindings:
            out.append(f"  {b.pod} -> {b.node} ({b.devices}; score {b.score:.2f})")
        for pod, why in self.result.pending.items():
            out.append(f"  {pod} does not fit: {why}")
        return out

    def to_json(self) -> dict[str, Any]:
        g = self.group
        data: dict[str, Any] = {
            "group": f"{g.namespace}/{g.name}",
            "placement": describe(g.placement),
            "pods": len(g.pods),
            "placed": self.placed,
        }
        if isinstance(self.result, Unschedulable):
            data["unschedulable"] = {"message": self.result.message, "reasons": dict(self.result.reasons)}
        else:
            data["bindings"] = [
                {"pod": b.pod, "node": b.node, "gpus": list(b.devices.gpus), "score": round(b.score, 4)}
                for b in self.result.bindings
            ]
            data["pending"] = {
                p: {"reasons": dict(u.reasons), "message": u.message} for p, u in self.result.pending.items()
            }
        return data


def explain(
    group: PodGroup, snapshot: ClusterState, registry: PlacementRegistry | None = None
) -> Explanation:
    policy = (registry or default_registry()).build(group.placement)
    return Explanation(group, policy.place(group, snapshot.copy()))
