"""Batched PromQL: combining expressions into queries, splitting the answer back."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.controller.sources import promql
from autoscaler.controller.sources.promql import QUERY_LABEL, BadResult, Batch
from autoscaler.core.promql import Sample


def a_series(tag: int | None, value: str = "1", at: float = 100.0, **labels: str) -> dict[str, Any]:
    metric = dict(labels)
    if tag is not None:
        metric[QUERY_LABEL] = str(tag)
    return {"metric": metric, "value": [at, value]}


def a_vector(*series: dict[str, Any]) -> dict[str, Any]:
    return {"resultType": "vector", "result": list(series)}


@pytest.mark.parametrize(
    ("expr", "scalar"),
    [
        ("1", True),
        ("2.5e3", True),
        ("-1", True),
        ("0x1F", True),
        ("Inf", True),
        ("NaN", True),
        ("time()", True),
        ("scalar(sum(up))", True),
        ("scalar(sum(up)) * 2 + 1", True),
        ("up", False),
        ("vector(1)", False),
        ("sum(rate(http_requests_total[1m]))", False),
        ("info", False),
        ("scalar(up) + up", False),
        ("", False),
        ("1" * 10_000 + "x", False),
    ],
    ids=lambda v: str(v)[:24],
)
def test_scalars_are_recognised_so_they_can_be_wrapped_in_vector(expr: str, scalar: bool) -> None:
    assert promql.looks_scalar(expr) is scalar
    assert promql.as_vector(expr) == (f"vector({expr})" if scalar else expr.strip())


def test_expressions_are_tagged_with_their_index_and_joined_with_or() -> None:
    (b,) = promql.batch(["up", "sum(x)", "3"])
    assert b.expressions == ("up", "sum(x)", "3")
    assert b.text == (
        f'label_replace((up), "{QUERY_LABEL}", "0", "", "") or '
        f'label_replace((sum(x)), "{QUERY_LABEL}", "1", "", "") or '
        f'label_replace((vector(3)), "{QUERY_LABEL}", "2", "", "")'
    )


def test_identical_expressions_are_asked_once() -> None:
    (b,) = promql.batch(["sum(x)", " sum(x) ", "up", "sum(x)"])
    assert b.expressions == ("sum(x)", "up")


def test_expressions_known_to_be_scalars_are_wrapped_even_when_they_do_not_look_it() -> None:
    (b,) = promql.batch(["scalar(up) + up"], scalars={"scalar(up) + up"})
    assert "label_replace((vector(scalar(up) + up))" in b.text


@pytest.mark.parametrize(
    ("count", "max_expressions", "max_bytes", "sizes"),
    [
        (0, 200, 65536, []),
        (50, 200, 65536, [50]),
        (200, 200, 65536, [200]),
        (201, 200, 65536, [200, 1]),
        (450, 200, 65536, [200, 200, 50]),
        (10, 200, 300, [4, 4, 2]),  # 57 bytes an expression, 4 bytes a join: 5 would be 301
        (2, 200, 10, [1, 1]),  # one expression over the size limit still gets its own query
    ],
    ids=["none", "one-batch", "exactly-full", "one-over", "three-batches", "by-size", "each-too-long"],
)
def test_batches_respect_the_expression_and_size_limits(
    count: int, max_expressions: int, max_bytes: int, sizes: list[int]
) -> None:
    exprs = [f"metric_{i:03d}" for i in range(count)]
    batches = promql.batch(exprs, max_expressions=max_expressions, max_bytes=max_bytes)
    assert [len(b.expressions) for b in batches] == sizes
    assert [e for b in batches for e in b.expressions] == exprs
    for b in batches:
        assert len(b.expressions) == 1 or len(b.text.encode()) <= max_bytes
        # every batch numbers its own expressions from 0
        assert f'"{QUERY_LABEL}", "0"' in b.text
        assert f'"{QUERY_LABEL}", "{len(b.expressions)}"' not in b.text


def test_the_answer_is_split_back_per_expression_without_the_tag() -> None:
    b = Batch("…", ("a", "b", "c"))
    got = promql.split(
        b, a_vector(a_series(0, "1.5", 10.0, job="x"), a_series(2, "NaN"), a_series(2, "+Inf"))
    )
    assert got["a"] == [Sample({"job": "x"}, 1.5, 10.0)]
    assert got["b"] == []
    assert [s.value for s in got["c"]][1] == float("inf")
    assert str(got["c"][0].value) == "nan"


@pytest.mark.parametrize(
    "data",
    [
        {"resultType": "scalar", "result": [1, "1"]},
        {"resultType": "vector"},
        "nonsense",
        a_vector(a_series(None)),
        a_vector(a_series(7)),
        a_vector({"metric": {QUERY_LABEL: "0"}, "value": "1"}),
        a_vector({"metric": {QUERY_LABEL: "0"}, "value": [1, "one"]}),
    ],
    ids=["scalar", "no-result", "not-a-mapping", "untagged", "unknown-tag", "bad-value", "not-a-number"],
)
def test_an_answer_that_is_not_a_tagged_vector_is_refused(data: Any) -> None:
    with pytest.raises(BadResult):
        promql.split(Batch("…", ("a",)), data)
