"""The `KafkaLag` trigger: consumer-group lag of a topic over `lagPerReplica`, capped at the partition count
(KEDA's Kafka semantics). Read by the Kafka lag source (`autoscaler.controller.sources.kafka_lag`, series
`partitions`), polled every second between sweeps (the lag watch); the broker's lag exists with zero
consumers, so it wakes a service from zero.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from autoscaler.core.triggers.evaluation import scalar, total_value
from autoscaler.core.triggers.trigger import (
    KAFKA,
    Context,
    Observations,
    Proposal,
    Reading,
    TriggerBase,
    TriggerType,
)


class KafkaLagTrigger(TriggerBase):
    """Consumer-group lag of a topic: `ceil(lag / lagPerReplica)`, capped at the partition count."""

    type: Literal["KafkaLag"]
    topic: str = Field(min_length=1)
    group: str = Field(min_length=1)
    bootstrap_servers: str | None = None
    lag_per_replica: int = Field(ge=1)
    activation_lag: int = Field(0, ge=0)
    allow_idle_consumers: bool = False


def evaluate(
    spec: KafkaLagTrigger,
    name: str,
    reading: Reading | None,
    seen: Observations,
    ctx: Context,
    now: datetime,
    t: float,
) -> Proposal:
    value = scalar(name, reading, spec.max_sample_age_seconds, t, "no lag reported")
    if isinstance(value, Proposal):
        return value
    lag = max(0.0, value)
    partitions = int(reading.series.get("partitions", 0)) if reading is not None else 0
    capped = ""
    if partitions and not spec.allow_idle_consumers and lag // spec.lag_per_replica > partitions:
        lag_for_scaling = float(partitions * spec.lag_per_replica)
        capped = f", capped at {partitions} partitions"
    else:
        lag_for_scaling = lag
    want, _ = total_value(lag_for_scaling, spec.lag_per_replica, seen.replicas, ctx)
    return Proposal(
        name,
        want,
        active=lag > spec.activation_lag,
        template="lag {:.0f} on {} for {}/replica{}",
        args=(lag, spec.topic, spec.lag_per_replica, capped),
        demand=lag / spec.lag_per_replica,
    )


TYPE = TriggerType(
    "KafkaLag", KafkaLagTrigger, evaluate, source=KAFKA, wakes_from_zero=True, poll_seconds=1.0
)
