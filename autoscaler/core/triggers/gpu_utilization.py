"""The `GPUUtilization` trigger: per-GPU utilisation from DCGM, aggregated over the target's GPUs, against a
percent target.

Per-GPU semantics: one value per physical GPU (or MIG instance), never per pod (`dcgm_series`). `mean` and
`max` compare with a per-GPU target and scale the ready replicas by the ratio (HPA `Value`); `sum` is the
total over GPUs against a per-replica target (HPA `AverageValue`). PROF fields (ratios 0–1) are read as
percents. Read from Prometheus; GPU series vanish with the pods, so it cannot wake a service from zero.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from autoscaler.core.triggers import dcgm_series
from autoscaler.core.triggers.evaluation import aggregate, per_gpu, per_pod_value, total_value
from autoscaler.core.triggers.trigger import (
    PROMETHEUS,
    Context,
    Observations,
    Proposal,
    Reading,
    TriggerBase,
    TriggerType,
)

# DCGM fields the GPUUtilization trigger accepts and the scale of their raw values: the DCGM `PROF` fields
# are ratios 0–1, the `DEV_*_UTIL` fields percents (../shared/reference/gpu-metrics.md §2).
UTILIZATION_FIELDS: dict[str, float] = {
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": 100.0,
    "DCGM_FI_PROF_SM_ACTIVE": 100.0,
    "DCGM_FI_PROF_SM_OCCUPANCY": 100.0,
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": 100.0,
    "DCGM_FI_PROF_DRAM_ACTIVE": 100.0,
    "DCGM_FI_DEV_GPU_UTIL": 1.0,
    "DCGM_FI_DEV_MEM_COPY_UTIL": 1.0,
}


class GPUUtilizationTrigger(TriggerBase):
    """Per-GPU utilisation from DCGM, aggregated over the target's GPUs, against a percent target."""

    type: Literal["GPUUtilization"]
    metric: str = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
    aggregation: Literal["mean", "max", "sum"] = "mean"
    target: int = Field(ge=1, le=10000, description="percent; per GPU for mean/max, per replica for sum")

    @model_validator(mode="after")
    def _known_metric(self) -> GPUUtilizationTrigger:
        if self.metric not in UTILIZATION_FIELDS:
            raise ValueError(
                f"metric: not a DCGM utilisation field: {self.metric!r} "
                f"(known: {', '.join(sorted(UTILIZATION_FIELDS))})"
            )
        if self.aggregation != "sum" and self.target > 100:
            raise ValueError(f"target: {self.target}% is above 100% for aggregation {self.aggregation}")
        return self


_LABELS = {"mean": "GPU", "max": "hottest GPU", "sum": "GPU total"}


def evaluate(
    spec: GPUUtilizationTrigger,
    name: str,
    reading: Reading | None,
    seen: Observations,
    ctx: Context,
    now: datetime,
    t: float,
) -> Proposal:
    values = per_gpu(name, reading, spec.max_sample_age_seconds, t)
    if isinstance(values, Proposal):
        return values
    pct = aggregate(values, spec.aggregation) * UTILIZATION_FIELDS[spec.metric]
    # the pods the reading measured (the target's ready replicas when it does not say)
    measured = int(reading.series.get("pods", seen.ready)) if reading is not None else seen.ready
    if spec.aggregation == "sum":
        want, ratio = total_value(pct, spec.target, seen.ready, ctx)
    else:
        want, ratio = per_pod_value(pct, spec.target, seen.ready, measured, ctx)
    return Proposal(
        name,
        want,
        active=pct > 0,
        template="{} {:.0f}% of target {}%",
        args=(_LABELS[spec.aggregation], pct, spec.target),
        demand=ratio * max(measured, 1) if spec.aggregation != "sum" else pct / 100.0,
    )


TYPE = TriggerType(
    "GPUUtilization",
    GPUUtilizationTrigger,
    evaluate,
    source=PROMETHEUS,
    wakes_from_zero=False,
    queries=dcgm_series.queries,
    reading=dcgm_series.reading,
    needs_pods=True,
)
