"""PromQL as plain values: an instant-query answer (`Sample`), the one reading of range windows (`[5m]`), and
the single finite series a scalar trigger needs.

The trigger types that read Prometheus (`autoscaler.core.triggers`) state their queries as strings and take
the answers as `Result`s (an expression's samples, or why it has none), so that whatever evaluates them — the
controller's Prometheus source, the replay's simulated one — forms readings with the same functions. The
range-window syntax lives here and nowhere else: the SLO trigger sets its windows with `windowed`, the
simulator reads them with `range_seconds`.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Prometheus' duration units; a range may combine them (`[1h30m]`). `ms` before `m`, so that `5ms` is 5 ms.
UNIT_SECONDS: Mapping[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_PART = re.compile(r"(\d+)(ms|[smhdwy])")
# A range selector's window (`[5m]`, `[1h30m]`), not a subquery (`[5m:1m]`): the `]` must follow the duration.
RANGE = re.compile(r"\[((?:\d+(?:ms|[smhdwy]))+)\]")


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of an instant-query answer: its labels, value and timestamp (epoch seconds)."""

    labels: Mapping[str, str]
    value: float
    at: float


# An expression's answer: its samples, or why there are none (Prometheus refused it or could not be reached).
Result = Sequence[Sample] | str


def duration_seconds(text: str) -> float:
    """`5m` → 300.0, `1h30m` → 5400.0, `250ms` → 0.25. ValueError for anything else."""
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * UNIT_SECONDS[u] for n, u in parts)


def range_seconds(expr: str) -> float | None:
    """The first range window of `expr` in seconds (`rate(x[5m])` → 300.0); None when it has none."""
    m = RANGE.search(expr)
    return duration_seconds(m.group(1)) if m else None


def windowed(expr: str, seconds: int) -> str:
    """`expr` with every range window (`[5m]`) set to `seconds`; subqueries (`[5m:1m]`) untouched."""
    return RANGE.sub(f"[{int(seconds)}s]", expr)


def single(expr: str, result: Result | None) -> Sample | str:
    """The one finite sample of a query that must return one series, or why there is none (no series, more
    than one — KEDA's rule —, NaN or infinite, an error, not asked)."""
    if result is None:
        return f"query was not asked: {expr}"
    if isinstance(result, str):
        return result
    if not result:
        return f"query returned no series: {expr}"
    if len(result) > 1:
        return f"query returned {len(result)} series, not one (aggregate it, e.g. sum(…)): {expr}"
    s = result[0]
    if not math.isfinite(s.value):
        return f"query returned {s.value}: {expr}"
    return s
