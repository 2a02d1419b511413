"""Status conditions of a ScalingPolicy from its latest decision: `Ready` (the policy is valid and its
target readable), `Active` (an activation signal is active or replicas are above zero) and `Fallback` (the
fallback replicas are in force), each with a CamelCase reason and a sentence with numbers; and the merge
that keeps `lastTransitionTime` unless the status flips (the Kubernetes condition convention).

Pure: no I/O, no clock (`now` is an argument).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from autoscaler.core.decide import Decision


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str

    def render(self, now: datetime, generation: int, since: str | None = None) -> dict[str, object]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": since or _rfc3339(now),
            "observedGeneration": generation,
        }


def _rfc3339(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def from_decision(d: Decision) -> tuple[Condition, ...]:
    """Ready, Active and Fallback after decision `d`."""
    if d.rule == "MetricsUnavailable":
        ready = Condition("Ready", "True", "MetricsUnavailable", d.reason)
    else:
        ready = Condition("Ready", "True", "Reconciled", f"{d.target}: {d.reason}")
    if d.desired > 0:
        active = Condition("Active", "True", "ScaledUp" if d.current == 0 else "Serving", _replicas(d))
    else:
        active = Condition("Active", "False", d.rule if d.rule else "ScaledToZero", d.reason)
    if d.fallback:
        fallback = Condition("Fallback", "True", "MetricFailing", d.reason)
    else:
        fallback = Condition("Fallback", "False", "MetricsHealthy", "every metric trigger gave a proposal")
        if any(p.failed for p in d.proposals):
            failed = ", ".join(p.trigger for p in d.proposals if p.failed)
            why = f"{failed} failing, below the fallback threshold"
            fallback = Condition("Fallback", "False", "MetricFailing", why)
    return ready, active, fallback


def _replicas(d: Decision) -> str:
    return f"{d.desired} replicas desired ({d.current} before), rule {d.rule}"


def invalid(reason: str, message: str) -> tuple[Condition, ...]:
    """The conditions of a policy that cannot be reconciled (bad spec, unreadable target)."""
    return (Condition("Ready", "False", reason, message),)


def problem(condition: str, reason: str, message: str, present: bool = True) -> tuple[Condition, ...]:
    """A misconfiguration's condition (`autoscaler.controller.problems`): False with the problem's reason
    while it lasts, True with the reason it cleared as afterwards."""
    return (Condition(condition, "False" if present else "True", reason, message),)


def merge(
    old: Sequence[dict[str, object]], new: Sequence[Condition], now: datetime, generation: int
) -> list[dict[str, object]]:
    """`new` rendered, each keeping its previous lastTransitionTime when its status did not change; old
    conditions of other types are kept."""
    by_type = {str(c.get("type")): c for c in old}
    out: list[dict[str, object]] = []
    for c in new:
        prev = by_type.pop(c.type, None)
        since = None
        if prev is not None and prev.get("status") == c.status:
            since = str(prev.get("lastTransitionTime") or "") or None
        out.append(c.render(now, generation, since))
    out.extend(by_type.values())
    return out


def same(old: Sequence[dict[str, object]], new: Sequence[dict[str, object]]) -> bool:
    """Whether two rendered condition lists say the same (ignoring nothing: used to skip status writes)."""
    return sorted(old, key=_type) == sorted(new, key=_type)


def _type(c: dict[str, object]) -> str:
    return str(c.get("type"))
