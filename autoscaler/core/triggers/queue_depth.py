"""The `QueueDepth` trigger: requests waiting at the gateway, `ceil(depth / targetPerReplica)` (HPA
`AverageValue`), active above the activation threshold. A gateway signal exists with zero pods: it wakes a
service from zero. Queried and read like a `Prometheus` trigger (one series).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from autoscaler.core.triggers import prometheus
from autoscaler.core.triggers.evaluation import scalar, total_value
from autoscaler.core.triggers.trigger import (
    PROMETHEUS,
    Context,
    Observations,
    Proposal,
    Reading,
    TriggerBase,
    TriggerType,
)


class QueueDepthTrigger(TriggerBase):
    """Requests waiting at the gateway (a signal that exists with zero pods), per replica."""

    type: Literal["QueueDepth"]
    query: str = Field(min_length=1)
    target_per_replica: int = Field(ge=1)
    activation_threshold: int = Field(0, ge=0)


def evaluate(
    spec: QueueDepthTrigger,
    name: str,
    reading: Reading | None,
    seen: Observations,
    ctx: Context,
    now: datetime,
    t: float,
) -> Proposal:
    value = scalar(name, reading, spec.max_sample_age_seconds, t, "empty result")
    if isinstance(value, Proposal):
        return value
    depth = max(0.0, value)
    want, _ = total_value(depth, spec.target_per_replica, seen.replicas, ctx)
    return Proposal(
        name,
        want,
        active=depth > spec.activation_threshold,
        template="queue {:.0f} for {}/replica",
        args=(depth, spec.target_per_replica),
    )


TYPE = TriggerType(
    "QueueDepth",
    QueueDepthTrigger,
    evaluate,
    source=PROMETHEUS,
    wakes_from_zero=True,
    queries=prometheus.queries,
    reading=prometheus.reading,
)
