"""Batched PromQL: many policies' expressions in one instant query, and the answer split back per expression.

Every expression is tagged with `label_replace((<expr>), "__tidescale_q", "<i>", "", "")` and the tagged
expressions are joined with `or`: the tag keeps their series apart (no two carry the same label set), so one
query answers them all and the tag says which expression each series belongs to. Identical expressions
(several policies on one query) are asked once. A batch holds at most `MAX_EXPRESSIONS` expressions and
`MAX_BYTES` of text; more make more batches, so a read costs one query per trigger kind in the normal case,
not one per policy.

`label_replace` takes an instant vector: an expression that is a scalar (`1`, `scalar(…)`, `time()`) is
wrapped in `vector()`. `looks_scalar` catches the plain cases; the shell learns the others from Prometheus'
answer.

GPU triggers ask one selector per DCGM metric over the namespaces involved (`gpu_query`) and pick each
target's GPUs from that answer (`gpu_values`): one value per physical GPU (or MIG instance), never one per
pod.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

QUERY_LABEL = "__tidescale_q"
MAX_EXPRESSIONS = 200
MAX_BYTES = 64 * 1024
_JOIN = " or "

# A range selector's window (`[5m]`), not a subquery (`[5m:1m]`).
_WINDOW = re.compile(r"\[\d+(?:ms|[smhdwy])\]")
_SCALAR_CALL = re.compile(r"\bscalar\s*\(")
# Atomic tokens under a possessive star: no backtracking, linear in the text whatever it holds.
_SCALAR_TEXT = re.compile(
    r"(?>\s+|[-+*/%^()]|0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|(?i:inf|nan)\b"
    r"|time\s*\(\s*\)|pi\s*\(\s*\))*+"
)
_RE2_SPECIAL = set(r"\.+*?()|[]{}^$")
# Labels that name the GPU a series describes: the exporter repeats a shared GPU's series once per pod.
_GPU_ID_LABELS = (("UUID", "uuid"), ("GPU_I_ID",))


class BadResult(ValueError):
    """Prometheus answered, but not with the instant vector a batch asks for."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of an instant-query answer: its labels (the batch tag removed), value and timestamp."""

    labels: Mapping[str, str]
    value: float
    at: float


@dataclass(frozen=True, slots=True)
class Batch:
    """One query's text and the expressions it answers; `expressions[i]` carries tag `str(i)`."""

    text: str
    expressions: tuple[str, ...]


def _strip_scalar_calls(expr: str) -> str | None:
    """`expr` with each balanced `scalar(…)` replaced by `0`; None if the parentheses do not balance."""
    out = []
    i = 0
    while True:
        m = _SCALAR_CALL.search(expr, i)
        if m is None:
            out.append(expr[i:])
            return "".join(out)
        out.append(expr[i : m.start()])
        depth = 1
        j = m.end()
        while j < len(expr) and depth:
            depth += {"(": 1, ")": -1}.get(expr[j], 0)
            j += 1
        if depth:
            return None
        out.append("0")
        i = j


def looks_scalar(expr: str) -> bool:
    """Whether `expr` evaluates to a scalar for sure: numbers, `scalar(…)`, `time()`, `pi()` and arithmetic of
    those. (A miss is found at query time, where Prometheus says "got scalar".)"""
    text = _strip_scalar_calls(expr)
    return text is not None and bool(text.strip()) and _SCALAR_TEXT.fullmatch(text) is not None


def as_vector(expr: str) -> str:
    """`vector(expr)` for an expression that is a scalar, `expr` otherwise."""
    return f"vector({expr.strip()})" if looks_scalar(expr) else expr.strip()


def tagged(expr: str, index: int) -> str:
    return f'label_replace(({expr}), "{QUERY_LABEL}", "{index}", "", "")'


def unique(expressions: Iterable[str]) -> list[str]:
    """The expressions without repeats (surrounding blanks ignored), in first-seen order."""
    return list(dict.fromkeys(e.strip() for e in expressions))


def batch(
    expressions: Sequence[str],
    *,
    scalars: Collection[str] = (),
    max_expressions: int = MAX_EXPRESSIONS,
    max_bytes: int = MAX_BYTES,
) -> list[Batch]:
    """The queries that answer `expressions` (deduplicated): each at most `max_expressions` expressions and
    `max_bytes` of text, except that one expression longer than that still gets a query of its own.
    `scalars`: expressions known to be scalars (wrapped in `vector()` beyond what `looks_scalar` sees)."""
    out: list[Batch] = []
    parts: list[str] = []
    exprs: list[str] = []
    size = 0
    for expr in unique(expressions):
        inner = f"vector({expr})" if expr in scalars else as_vector(expr)
        part = tagged(inner, len(exprs))
        grown = size + len(part.encode()) + (len(_JOIN) if parts else 0)
        if parts and (len(exprs) >= max_expressions or grown > max_bytes):
            out.append(Batch(_JOIN.join(parts), tuple(exprs)))
            parts, exprs = [], []
            part = tagged(inner, 0)
            grown = len(part.encode())
        parts.append(part)
        exprs.append(expr)
        size = grown
    if parts:
        out.append(Batch(_JOIN.join(parts), tuple(exprs)))
    return out


