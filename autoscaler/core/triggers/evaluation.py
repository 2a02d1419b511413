"""What the trigger evaluators share: whether a reading can be used, and HPA v2's arithmetic from a value
and a target to replicas (tolerance, `Value` vs `AverageValue`, ../shared/reference/autoscaling.md
§1.4/§1.9).

Pure: no I/O, no clock (`t`, now in epoch seconds, is an argument).
"""

from __future__ import annotations

import math

from autoscaler.core.triggers.trigger import Context, Proposal, Reading

MAX_REPLICAS = 2**31 - 1


def unusable(reading: Reading | None, max_age: int, t: float) -> str | None:
    """Why a reading cannot be used (missing, an error, stale), or None. Fast when it can."""
    if reading is not None and not reading.error and (reading.at is None or t - reading.at <= max_age):
        return None
    if reading is None:
        return "no reading"
    if reading.error:
        return reading.error
    age = t - (reading.at or 0.0)
    return f"sample is {age:.0f}s old (max {max_age}s)"


def fail(name: str, why: str) -> Proposal:
    return Proposal(name, None, template="{}: no usable sample ({})", args=(name, why), failed=True)


def scalar(name: str, reading: Reading | None, max_age: int, t: float, empty: str) -> float | Proposal:
    """The reading's value, or the failed proposal that says why it cannot be used (`empty`: no value)."""
    why = unusable(reading, max_age, t)
    if why is None and reading is not None and reading.value is None:
        why = empty
    if why is not None or reading is None or reading.value is None:
        return fail(name, why or "no reading")
    return reading.value


def per_gpu(name: str, reading: Reading | None, max_age: int, t: float) -> tuple[float, ...] | Proposal:
    """The per-GPU values of the target's pods (or the one aggregate), or the failed proposal."""
    why = unusable(reading, max_age, t)
    if why is None and reading is not None and not reading.per_gpu and reading.value is None:
        why = "no GPU series for the target's pods"
    if why is not None or reading is None:
        return fail(name, why or "no reading")
    return reading.per_gpu or (float(reading.value or 0),)


def ceil(x: float) -> int:
    # 1e-9 keeps float noise (3.0000000001) from adding a replica; conditionals beat min/max on the hot path
    v = math.ceil(x - 1e-9)
    return 0 if v < 0 else (MAX_REPLICAS if v > MAX_REPLICAS else v)


def per_replica_value(value: float, target: float, base: int, ctx: Context) -> tuple[int, float]:
    """HPA Value semantics: `ratio = value / target`, tolerance → `base`, else `ceil(ratio × base)`."""
    ratio = value / target
    if base == 0:
        return ceil(ratio), ratio  # the scale-from-zero path
    if ctx.ok(ratio):
        return base, ratio
    return ceil(ratio * base), ratio


def per_pod_value(value: float, target: float, ready: int, measured: int, ctx: Context) -> tuple[int, float]:
    """HPA Value semantics over the pods a reading measured (the HPA's ready pods with metrics):
    `ratio = value / target`; within the tolerance → `ready`; else `ceil(ratio × measured)`, and on the way
    down the ready pods the reading did not measure count at the target (the HPA's missing pods), never
    turning a scale-down into a scale-up. Sizing by the measured pods, not by `ready`, keeps a reading that
    predates a scale-up from scaling the new replicas again at every decision that sees it."""
    measured = min(measured, ready)  # pods read then that are not ready now (or never were) measured nothing
    if measured <= 0:
        return per_replica_value(value, target, ready, ctx)
    ratio = value / target
    if ctx.ok(ratio):
        return ready, ratio
    want = ceil(ratio * measured)
    if want < ready and ready > measured:
        want = min(ready, want + ready - measured)
    return want, ratio


def total_value(value: float, target: float, status: int, ctx: Context) -> tuple[int, float]:
    """HPA AverageValue semantics for a total: `ratio = value / (target × status)`, else
    `ceil(value / target)`."""
    if status > 0:
        ratio = value / (target * status)
        if ctx.ok(ratio):
            return status, ratio
    else:
        ratio = math.inf if value > 0 else 0.0
    return ceil(value / target), ratio


def aggregate(values: tuple[float, ...], how: str) -> float:
    if how == "max":
        return max(values)
    if how == "sum":
        return sum(values)
    return sum(values) / len(values)
