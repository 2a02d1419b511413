"""Batched PromQL: combining expressions into queries, splitting the answer back, picking a target's GPUs."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.controller.sources import promql
from autoscaler.controller.sources.promql import QUERY_LABEL, BadResult, Batch, Sample


def a_series(tag: int | None, value: str = "1", at: float = 100.0, **labels: str) -> dict[str, Any]:
    metric = dict(labels)
    if tag is not None:
        metric[QUERY_LABEL] = str(tag)
    return {"metric": metric, "value": [at, value]}


def a_vector(*series: dict[str, Any]) -> dict[str, Any]:
    return {"resultType": "vector", "result": list(series)}


def a_gpu(
    pod: str, uuid: str, value: float, *, ns: str = "ml", gpu: str = "0", host: str = "n1", **more: str
) -> Sample:
    labels = {"namespace": ns, "pod": pod, "UUID": uuid, "gpu": gpu, "hostname": host, **more}
    return Sample({"__name__": "DCGM_FI_DEV_GPU_UTIL", **labels}, value, 100.0)


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


@pytest.mark.parametrize(
    ("expr", "seconds", "want"),
    [
        ("sum(rate(gateway_requests_total[1m]))", 30, "sum(rate(gateway_requests_total[30s]))"),
        ("rate(a[5m]) / rate(b[2h])", 6, "rate(a[6s]) / rate(b[6s])"),
        ("max_over_time(x[5m:1m])", 6, "max_over_time(x[5m:1m])"),
        ("sum(queue)", 6, "sum(queue)"),
    ],
    ids=["one-window", "every-window", "subquery-untouched", "no-window"],
)
def test_windowed_sets_every_range_window(expr: str, seconds: int, want: str) -> None:
    assert promql.windowed(expr, seconds) == want


@pytest.mark.parametrize(
    ("namespaces", "want"),
    [
        (["ml"], 'DCGM_FI_DEV_GPU_UTIL{namespace=~"ml"}'),
        (["b", "a", "b"], 'DCGM_FI_DEV_GPU_UTIL{namespace=~"a|b"}'),
        (["a.b"], 'DCGM_FI_DEV_GPU_UTIL{namespace=~"a\\\\.b"}'),
    ],
    ids=["one", "sorted-unique", "escaped"],
)
def test_a_gpu_query_selects_every_namespace_involved(namespaces: list[str], want: str) -> None:
    assert promql.gpu_query("DCGM_FI_DEV_GPU_UTIL", namespaces) == want
    assert promql.gpu_stamp_query("DCGM_FI_DEV_GPU_UTIL", namespaces) == f"timestamp({want})"


@pytest.mark.parametrize(
    ("series", "namespace", "pods", "want"),
    [
        (
            [a_gpu("llm-a", "GPU-1", 0.5), a_gpu("llm-b", "GPU-2", 0.7, gpu="1")],
            "ml",
            {"llm-a", "llm-b"},
            (0.5, 0.7),
        ),
        ([a_gpu("llm-a", "GPU-1", 0.5), a_gpu("embed-a", "GPU-2", 0.9)], "ml", {"llm-a"}, (0.5,)),
        ([a_gpu("llm-a", "GPU-1", 0.5, ns="other")], "ml", {"llm-a"}, ()),
        ([a_gpu("llm-a", "GPU-1", 0.5)], "ml", set(), ()),
        # a shared GPU repeated for two of the target's pods counts once
        ([a_gpu("llm-a", "GPU-1", 0.4), a_gpu("llm-b", "GPU-1", 0.6)], "ml", {"llm-a", "llm-b"}, (0.6,)),
        # MIG instances of one GPU are separate devices
        (
            [a_gpu("llm-a", "GPU-1", 0.1, GPU_I_ID="1"), a_gpu("llm-b", "GPU-1", 0.2, GPU_I_ID="2")],
            "ml",
            {"llm-a", "llm-b"},
            (0.1, 0.2),
        ),
        # ordered by host, then GPU index
        (
            [
                a_gpu("p", "GPU-3", 3, host="n2"),
                a_gpu("p", "GPU-2", 2, gpu="10"),
                a_gpu("p", "GPU-1", 1, gpu="2"),
            ],
            "ml",
            {"p"},
            (1, 2, 3),
        ),
        (
            [a_gpu("llm-a", "GPU-1", float("nan")), a_gpu("llm-b", "GPU-2", 0.3)],
            "ml",
            {"llm-a", "llm-b"},
            (0.3,),
        ),
    ],
    ids=[
        "two-pods",
        "other-deployment",
        "other-namespace",
        "no-pods",
        "shared-gpu",
        "mig",
        "ordered",
        "nan-skipped",
    ],
)
def test_a_targets_gpu_values_come_from_its_own_pods_one_per_gpu(
    series: list[Sample], namespace: str, pods: set[str], want: tuple[float, ...]
) -> None:
    values, at = promql.gpu_values(series, {}, namespace, frozenset(pods))
    assert values == want
    assert (at is None) == (not want)


def test_a_targets_gpu_sample_time_is_its_oldest_scrape() -> None:
    series = [a_gpu("llm-a", "GPU-1", 0.5), a_gpu("llm-b", "GPU-2", 0.7), a_gpu("embed", "GPU-3", 0.1)]
    stamps = [
        Sample({k: v for k, v in s.labels.items() if k != "__name__"}, t, 100.0)
        for s, t in zip(series, (97.0, 98.5, 10.0), strict=True)
    ]
    scraped = promql.scrape_times(stamps)
    assert promql.gpu_values(series, scraped, "ml", frozenset({"llm-a", "llm-b"})) == ((0.5, 0.7), 97.0)
    # without the scrape times, the evaluation time stands in
    assert promql.gpu_values(series, {}, "ml", frozenset({"llm-a"})) == ((0.5,), 100.0)
