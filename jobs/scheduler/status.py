"""What the scheduler writes back, as plain values: kube-scheduler's "0/N nodes are available" message, the
PodScheduled condition, PodGroup phases and conditions, and Queue status counts.

Pure: no I/O; times are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobs.placement import Unschedulable

PENDING = "Pending"
INQUEUE = "Inqueue"
RUNNING = "Running"
MESSAGE_LIMIT = 1024


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def nodes_message(total_nodes: int, why: Unschedulable) -> str:
    """kube-scheduler's shape: `0/12 nodes are available: 8 insufficient nvidia.com/gpu, 4 untolerated
    taint gpu=reserved.`, with the placement's own sentence (a gang's, a topology's) after it."""
    ordered = sorted(why.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    counted = ", ".join(f"{n} {r}" for r, n in ordered)
    head = f"0/{total_nodes} nodes are available"
    text = f"{head}: {counted}." if counted else f"{head}."
    if why.message and not why.message.startswith("no node fits pod "):  # the counts already say that
        text = f"{text} {why.message}"
    return text[: MESSAGE_LIMIT - 1] + "…" if len(text) > MESSAGE_LIMIT else text


def pod_scheduled_false(message: str, now: datetime, reason: str = "Unschedulable") -> dict[str, Any]:
    """A strategic-merge patch of pods/status: PodScheduled=False (conditions merge by type). The reason
    stays `Unschedulable`, which cluster-autoscaler and Karpenter key on."""
    return {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": rfc3339(now),
                }
            ]
        }
    }


@dataclass(frozen=True)
class GroupStatus:
    """A PodGroup's status as this cycle sees it."""

    phase: str
    reason: str
    message: str
    running: int

    def body(self, previous: Mapping[str, Any], now: datetime) -> dict[str, Any] | None:
        """The merge patch that writes this status, or None when the object already says it."""
        old = previous or {}
        old_cond: Mapping[str, Any] = next(iter(old.get("conditions") or []), {})
        cond_type = "Scheduled" if self.phase == RUNNING else "Unschedulable"
        same = (
            old.get("phase") == self.phase
            and old.get("running") == self.running
            and old_cond.get("type") == cond_type
            and old_cond.get("reason") == self.reason
            and old_cond.get("message") == self.message
        )
        if same:
            return None
        condition = {
            "type": cond_type,
            "status": "True",
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": rfc3339(now),
            "transitionID": f"{int(now.timestamp())}",
        }
        return {"status": {"phase": self.phase, "running": self.running, "conditions": [condition]}}


@dataclass(frozen=True)
class QueueCounts:
    """Volcano Queue status: allocated resources (Kubernetes names) and pod-group counts."""

    allocated: Mapping[str, str]
    pending: int
    inqueue: int
    running: int

    def body(self, previous: Mapping[str, Any], state: str = "Open") -> dict[str, Any] | None:
        old = previous or {}
        new = {
            "state": state,
            "allocated": dict(self.allocated),
            "pending": self.pending,
            "inqueue": self.inqueue,
            "running": self.running,
        }
        if all(old.get(k) == v for k, v in new.items()):
            return None
        return {"status": new}
