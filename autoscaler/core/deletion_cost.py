"""Pod deletion costs that make a scale-down empty nodes rather than thin them out.

The ReplicaSet deletes pods with a lower `controller.kubernetes.io/pod-deletion-cost` first, ranked before
its own preference for the most crowded node; without a cost it spreads the survivors over every node, and
no node ever empties. A pod's cost here is the number of the target's pods on its node, so the pods on the
emptiest nodes go first and those nodes become idle (and removable by the node-pool plan).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
_INT32 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True, slots=True)
class PlacedPod:
    """One live pod of a target: where it runs and the deletion cost it carries."""

    name: str
    node: str | None = None  # None while it holds no node
    cost: int | None = None  # the annotation's value; None when absent or not an int32


def parse_cost(value: object) -> int | None:
    """The annotation's value as the ReplicaSet reads it (a decimal int32), or None."""
    try:
        cost = int(str(value))
    except ValueError:
        return None
    return cost if _INT32[0] <= cost <= _INT32[1] else None


def deletion_costs(pods: Sequence[PlacedPod]) -> dict[str, int]:
    """The costs to write: each bound pod → the number of the given pods on its node, only for the pods whose
    annotation differs (nothing when every pod already carries its cost). Unbound pods are left alone: the
    ReplicaSet deletes them before any bound one whatever their cost."""
    crowd = Counter(p.node for p in pods if p.node is not None)
    return {p.name: crowd[p.node] for p in pods if p.node is not None and p.cost != crowd[p.node]}
