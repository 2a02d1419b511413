"""The `DCGM` trigger: any DCGM gauge (memory, power, temperature, PCIe) in its own unit, over the target's
GPUs, with the aggregation semantics of `GPUUtilization` (mean/max per GPU as HPA `Value`, sum as
`AverageValue`). Read from Prometheus like it; no series with zero pods.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from autoscaler.core.triggers import dcgm_series
from autoscaler.core.triggers.evaluation import aggregate, per_gpu, per_pod_value, total_value
from autoscaler.core.triggers.gpu_utilization import UTILIZATION_FIELDS
from autoscaler.core.triggers.trigger import (
    PROMETHEUS,
    Context,
    Observations,
    Proposal,
    Reading,
    TriggerBase,
    TriggerType,
)

# Other DCGM gauges a `DCGM` trigger may scale on, with their unit (targets are in that unit).
DCGM_FIELDS: dict[str, str] = {
    "DCGM_FI_DEV_FB_USED": "MiB",
    "DCGM_FI_DEV_FB_FREE": "MiB",
    "DCGM_FI_DEV_POWER_USAGE": "W",
    "DCGM_FI_DEV_GPU_TEMP": "°C",
    "DCGM_FI_DEV_MEMORY_TEMP": "°C",
    "DCGM_FI_PROF_PCIE_TX_BYTES": "B/s",
    "DCGM_FI_PROF_PCIE_RX_BYTES": "B/s",
    **{name: "ratio" if scale == 100.0 else "%" for name, scale in UTILIZATION_FIELDS.items()},
}


class DCGMTrigger(TriggerBase):
    """Any DCGM gauge (memory, power, temperature, PCIe) in its own unit, over the target's GPUs."""

    type: Literal["DCGM"]
    metric: str
    aggregation: Literal["mean", "max", "sum"] = "mean"
    target: float = Field(gt=0)

    @model_validator(mode="after")
    def _known_metric(self) -> DCGMTrigger:
        if self.metric not in DCGM_FIELDS:
            raise ValueError(
                f"metric: not a DCGM gauge tidescale knows: {self.metric!r} "
                f"(known: {', '.join(sorted(DCGM_FIELDS))})"
            )
        return self


def evaluate(
    spec: DCGMTrigger,
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
    v = aggregate(values, spec.aggregation)
    if spec.aggregation == "sum":
        want, _ = total_value(v, spec.target, seen.ready, ctx)
    else:
        measured = int(reading.series.get("pods", seen.ready)) if reading is not None else seen.ready
        want, _ = per_pod_value(v, spec.target, seen.ready, measured, ctx)
    return Proposal(
        name, want, active=v > 0, template="{} {:g} of target {:g}", args=(spec.metric, v, spec.target)
    )


TYPE = TriggerType(
    "DCGM",
    DCGMTrigger,
    evaluate,
    source=PROMETHEUS,
    wakes_from_zero=False,
    queries=dcgm_series.queries,
    reading=dcgm_series.reading,
    needs_pods=True,
)
