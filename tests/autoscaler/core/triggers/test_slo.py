"""The SLO trigger's queries and reading: the request rate over two windows, token rates and the queue when
named, all formed from plain answers."""

from __future__ import annotations

import pytest

from autoscaler.core.promql import Result, Sample
from autoscaler.core.triggers import Reading, Scope, slo
from autoscaler.core.triggers.slo import CapacityProfile, Latency, SLOTrigger

RATE = "sum(rate(gateway_requests_total[1m]))"


def a_slo(window: int = 60, **queries: str) -> SLOTrigger:
    return SLOTrigger(
        type="SLO",
        latency=Latency(target_milliseconds=500),
        capacity=CapacityProfile(prefill_tokens_per_second=10_000, decode_tokens_per_second=1_000),
        request_rate_query=queries.pop("request_rate_query", RATE),
        window_seconds=window,
        **queries,
    )


def one(v: float, at: float = 100.0) -> list[Sample]:
    return [Sample({}, v, at)]


@pytest.mark.parametrize(
    ("window", "scrape", "short"),
    [(60, 1.0, 6), (60, 15.0, 30), (600, 15.0, 60), (60, 2.5, 6)],
    ids=["a-tenth", "two-scrapes", "a-tenth-of-ten-minutes", "two-scrapes-rounded-up"],
)
def test_the_short_window_is_a_tenth_of_the_long_one_but_at_least_two_scrapes(
    window: int, scrape: float, short: int
) -> None:
    q = slo.queries(a_slo(window), Scope("ml", scrape_interval_s=scrape))
    assert q == {
        "value": f"sum(rate(gateway_requests_total[{window}s]))",
        "requestsPerSecondShort": f"sum(rate(gateway_requests_total[{short}s]))",
    }


def test_token_rates_are_asked_only_in_pairs_and_the_queue_as_written() -> None:
    only_prompt = slo.queries(a_slo(prompt_token_rate_query="sum(rate(p[5m]))"), Scope("ml"))
    assert set(only_prompt) == {"value", "requestsPerSecondShort"}
    both = slo.queries(
        a_slo(
            prompt_token_rate_query="sum(rate(p[5m]))",
            generated_token_rate_query="sum(rate(g[5m]))",
            queue_query=" sum(queue) ",
        ),
        Scope("ml"),
    )
    assert both["promptTokensPerSecond"] == "sum(rate(p[60s]))"
    assert both["generatedTokensPerSecond"] == "sum(rate(g[60s]))"
    assert both["waiting"] == "sum(queue)"


def read(spec: SLOTrigger, answers: dict[str, Result]) -> Reading:
    """The reading from answers by role."""
    scope = Scope("ml")
    q = slo.queries(spec, scope)
    return slo.reading(spec, scope, q, {q[role]: a for role, a in answers.items()})


def test_every_series_the_trigger_names_is_in_its_reading() -> None:
    spec = a_slo(prompt_token_rate_query="p[1m]", generated_token_rate_query="g[1m]", queue_query="q")
    got = read(
        spec,
        {
            "value": one(12.0, 99.0),
            "requestsPerSecondShort": one(20.0),
            "promptTokensPerSecond": one(6000.0),
            "generatedTokensPerSecond": one(1200.0),
            "waiting": one(3.0),
        },
    )
    assert got == Reading(
        value=12.0,
        series={
            "requestsPerSecondShort": 20.0,
            "promptTokensPerSecond": 6000.0,
            "generatedTokensPerSecond": 1200.0,
            "waiting": 3.0,
        },
        at=99.0,
    )


def test_a_missing_short_rate_falls_back_to_the_long_one_and_a_lone_token_rate_is_dropped() -> None:
    spec = a_slo(prompt_token_rate_query="p[1m]", generated_token_rate_query="g[1m]")
    got = read(spec, {"value": one(5.0), "requestsPerSecondShort": [], "promptTokensPerSecond": one(9.0)})
    assert dict(got.series) == {"requestsPerSecondShort": 5.0}


def test_no_request_rate_is_an_error_never_a_silent_zero() -> None:
    assert (
        read(a_slo(), {"value": []}).error
        == "query returned no series: sum(rate(gateway_requests_total[60s]))"
    )
