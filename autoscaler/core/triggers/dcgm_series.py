"""The DCGM exporter's series as the GPU trigger types (GPUUtilization, DCGM) read them: the queries one
target needs, and its GPUs picked from the answer, one value per physical GPU (or MIG instance) — never one
per pod, since the exporter repeats a shared GPU's series for each pod that uses it.

Queries: the metric's selector in the target's namespace and the scrape time of each of its series
(`timestamp(…)`). Identical for every target in a namespace, so a batch asks them once per namespace and
metric. Reading: the values of the target's pods' GPUs in the metric's own unit (`per_gpu`), `at` the oldest
scrape among them, and how many pods the target had when it was read (series `pods`: a reading taken before a
scale-up measured the replicas of then, not the ones added since); no series for the target's pods → an error.
The pods are counted from the target, not from the series' `pod` labels: with time-slicing or MPS the
exporter names only one of the pods sharing a GPU (gpu-metrics.md, "Kubernetes mapping").

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from autoscaler.core.promql import Result, Sample
from autoscaler.core.triggers.trigger import Reading, Scope

# Labels that name the GPU a series describes: the exporter repeats a shared GPU's series once per pod.
_GPU_ID_LABELS = (("UUID", "uuid"), ("GPU_I_ID",))

SeriesKey = tuple[tuple[str, str], ...]


def _quoted(text: str) -> str:
    """`text` inside a PromQL double-quoted string."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def selector(metric: str, namespace: str) -> str:
    """The selector of metric `metric`'s series in `namespace` (one expression for every target there)."""
    return f'{metric}{{namespace="{_quoted(namespace)}"}}'


def queries(spec: Any, scope: Scope) -> dict[str, str]:
    """The values of the trigger's metric in the target's namespace, and when each series was scraped."""
    values = selector(spec.metric, scope.namespace)
    return {"value": values, "stamp": f"timestamp({values})"}


def reading(spec: Any, scope: Scope, queries: Mapping[str, str], results: Mapping[str, Result]) -> Reading:
    values = results.get(queries["value"])
    if isinstance(values, str):
        return Reading(error=values)
    stamps = results.get(queries["stamp"])
    # without the scrape times (the stamp query failed), the evaluation time stands in
    found, at = gpu_values(
        values or (), stamps if stamps is not None and not isinstance(stamps, str) else (), scope
    )
    if not found:
        return Reading(
            error=f"no GPU series for the target's pods ({spec.metric} in namespace {scope.namespace}, "
            f"{len(scope.pods)} pods)"
        )
    return Reading(per_gpu=found, at=at, series={"pods": float(len(scope.pods))})


def _gpu_id(labels: Mapping[str, str]) -> tuple[str, ...]:
    host = labels.get("hostname", labels.get("Hostname", ""))
    ids = tuple(next((labels[k] for k in keys if k in labels), "") for keys in _GPU_ID_LABELS)
    if not ids[0]:  # no UUID label: the index on its host is the next best name
        return (host, labels.get("gpu", ""), *ids[1:])
    return ids


def _series_key(labels: Mapping[str, str]) -> SeriesKey:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def _of(labels: Mapping[str, str], namespace: str, pods: Collection[str]) -> bool:
    return labels.get("namespace") == namespace and labels.get("pod") in pods


def gpu_values(
    values: Sequence[Sample], stamps: Sequence[Sample], scope: Scope
) -> tuple[tuple[float, ...], float | None]:
    """The per-GPU values of the series whose (namespace, pod) is one of the target's pods, one value per GPU
    (by UUID and MIG instance; a GPU repeated for several pods counts once, its largest value), ordered by
    host and GPU index; and the oldest scrape time among them (from `stamps`, the answer of the
    `timestamp(…)` query, else the evaluation time). Non-finite values are skipped. ((), None) when no series
    matches."""
    namespace, pods = scope.namespace, scope.pods
    scraped = {_series_key(s.labels): s.value for s in stamps if _of(s.labels, namespace, pods)}
    by_gpu: dict[tuple[str, ...], tuple[tuple[str, int, str], float]] = {}
    oldest: float | None = None
    for s in values:
        if not _of(s.labels, namespace, pods) or not math.isfinite(s.value):
            continue
        gpu = _gpu_id(s.labels)
        index = s.labels.get("gpu", "")
        order = (
            s.labels.get("hostname", s.labels.get("Hostname", "")),
            int(index) if index.isdigit() else -1,
            s.labels.get("GPU_I_ID", ""),
        )
        seen = by_gpu.get(gpu)
        by_gpu[gpu] = (order, s.value if seen is None else max(seen[1], s.value))
        at = scraped.get(_series_key(s.labels), s.at) if scraped else s.at
        oldest = at if oldest is None else min(oldest, at)
    ordered = sorted(by_gpu.values())
    return tuple(v for _, v in ordered), oldest
