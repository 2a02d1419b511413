"""The Prometheus and QueueDepth triggers' query and reading: the trigger's own expression, one series."""

from __future__ import annotations

import pytest

from autoscaler.core.promql import Result, Sample
from autoscaler.core.triggers import Reading, Scope, prometheus
from autoscaler.core.triggers.prometheus import PrometheusTrigger
from tests.autoscaler.autoscaler_builders import TRIGGERS

SPEC = PrometheusTrigger(type="Prometheus", query="  sum(rate(http_requests_total[1m])) ", target=100)


def test_the_query_is_the_triggers_own_expression() -> None:
    assert prometheus.queries(SPEC, Scope("ml")) == {"value": "sum(rate(http_requests_total[1m]))"}


@pytest.mark.parametrize(
    ("answer", "want"),
    [
        ([Sample({}, 42.0, 99.0)], Reading(value=42.0, at=99.0)),
        ([], Reading(error="query returned no series: sum(rate(http_requests_total[1m]))")),
        (
            [Sample({}, float("nan"), 99.0)],
            Reading(error="query returned nan: sum(rate(http_requests_total[1m]))"),
        ),
        ("rejected", Reading(error="rejected")),
    ],
    ids=["one-series", "empty", "nan", "error"],
)
def test_the_reading_is_the_one_finite_series(answer: Result, want: Reading) -> None:
    q = prometheus.queries(SPEC, Scope("ml"))
    assert prometheus.reading(SPEC, Scope("ml"), q, {q["value"]: answer}) == want


def test_queue_depth_is_asked_and_read_the_same_way() -> None:
    queue, prom = TRIGGERS.get("QueueDepth"), TRIGGERS.get("Prometheus")
    assert (queue.queries, queue.reading) == (prom.queries, prom.reading)
