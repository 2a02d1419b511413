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

What the expressions are, and what their samples (`autoscaler.core.promql.Sample`) mean, is the trigger
types' business (`autoscaler.core.triggers`); this module only packs and unpacks them.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoscaler.core.promql import Sample

QUERY_LABEL = "__tidescale_q"
MAX_EXPRESSIONS = 200
MAX_BYTES = 64 * 1024
_JOIN = " or "

_SCALAR_CALL = re.compile(r"\bscalar\s*\(")
# Atomic tokens under a possessive star: no backtracking, linear in the text whatever it holds.
_SCALAR_TEXT = re.compile(
    r"(?>\s+|[-+*/%^()]|0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|(?i:inf|nan)\b"
    r"|time\s*\(\s*\)|pi\s*\(\s*\))*+"
)


class BadResult(ValueError):
    """Prometheus answered, but not with the instant vector a batch asks for."""


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