def _value(raw: Any) -> tuple[float, float]:
    """(value, timestamp) from Prometheus' `[<unix seconds>, "<value>"]`."""
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise BadResult(f"a sample value is {raw!r}, not [timestamp, value]")
    try:
        return float(raw[1]), float(raw[0])
    except (TypeError, ValueError) as e:
        raise BadResult(f"a sample value is {raw!r}: {e}") from None


def split(query: Batch, data: Any) -> dict[str, list[Sample]]:
    """The samples of each expression of `query` from the `data` of Prometheus' JSON answer (every
    expression present, with an empty list when it returned nothing). `BadResult` if `data` is not an
    instant vector of tagged series."""
    if not isinstance(data, Mapping) or data.get("resultType") != "vector":
        kind = data.get("resultType") if isinstance(data, Mapping) else type(data).__name__
        raise BadResult(f"the answer is a {kind}, not a vector")
    result = data.get("result")
    if not isinstance(result, list):
        raise BadResult("the answer has no result list")
    out: dict[str, list[Sample]] = {e: [] for e in query.expressions}
    for series in result:
        if not isinstance(series, Mapping) or not isinstance(series.get("metric"), Mapping):
            raise BadResult(f"a series is {series!r}, not {{metric, value}}")
        if "value" not in series:
            continue  # a native histogram: no float value to scale on
        labels = dict(series["metric"])
        tag = labels.pop(QUERY_LABEL, None)
        try:
            expr = query.expressions[int(tag)] if tag is not None else None
        except (ValueError, IndexError):
            expr = None
        if expr is None:
            raise BadResult(f"a series carries no valid {QUERY_LABEL} label: {series['metric']!r}")
        value, at = _value(series["value"])
        out[expr].append(Sample(labels, value, at))
    return out


def windowed(expr: str, seconds: int) -> str:
    """`expr` with every range window (`[5m]`) set to `seconds`."""
    return _WINDOW.sub(f"[{int(seconds)}s]", expr)


def _regex_literal(text: str) -> str:
    """`text` as an RE2 literal inside a PromQL double-quoted string."""
    escaped = "".join("\\" + c if c in _RE2_SPECIAL else c for c in text)
    return escaped.replace("\\", "\\\\").replace('"', '\\"')


def gpu_query(metric: str, namespaces: Iterable[str]) -> str:
    """The selector of metric `metric`'s series in `namespaces` (one query for every GPU policy on it)."""
    spaces = "|".join(_regex_literal(n) for n in sorted(set(namespaces)))
    return f'{metric}{{namespace=~"{spaces}"}}'


def gpu_stamp_query(metric: str, namespaces: Iterable[str]) -> str:
    """When each of `gpu_query`'s series was scraped."""
    return f"timestamp({gpu_query(metric, namespaces)})"


def _gpu_id(labels: Mapping[str, str]) -> tuple[str, ...]:
    host = labels.get("hostname", labels.get("Hostname", ""))
    ids = tuple(next((labels[k] for k in keys if k in labels), "") for keys in _GPU_ID_LABELS)
    if not ids[0]:  # no UUID label: the index on its host is the next best name
        return (host, labels.get("gpu", ""), *ids[1:])
    return ids


SeriesKey = tuple[tuple[str, str], ...]


def _series_key(labels: Mapping[str, str]) -> SeriesKey:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def scrape_times(stamps: Sequence[Sample]) -> dict[SeriesKey, float]:
    """The answer of a `gpu_stamp_query` by series (labels without the metric name), for `gpu_values`; built
    once for every target the query serves."""
    return {_series_key(s.labels): s.value for s in stamps}


def gpu_values(
    values: Sequence[Sample], scraped: Mapping[SeriesKey, float], namespace: str, pods: Collection[str]
) -> tuple[tuple[float, ...], float | None]:
    """The per-GPU values of the series whose (namespace, pod) is one of the target's pods, one value per GPU
    (by UUID and MIG instance; a GPU repeated for several pods counts once, its largest value), ordered by
    host and GPU index; and the oldest scrape time among them (from `scraped`, see `scrape_times`, else the
    evaluation time). Non-finite values are skipped. ((), None) when no series matches."""
    by_gpu: dict[tuple[str, ...], tuple[tuple[str, int, str], float]] = {}
    oldest: float | None = None
    for s in values:
        if s.labels.get("namespace") != namespace or s.labels.get("pod") not in pods:
            continue
        if not math.isfinite(s.value):
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
