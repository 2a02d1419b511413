"""The Prometheus metric source against the real Prometheus scraping the simulated DCGM exporter
(examples/exporter/simulate.yaml: `llm` on five GPUs and `embed` on two, namespace `ml`), and against an
HTTP fake for the failures Prometheus cannot be made to produce (bad JSON, HTTP 503, a timeout)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from autoscaler.api.policy import (
    CapacityProfile,
    GPUUtilizationTrigger,
    Latency,
    PrometheusTrigger,
    QueueDepthTrigger,
    SLOTrigger,
)
from autoscaler.controller.ports import MetricRequest
from autoscaler.controller.sources.prometheus import PrometheusSource
from autoscaler.core.triggers import Reading
from kernel.clock import SYSTEM_CLOCK
from tests.autoscaler.autoscaler_builders import TRIGGERS
from tests.waiting import wait_for
from tidescale.local import environment
from tidescale.local.exporter import set_load
from tidescale.local.process import free_port

integration = pytest.mark.integration

SIMULATE = Path(__file__).resolve().parents[3] / "examples" / "exporter" / "simulate.yaml"
LLM_PODS = frozenset(
    {
        "llm-7d9f8b6c5-abcde",
        "llm-7d9f8b6c5-fghij",
        "llm-7d9f8b6c5-klmno",
        "llm-7d9f8b6c5-uvwxy",
        "llm-7d9f8b6c5-zabcd",
    }
)
EMBED_PODS = frozenset({"embed-5c4b7f9d8-pqrst", "embed-5c4b7f9d8-efghi"})


@pytest.fixture(scope="module")
def gpu_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[environment.Environment]:
    """The exporter simulating simulate.yaml and a Prometheus scraping it every second (the session's
    `local_env` simulates the harness' own GPUs, not these)."""
    state_dir = tmp_path_factory.mktemp("prometheus-source")
    env = environment.up(["exporter", "prometheus"], state_dir, gpu_spec=SIMULATE)
    try:
        wait_for(
            lambda: (
                _instant(env.prometheus_url, 'count(DCGM_FI_PROF_GR_ENGINE_ACTIVE{namespace="ml"})') == 7.0
            ),
            60,
            "the first scrape of the exporter",
        )
        yield env
    finally:
        environment.down(state_dir)


@pytest.fixture
def source(gpu_env: environment.Environment) -> Iterator[PrometheusSource]:
    s = PrometheusSource(gpu_env.prometheus_url, TRIGGERS, timeout_s=5, scrape_interval_s=1)
    yield s
    s.close()


def _instant(url: str, query: str) -> float | None:
    result = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def now() -> float:
    return SYSTEM_CLOCK.now().timestamp()


def a_request(
    policy: str, spec: Any, namespace: str = "ml", pods: frozenset[str] = frozenset()
) -> MetricRequest:
    return MetricRequest(policy=policy, trigger="t", spec=spec, namespace=namespace, pods=pods)


def prometheus(query: str) -> PrometheusTrigger:
    return PrometheusTrigger(type="Prometheus", query=query, target=1)


def queue(query: str) -> QueueDepthTrigger:
    return QueueDepthTrigger(type="QueueDepth", query=query, target_per_replica=1)


def gpu(metric: str = "DCGM_FI_PROF_GR_ENGINE_ACTIVE", aggregation: str = "mean") -> GPUUtilizationTrigger:
    return GPUUtilizationTrigger(type="GPUUtilization", metric=metric, aggregation=aggregation, target=70)


def slo(**queries: str) -> SLOTrigger:
    return SLOTrigger(
        type="SLO",
        latency=Latency(target_milliseconds=500),
        capacity=CapacityProfile(prefill_tokens_per_second=10_000, decode_tokens_per_second=1_000),
        **queries,
    )


@integration
def test_fifty_policies_over_three_kinds_cost_three_queries_and_each_gets_its_own_value(
    source: PrometheusSource,
) -> None:
    requests = [a_request(f"ml/p{i}", prometheus(f"vector({i})")) for i in range(50)]
    requests += [a_request(f"ml/q{i}", queue(f"vector({100 + i})")) for i in range(10)]
    requests += [a_request(f"ml/llm{i}", gpu(), pods=LLM_PODS) for i in range(3)]
    requests.append(a_request("ml/embed", gpu(), pods=EMBED_PODS))
    before = now()
    got = source.read(requests, now())
    assert source.queries == 3
    assert set(got) == {(r.policy, "t") for r in requests}
    for i in range(50):
        r = got[(f"ml/p{i}", "t")]
        assert r.error is None and r.value == float(i)
        assert r.at is not None and r.at >= before - 1
    assert [got[(f"ml/q{i}", "t")].value for i in range(10)] == [100.0 + i for i in range(10)]
    assert len(got[("ml/llm0", "t")].per_gpu) == 5
    assert len(got[("ml/embed", "t")].per_gpu) == 2


@integration
def test_the_same_query_in_many_policies_is_asked_once(source: PrometheusSource) -> None:
    got = source.read([a_request(f"ml/p{i}", prometheus("sum(up)")) for i in range(20)], now())
    assert source.queries == 1
    assert {r.value for r in got.values()} == {1.0}


@integration
def test_gpu_readings_follow_a_load_change_on_the_targets_gpus_only(
    source: PrometheusSource, gpu_env: environment.Environment
) -> None:
    llm = a_request("ml/llm", gpu(), pods=LLM_PODS)
    embed = a_request("ml/embed", gpu("DCGM_FI_DEV_GPU_UTIL", "max"), pods=EMBED_PODS)

    def loaded(llm_load: float) -> dict[Any, Reading] | None:
        got = source.read([llm, embed], now())
        values = got[("ml/llm", "t")].per_gpu
        return got if len(values) == 5 and all(abs(v - llm_load) < 0.1 for v in values) else None

    set_load(gpu_env.exporter_url, 0.0)
    try:
        wait_for(lambda: loaded(0.0), 30, "idle llm GPUs")
        set_load(gpu_env.exporter_url, 0.8, namespace="ml", deployment="llm")
        got = wait_for(lambda: loaded(0.8), 30, "the llm GPUs at 80%")
    finally:
        set_load(gpu_env.exporter_url, 0.0)
    llm_reading, embed_reading = got[("ml/llm", "t")], got[("ml/embed", "t")]
    # PROF fields are ratios, DEV_GPU_UTIL percents: each in its own unit, as the evaluator expects
    assert embed_reading.per_gpu == (0.0, 0.0)
    # `at` is when Prometheus scraped the series, at most a few scrape intervals ago
    assert llm_reading.at is not None and now() - 10 < llm_reading.at <= now()


@integration
def test_a_target_without_gpu_series_reads_as_an_error(source: PrometheusSource) -> None:
    got = source.read(
        [
            a_request("ml/gone", gpu(), pods=frozenset({"llm-0000000000-zzzzz"})),
            a_request("other/llm", gpu(), namespace="other", pods=LLM_PODS),
        ],
        now(),
    )
    for r in got.values():
        assert r.error is not None and r.error.startswith("no GPU series for the target's pods")
        assert r.per_gpu == () and r.value is None


@integration
def test_an_slo_trigger_reads_every_series_in_the_kinds_one_query(source: PrometheusSource) -> None:
    full = slo(
        request_rate_query="vector(12)",
        prompt_token_rate_query="vector(6000)",
        generated_token_rate_query="vector(1200)",
        queue_query="vector(3)",
    )
    windowed = slo(request_rate_query="sum(count_over_time(up[1m])) * 0 + 5")
    got = source.read([a_request("ml/full", full), a_request("ml/rate-only", windowed)], now())
    assert source.queries == 1
    r = got[("ml/full", "t")]
    assert r.value == 12.0
    assert dict(r.series) == {
        "requestsPerSecondShort": 12.0,
        "promptTokensPerSecond": 6000.0,
        "generatedTokensPerSecond": 1200.0,
        "waiting": 3.0,
    }
    assert got[("ml/rate-only", "t")].value == 5.0
    assert dict(got[("ml/rate-only", "t")].series) == {"requestsPerSecondShort": 5.0}


@integration
def test_an_empty_or_ambiguous_result_is_an_error_never_a_silent_zero(source: PrometheusSource) -> None:
    got = source.read(
        [
            a_request("ml/empty", prometheus("no_such_metric")),
            a_request("ml/many", queue('DCGM_FI_DEV_GPU_UTIL{namespace="ml"}')),
            a_request("ml/nan", prometheus("vector(0) / 0")),
            a_request("ml/slo", slo(request_rate_query="no_such_metric")),
        ],
        now(),
    )
    assert got[("ml/empty", "t")].error == "query returned no series: no_such_metric"
    assert "returned 7 series" in (got[("ml/many", "t")].error or "")
    assert got[("ml/nan", "t")].error == "query returned nan: vector(0) / 0"
    assert got[("ml/slo", "t")].error == "query returned no series: no_such_metric"
    assert all(r.value is None for r in got.values())


@integration
def test_a_query_prometheus_rejects_fails_only_its_policy_and_is_not_asked_again(
    source: PrometheusSource,
) -> None:
    requests = [a_request(f"ml/p{i}", prometheus(f"vector({i})")) for i in range(20)]
    requests.append(a_request("ml/bad", prometheus("sum(rate(x[1m])")))
    got = source.read(requests, now())
    bad = got[("ml/bad", "t")].error or ""
    assert "rejected 'sum(rate(x[1m])'" in bad and source.url in bad
    assert [got[(f"ml/p{i}", "t")].value for i in range(20)] == [float(i) for i in range(20)]
    first = source.queries
    assert first > 1  # the batch was halved to find the bad expression
    again = source.read(requests, now())
    assert source.queries == first + 1
    assert again[("ml/bad", "t")].error == bad


@integration
def test_a_scalar_that_does_not_look_like_one_is_learnt_and_wrapped(source: PrometheusSource) -> None:
    got = source.read([a_request("ml/s", prometheus("scalar(sum(up)) > bool 0"))], now())
    assert got[("ml/s", "t")].value == 1.0
    before = source.queries
    assert (
        source.read([a_request("ml/s", prometheus("scalar(sum(up)) > bool 0"))], now())[("ml/s", "t")].value
        == 1.0
    )
    assert source.queries == before + 1


@integration
def test_prometheus_on_a_closed_port_gives_every_request_an_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    s = PrometheusSource(url, TRIGGERS, timeout_s=2)
    try:
        requests = [
            a_request("ml/p", prometheus("vector(1)")),
            a_request("ml/g", gpu(), pods=LLM_PODS),
            a_request("ml/s", slo(request_rate_query="vector(1)")),
        ]
        got = s.read(requests, now())
    finally:
        s.close()
    assert set(got) == {(r.policy, "t") for r in requests}
    for r in got.values():
        assert r.error is not None and url in r.error
        assert r.value is None and r.per_gpu == ()


# --- failures Prometheus cannot be made to produce: an HTTP fake ------------------------------------------


def a_fake(handler: Callable[[httpx.Request], httpx.Response]) -> PrometheusSource:
    return PrometheusSource(
        "http://prometheus.test:9090", TRIGGERS, client=httpx.Client(transport=httpx.MockTransport(handler))
    )


def timing_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (lambda r: httpx.Response(200, text="<html>proxy login</html>"), "not JSON"),
        (
            lambda r: httpx.Response(
                503, json={"status": "error", "errorType": "unavailable", "error": "busy"}
            ),
            "503",
        ),
        (lambda r: httpx.Response(502, text="Bad Gateway"), "502"),
        (
            lambda r: httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix"}}),
            "matrix",
        ),
        (timing_out, "no answer within"),
        (
            lambda r: httpx.Response(
                400, json={"status": "error", "errorType": "bad_data", "error": 'invalid parameter "time"'}
            ),
            'invalid parameter "time"',
        ),
    ],
    ids=["not-json", "http-503", "http-502-text", "not-a-vector", "timeout", "bad-parameter-not-query"],
)
def test_an_unusable_answer_gives_every_request_of_the_kind_an_error(
    handler: Callable[[httpx.Request], httpx.Response], reason: str
) -> None:
    s = a_fake(handler)
    requests = [a_request(f"ml/p{i}", prometheus(f"vector({i})")) for i in range(5)]
    got = s.read(requests, now())
    assert s.queries == 1  # one failed query is enough to know: no halving, no retry storm
    for r in got.values():
        assert r.error is not None and "http://prometheus.test:9090" in r.error and reason in r.error


def test_each_kind_is_one_post_to_the_query_api() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": []}})

    s = a_fake(answer)
    s.read(
        [
            a_request("ml/p", prometheus("vector(1)")),
            a_request("ml/q", queue("vector(2)")),
            a_request("ml/g", gpu()),
        ],
        now(),
    )
    assert [(r.method, r.url.path) for r in seen] == [("POST", "/api/v1/query")] * 3
    assert all(b"__tidescale_q" in r.content for r in seen)


def test_prometheus_going_down_and_coming_back_is_one_warning_and_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    up = {"now": False}

    def answer(request: httpx.Request) -> httpx.Response:
        if not up["now"]:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": []}})

    s = a_fake(answer)
    requests = [a_request("ml/p", prometheus("vector(1)"))]
    with caplog.at_level("INFO", logger="autoscaler.controller.sources.prometheus"):
        for _ in range(5):
            s.read(requests, now())
        up["now"] = True
        for _ in range(5):
            s.read(requests, now())
    lines = [(r.levelname, r.getMessage().split(" is ")[1][:4]) for r in caplog.records]
    assert lines == [("WARNING", "down"), ("INFO", "back")]
    assert all(getattr(r, "source", None) == "prometheus" for r in caplog.records)
