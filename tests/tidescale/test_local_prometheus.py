"""Prometheus (Debian's package) scrapes the simulated DCGM exporter; PromQL sees the load a test sets."""

from __future__ import annotations

import pytest

from kernel.clock import SYSTEM_CLOCK, Deadline
from tidescale.local import environment, exporter, prometheus

pytestmark = pytest.mark.integration


def wait_for_value(url: str, promql: str, expected: float, timeout: float = 30) -> float | None:
    """Poll an instant query until it returns `expected` (± 0.5); the last value seen otherwise."""
    deadline = Deadline(timeout)
    last: float | None = None
    while not deadline.expired():
        result = prometheus.query(url, promql)
        if result:
            value = result[0]["value"]
            assert isinstance(value, list)
            last = float(value[1])
            if abs(last - expected) <= 0.5:
                return last
        SYSTEM_CLOCK.sleep(0.5)
    return last


@pytest.mark.parametrize("load", [0.9, 0.2], ids=["high", "low"])
def test_a_query_returns_the_gpu_utilization_a_test_just_set_through_the_load_signal(
    local_env: environment.Environment, load: float
) -> None:
    answer = exporter.set_load(local_env.exporter_url, load, namespace="demo", deployment="llm")
    assert len(answer["uuids"]) == 2  # type: ignore[arg-type]

    query = 'avg(DCGM_FI_DEV_GPU_UTIL{namespace="demo", pod=~"llm-.*"})'
    # The embedded spec's noise is ±1 point; the average of two GPUs stays within it.
    assert wait_for_value(local_env.prometheus_url, query, load * 100, timeout=30) == pytest.approx(
        load * 100, abs=1
    )


def test_prometheus_scrapes_the_exporter_with_dcgm_names_and_labels(
    local_env: environment.Environment,
) -> None:
    result = prometheus.query(local_env.prometheus_url, 'DCGM_FI_DEV_FB_FREE{hostname="l40s-pool-0"}')
    deadline = Deadline(20)
    while not result and not deadline.expired():
        SYSTEM_CLOCK.sleep(0.5)
        result = prometheus.query(local_env.prometheus_url, 'DCGM_FI_DEV_FB_FREE{hostname="l40s-pool-0"}')
    labels = [r["metric"] for r in result]
    assert len(labels) == 2
    for metric in labels:
        assert isinstance(metric, dict)
        assert metric["modelName"] == "NVIDIA L40S"
        assert str(metric["UUID"]).startswith("GPU-")
        assert metric["job"] == "dcgm-exporter"


def test_a_caller_adds_a_scrape_target_and_prometheus_reloads(local_env: environment.Environment) -> None:
    # Prometheus scrapes itself once added: `up{job="self"}` becomes 1.
    address = local_env.prometheus_url.removeprefix("http://")
    prometheus.add_scrape_target(
        local_env.state_dir, local_env.prometheus_url, prometheus.ScrapeTarget("self", address)
    )
    assert wait_for_value(local_env.prometheus_url, 'up{job="self"}', 1.0, timeout=30) == 1.0
