"""The simulated gateway's pure model: capacity, the queue, the counters, the GPU load and the text."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import gateway
from exporter.gateway import BadTrafficRequest, Service, TrafficRequest, parse_traffic_request


def traffic(**overrides: Any) -> TrafficRequest:
    fields: dict[str, Any] = {
        "service": "vllm-code",
        "namespace": "ml",
        "deployment": "vllm-code",
        "requestsPerSecond": 10,
        "replicaRequestsPerSecond": 5,
    }
    return TrafficRequest.model_validate(fields | overrides)


def samples(text: str) -> dict[str, float]:
    """`name{service}` → value of every sample of the text (counters under their `_total` name)."""
    return {
        f"{s.name}{{{s.labels['service']}}}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.parametrize(
    ("fields", "capacity"),
    [
        # the example policy's profile: 2048/8000 + 64/1500 s per request
        pytest.param({"replicaRequestsPerSecond": None}, 1 / (2048 / 8000 + 64 / 1500), id="from-tokens"),
        pytest.param(
            {
                "replicaRequestsPerSecond": None,
                "promptTokens": 1000,
                "generatedTokens": 100,
                "prefillTokensPerSecond": 10000,
                "decodeTokensPerSecond": 1000,
            },
            5.0,
            id="own-profile",
        ),
        pytest.param({"replicaRequestsPerSecond": 7.5}, 7.5, id="given"),
    ],
)
def test_a_replicas_capacity_is_given_or_derived_from_the_tokens(
    fields: dict[str, Any], capacity: float
) -> None:
    assert gateway.replica_capacity(traffic(**fields)) == pytest.approx(capacity)


@pytest.mark.parametrize(
    ("rps", "replicas", "queue", "dt", "max_queue", "expected_queue", "expected_load"),
    [
        pytest.param(10, 0, 0, 2, 10_000, 20, 0.0, id="no-replicas-queue-grows"),
        pytest.param(10, 4, 0, 2, 10_000, 0, 0.5, id="enough-replicas-no-queue"),
        pytest.param(4, 2, 30, 2, 10_000, 18, 1.0, id="backlog-drains-replicas-busy"),
        pytest.param(4, 2, 5, 2, 10_000, 0, 0.4, id="never-below-zero"),
        pytest.param(10, 1, 0, 2, 10_000, 10, 1.0, id="overloaded-queue-grows"),
        pytest.param(20, 0, 0, 2, 25, 25, 0.0, id="capped"),
        pytest.param(0, 3, 0, 2, 10_000, 0, 0.0, id="idle"),
    ],
)
def test_the_queue_moves_by_arrivals_less_capacity_and_the_load_follows(
    rps: float,
    replicas: int,
    queue: float,
    dt: float,
    max_queue: int,
    expected_queue: float,
    expected_load: float,
) -> None:
    before = Service(traffic(requestsPerSecond=rps, maxQueue=max_queue), queue=queue)

    after = gateway.step(before, replicas, dt)

    assert after.queue == pytest.approx(expected_queue)
    assert after.load == pytest.approx(expected_load)
    assert after.replicas == replicas


def test_counters_count_arrivals_over_the_time_between_steps_whatever_the_replicas() -> None:
    state = gateway.with_traffic({}, traffic(requestsPerSecond=40, promptTokens=2048, generatedTokens=64))

    state = gateway.advance(state, {}, 0.5)
    state = gateway.advance(state, {"vllm-code": 3}, 1.0)

    s = state["vllm-code"]
    assert (s.requests, s.prompt_tokens, s.generated_tokens) == (60, 60 * 2048, 60 * 64)


def test_a_stopped_service_keeps_its_counters_and_series_and_drains_its_queue() -> None:
    state = gateway.with_traffic({}, traffic(requestsPerSecond=10))
    state = gateway.advance(state, {}, 3.0)  # 30 requests wait: no replicas
    state = gateway.with_traffic(state, traffic(requestsPerSecond=0))

    assert state["vllm-code"].busy  # requests still wait
    state = gateway.advance(state, {"vllm-code": 2}, 2.0)  # 2 × 5/s × 2 s = 20 served

    s = state["vllm-code"]
    assert (s.requests, s.queue, s.load, s.busy) == (30, 10, 1.0, True)
    state = gateway.advance(state, {"vllm-code": 2}, 5.0)
    assert not state["vllm-code"].busy
    assert samples(gateway.render(state)) == {
        "gateway_requests_total{vllm-code}": 30,
        "gateway_prompt_tokens_total{vllm-code}": 30 * 2048,
        "gateway_generated_tokens_total{vllm-code}": 30 * 64,
        "gateway_queue_depth{vllm-code}": 0,
    }


def test_setting_a_known_service_again_keeps_what_it_counted() -> None:
    state = gateway.advance(gateway.with_traffic({}, traffic(requestsPerSecond=10)), {}, 1.0)

    state = gateway.with_traffic(state, traffic(requestsPerSecond=50, deployment="vllm-big"))

    s = state["vllm-code"]
    assert (s.requests, s.queue, s.traffic.requests_per_second, s.traffic.deployment) == (
        10,
        10,
        50,
        "vllm-big",
    )


def test_the_text_has_one_block_per_series_whole_counts_and_services_in_name_order() -> None:
    state = gateway.with_traffic({}, traffic(service="b", requestsPerSecond=1.5))
    state = gateway.with_traffic(state, traffic(service='a"x', requestsPerSecond=0))
    state = gateway.advance(state, {}, 1.0)

    text = gateway.render(state)

    assert text.splitlines()[:4] == [
        "# HELP gateway_requests_total Requests received by the gateway.",
        "# TYPE gateway_requests_total counter",
        'gateway_requests_total{service="a\\"x"} 0',
        'gateway_requests_total{service="b"} 1',
    ]
    assert "# TYPE gateway_queue_depth gauge" in text
    assert samples(text)['gateway_queue_depth{a"x}'] == 0
    assert gateway.render({}) == ""


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(
            b'{"service": "s", "namespace": "ml", "deployment": "d"}', "requestsPerSecond: Field required"
        ),
        pytest.param(
            b'{"service": "s", "namespace": "ml", "deployment": "d", "requestsPerSecond": -1}',
            "requestsPerSecond: Input should be greater than or equal to 0",
        ),
        pytest.param(
            b'{"service": "s", "namespace": "ml", "deployment": "d", "requestsPerSecond": 1, "rps": 2}',
            "rps: unknown field",
        ),
        pytest.param(b"{not json", "Invalid JSON"),
    ],
    ids=["missing-rate", "negative-rate", "unknown-field", "bad-json"],
)
def test_a_bad_traffic_request_names_what_is_wrong(body: bytes, error: str) -> None:
    with pytest.raises(BadTrafficRequest, match=error):
        parse_traffic_request(body)


def test_a_traffic_request_reads_the_readmes_body() -> None:
    body = (
        b'{"service": "vllm-code", "namespace": "ml", "deployment": "vllm-code", "requestsPerSecond": 40,'
        b' "promptTokens": 2048, "generatedTokens": 64}'
    )

    request = parse_traffic_request(body)

    assert (request.service, request.namespace, request.deployment) == ("vllm-code", "ml", "vllm-code")
    assert (request.requests_per_second, request.prompt_tokens, request.generated_tokens) == (40, 2048, 64)
