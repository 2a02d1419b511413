"""PromQL as plain values: the one reading of range windows, and the single series a scalar trigger needs."""

from __future__ import annotations

import pytest

from autoscaler.core import promql
from autoscaler.core.promql import Sample


@pytest.mark.parametrize(
    ("expr", "seconds", "want"),
    [
        ("sum(rate(gateway_requests_total[1m]))", 30, "sum(rate(gateway_requests_total[30s]))"),
        ("rate(a[5m]) / rate(b[2h])", 6, "rate(a[6s]) / rate(b[6s])"),
        ("rate(a[1h30m])", 6, "rate(a[6s])"),
        (
            "rate(a[250ms]) + rate(b[2d]) + rate(c[1w]) + rate(d[1y])",
            6,
            "rate(a[6s]) + rate(b[6s]) + rate(c[6s]) + rate(d[6s])",
        ),
        ("max_over_time(x[5m:1m])", 6, "max_over_time(x[5m:1m])"),
        ("sum(queue)", 6, "sum(queue)"),
    ],
    ids=["one-window", "every-window", "compound", "every-unit", "subquery-untouched", "no-window"],
)
def test_windowed_sets_every_range_window(expr: str, seconds: int, want: str) -> None:
    assert promql.windowed(expr, seconds) == want


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ("rate(x[30s])", 30.0),
        ("rate(x[5m])", 300.0),
        ("rate(x[2h])", 7200.0),
        ("rate(x[1h30m])", 5400.0),
        ("rate(x[250ms])", 0.25),
        ("rate(x[1d])", 86400.0),
        ("rate(x[5m]) / rate(y[1h])", 300.0),
        ("max_over_time(x[5m:1m])", None),
        ("sum(queue)", None),
    ],
    ids=["s", "m", "h", "compound", "ms", "d", "first-window", "subquery", "none"],
)
def test_the_first_range_window_is_read_in_seconds_whatever_its_unit(expr: str, want: float | None) -> None:
    assert promql.range_seconds(expr) == want


@pytest.mark.parametrize("text", ["", "5", "m", "5x", "5m ", "1.5m"])
def test_what_is_not_a_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        promql.duration_seconds(text)


@pytest.mark.parametrize(
    ("result", "want"),
    [
        (None, "query was not asked: q"),
        ("Prometheus at http://p is unreachable", "Prometheus at http://p is unreachable"),
        ([], "query returned no series: q"),
        ([Sample({}, 1.0, 10.0), Sample({"a": "b"}, 2.0, 10.0)], "query returned 2 series, not one"),
        ([Sample({}, float("nan"), 10.0)], "query returned nan: q"),
        ([Sample({}, float("inf"), 10.0)], "query returned inf: q"),
    ],
    ids=["not-asked", "error", "empty", "ambiguous", "nan", "inf"],
)
def test_a_scalar_query_needs_exactly_one_finite_series(result: promql.Result | None, want: str) -> None:
    got = promql.single("q", result)
    assert isinstance(got, str) and got.startswith(want)


def test_the_one_series_is_the_answer() -> None:
    assert promql.single("q", [Sample({}, 3.0, 10.0)]) == Sample({}, 3.0, 10.0)
