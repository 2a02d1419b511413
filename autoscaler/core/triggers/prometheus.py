"""The `Prometheus` trigger: a raw PromQL instant query returning one series, against a target that is a
total divided among the replicas (`AverageValue`) or already per replica (`Value`), as HPA v2 reads External
metrics. Its signal does not depend on the target's pods, so it can wake a service from zero.

Query: the trigger's own expression. Reading: its one series → `value`, `at` the evaluation time; no series,
more than one (KEDA's rule), or a value that is NaN or infinite → an error, never a silent 0. `QueueDepth`
reads the same way.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from autoscaler.core.promql import Result, single
from autoscaler.core.triggers.evaluation import fail, per_replica_value, scalar, total_value
from autoscaler.core.triggers.trigger import (
    PROMETHEUS,
    Context,
    Observations,
    Proposal,
    Reading,
    Scope,
    TriggerBase,
    TriggerType,
)


class PrometheusTrigger(TriggerBase):
    """A raw PromQL instant query returning one series: `Value` (per replica) or `AverageValue` (a total)."""

    type: Literal["Prometheus"]
    query: str = Field(min_length=1)
    target_type: Literal["Value", "AverageValue"] = "AverageValue"
    target: float = Field(gt=0)
    activation_threshold: float = Field(0, ge=0)


def queries(spec: Any, scope: Scope) -> dict[str, str]:
    """The trigger's `query`, as written."""
    return {"value": str(spec.query).strip()}


def reading(spec: Any, scope: Scope, queries: Mapping[str, str], results: Mapping[str, Result]) -> Reading:
    """The one finite series of the `value` query, or the error that says why there is none."""
    expr = queries["value"]
    got = single(expr, results.get(expr))
    if isinstance(got, str):
        return Reading(error=got)
    return Reading(value=got.value, at=got.at)


def evaluate(
    spec: PrometheusTrigger,
    name: str,
    reading: Reading | None,
    seen: Observations,
    ctx: Context,
    now: datetime,
    t: float,
) -> Proposal:
    v = scalar(name, reading, spec.max_sample_age_seconds, t, "empty result")
    if isinstance(v, Proposal):
        return v
    if not math.isfinite(v):
        return fail(name, f"value {v}")
    if spec.target_type == "AverageValue":
        want, _ = total_value(v, spec.target, seen.replicas, ctx)
    else:
        want, _ = per_replica_value(v, spec.target, seen.ready, ctx)
    return Proposal(
        name,
        want,
        active=v > spec.activation_threshold,
        template="{} {:g} against {:g} ({})",
        args=(name, v, spec.target, spec.target_type),
    )


TYPE = TriggerType(
    "Prometheus",
    PrometheusTrigger,
    evaluate,
    source=PROMETHEUS,
    wakes_from_zero=True,
    queries=queries,
    reading=reading,
)
