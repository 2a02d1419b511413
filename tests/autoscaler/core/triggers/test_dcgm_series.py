"""The GPU trigger types' queries and readings: one selector per namespace and metric, a target's GPUs
picked from the answer, one value per GPU."""

from __future__ import annotations

import pytest

from autoscaler.api.policy import GPUUtilizationTrigger
from autoscaler.core.promql import Result, Sample
from autoscaler.core.triggers import Reading, Scope, dcgm_series

SPEC = GPUUtilizationTrigger(type="GPUUtilization", metric="DCGM_FI_DEV_GPU_UTIL", target=70)


def a_gpu(
    pod: str, uuid: str, value: float, *, ns: str = "ml", gpu: str = "0", host: str = "n1", **more: str
) -> Sample:
    labels = {"namespace": ns, "pod": pod, "UUID": uuid, "gpu": gpu, "hostname": host, **more}
    return Sample({"__name__": "DCGM_FI_DEV_GPU_UTIL", **labels}, value, 100.0)


def stamp(s: Sample, at: float) -> Sample:
    """The `timestamp(…)` answer for series `s`: the same labels without the metric name."""
    return Sample({k: v for k, v in s.labels.items() if k != "__name__"}, at, 100.0)


@pytest.mark.parametrize(
    ("namespace", "want"),
    [
        ("ml", 'DCGM_FI_DEV_GPU_UTIL{namespace="ml"}'),
        ("a.b", 'DCGM_FI_DEV_GPU_UTIL{namespace="a.b"}'),
        ('we"ird\\', 'DCGM_FI_DEV_GPU_UTIL{namespace="we\\"ird\\\\"}'),
    ],
    ids=["plain", "dots-are-literal", "escaped"],
)
def test_a_gpu_query_selects_the_targets_namespace(namespace: str, want: str) -> None:
    assert dcgm_series.queries(SPEC, Scope(namespace, frozenset({"p"}))) == {
        "value": want,
        "stamp": f"timestamp({want})",
    }


def test_every_target_in_a_namespace_asks_the_same_expressions() -> None:
    a = dcgm_series.queries(SPEC, Scope("ml", frozenset({"llm-a"})))
    b = dcgm_series.queries(SPEC, Scope("ml", frozenset({"embed-a"})))
    assert a == b


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
    values, at = dcgm_series.gpu_values(series, (), Scope(namespace, frozenset(pods)))
    assert values == want
    assert (at is None) == (not want)


def test_a_targets_gpu_sample_time_is_its_oldest_scrape() -> None:
    series = [a_gpu("llm-a", "GPU-1", 0.5), a_gpu("llm-b", "GPU-2", 0.7), a_gpu("embed", "GPU-3", 0.1)]
    stamps = [stamp(s, t) for s, t in zip(series, (97.0, 98.5, 10.0), strict=True)]
    assert dcgm_series.gpu_values(series, stamps, Scope("ml", frozenset({"llm-a", "llm-b"}))) == (
        (0.5, 0.7),
        97.0,
    )
    # without the scrape times, the evaluation time stands in
    assert dcgm_series.gpu_values(series, (), Scope("ml", frozenset({"llm-a"}))) == ((0.5,), 100.0)


def read(results: dict[str, Result], scope: Scope) -> Reading:
    queries = dcgm_series.queries(SPEC, scope)
    return dcgm_series.reading(SPEC, scope, queries, results)


def test_a_reading_has_the_targets_gpus_their_oldest_scrape_and_its_pods_when_read() -> None:
    # llm-c is named by no series: it holds no GPU yet, or shares one the exporter names for another pod
    scope = Scope("ml", frozenset({"llm-a", "llm-b", "llm-c"}))
    q = dcgm_series.queries(SPEC, scope)
    series = [
        a_gpu("llm-a", "GPU-1", 0.5),
        a_gpu("llm-b", "GPU-2", 0.7),
        a_gpu("llm-b", "GPU-3", 0.6, gpu="1"),  # two GPUs, one pod
        a_gpu("embed", "GPU-4", 0.1),
    ]
    stamps = [stamp(s, t) for s, t in zip(series, (95.0, 99.0, 99.0, 10.0), strict=True)]
    got = read({q["value"]: series, q["stamp"]: stamps}, scope)
    assert got == Reading(per_gpu=(0.5, 0.7, 0.6), at=95.0, series={"pods": 3.0})


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("Prometheus at http://p: HTTP 503", "Prometheus at http://p: HTTP 503"),
        ([], "no GPU series for the target's pods (DCGM_FI_DEV_GPU_UTIL in namespace ml, 2 pods)"),
        (None, "no GPU series for the target's pods (DCGM_FI_DEV_GPU_UTIL in namespace ml, 2 pods)"),
    ],
    ids=["query-failed", "no-series", "not-asked"],
)
def test_a_target_without_usable_gpu_series_reads_as_an_error(answer: Result | None, error: str) -> None:
    scope = Scope("ml", frozenset({"llm-a", "llm-b"}))
    q = dcgm_series.queries(SPEC, scope)
    results: dict[str, Result] = {} if answer is None else {q["value"]: answer}
    assert read(results, scope) == Reading(error=error)


def test_a_failed_stamp_query_leaves_the_evaluation_time() -> None:
    scope = Scope("ml", frozenset({"llm-a"}))
    q = dcgm_series.queries(SPEC, scope)
    got = read({q["value"]: [a_gpu("llm-a", "GPU-1", 0.5)], q["stamp"]: "rejected"}, scope)
    assert got == Reading(per_gpu=(0.5,), at=100.0, series={"pods": 1.0})
