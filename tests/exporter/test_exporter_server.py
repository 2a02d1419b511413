"""The HTTP server in-process on a free 127.0.0.1 port, over a simulator on a FakeClock."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import reading as f
from exporter.reading import DeviceLabels, Reading
from exporter.server import ExporterServer
from exporter.simulator import Simulator
from exporter.spec import parse_spec
from exporter.traffic import GatewaySimulator
from kernel.clock import FakeClock

SPEC = """\
driverVersion: "550.127.05"
nodes:
  - name: n1
    gpus:
      - {model: NVIDIA H100 80GB HBM3, memoryMiB: 81559, uuid: GPU-a,
         pod: {namespace: ml, name: llm-0, container: vllm}}
      - {model: NVIDIA H100 80GB HBM3, memoryMiB: 81559, uuid: GPU-b}
"""


class Served:
    def __init__(self, server: ExporterServer, clock: FakeClock) -> None:
        self.server = server
        self.clock = clock
        self.http = httpx.Client(base_url=server.url, timeout=5)

    def samples(self, name: str, label: str = "UUID") -> dict[str, float]:
        """Value per UUID (or another label) of one metric, from a fresh scrape."""
        response = self.http.get("/metrics")
        assert response.status_code == 200
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name:
                    out[sample.labels[label]] = sample.value
        return out

    def after(self, seconds: float) -> None:
        """The clock `seconds` later and one collection, as the collector thread makes it."""
        self.clock.advance(seconds)
        self.server.collect_now()


@pytest.fixture
def served() -> Iterator[Served]:
    clock = FakeClock()
    simulator = Simulator.from_spec(parse_spec(SPEC), clock)
    # A collection interval far beyond the test: only load changes and collect_now() refresh values.
    server = ExporterServer(
        simulator,
        load_target=simulator,
        traffic_target=GatewaySimulator(simulator, clock),
        host="127.0.0.1",
        port=0,
        interval_s=3600,
        clock=clock,
    )
    with server:
        s = Served(server, clock)
        try:
            yield s
        finally:
            s.http.close()


def test_the_server_binds_only_the_loopback_host_on_a_free_port(served: Served) -> None:
    assert served.server.url.startswith("http://127.0.0.1:")
    assert not served.server.url.endswith(":0")


def test_a_load_set_over_http_shows_in_the_next_scrape(served: Served) -> None:
    response = served.http.put("/load", json={"load": 0.8, "namespace": "ml", "pod": "llm-0"})

    assert response.status_code == 200
    assert response.json() == {"load": 0.8, "uuids": ["GPU-a"]}
    assert served.samples("DCGM_FI_DEV_GPU_UTIL") == {"GPU-a": 80, "GPU-b": 0}
    assert served.samples("DCGM_FI_PROF_SM_ACTIVE") == {"GPU-a": pytest.approx(0.784), "GPU-b": 0.0}
    assert served.http.get("/load").json() == {"loads": {"GPU-a": 0.8, "GPU-b": 0.0}}


def test_temperature_and_energy_follow_the_injected_clock(served: Served) -> None:
    served.http.put("/load", json={"load": 1.0, "uuid": "GPU-a"})

    served.clock.advance(600)
    served.server.collect_now()

    temps = served.samples("DCGM_FI_DEV_GPU_TEMP")
    energy = served.samples("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total")  # the parser's name for a counter
    assert temps == {"GPU-a": 72, "GPU-b": 30}
    assert energy == {"GPU-a": 700 * 600 * 1000, "GPU-b": 70 * 600 * 1000}


@pytest.mark.parametrize(
    ("call", "status", "error"),
    [
        pytest.param(
            ("PUT", "/load", b'{"load": 0.5, "node": "n9"}'),
            404,
            "no GPU matches node 'n9'",
            id="unknown-node",
        ),
        pytest.param(
            ("PUT", "/load", b'{"load": 0.5, "namespace": "ml", "deployment": "chat"}'),
            404,
            "no GPU matches deployment 'chat'",
            id="unknown-deployment",
        ),
        pytest.param(("PUT", "/load", b"{not json"), 400, "bad load request: Invalid JSON", id="bad-json"),
        pytest.param(
            ("PUT", "/load", b'{"load": 7}'), 400, "less than or equal to 1", id="load-out-of-range"
        ),
        pytest.param(("POST", "/load", b'{"load": 0.5}'), 405, "use GET or PUT /load", id="post-is-not-put"),
        pytest.param(("PUT", "/metrics", b""), 405, "use GET /metrics", id="metrics-is-read-only"),
        pytest.param(("GET", "/nope", None), 404, "no endpoint /nope", id="unknown-path"),
        pytest.param(
            ("PUT", "/traffic", b'{"service": "chat", "requestsPerSecond": 1}'),
            400,
            "bad traffic request: namespace: Field required; deployment: Field required",
            id="traffic-without-deployment",
        ),
        pytest.param(
            ("DELETE", "/traffic", None), 405, "use GET or PUT /traffic", id="traffic-is-not-deleted"
        ),
    ],
)
def test_bad_requests_get_a_json_error(
    served: Served, call: tuple[str, str, bytes | None], status: int, error: str
) -> None:
    method, path, body = call
    response = served.http.request(method, path, content=body)

    assert response.status_code == status
    assert error in response.json()["error"]


def test_health_answers_ok(served: Served) -> None:
    response = served.http.get("/healthz")

    assert (response.status_code, response.text) == (200, "ok\n")


def test_metrics_are_served_as_prometheus_text_with_the_old_hostname_label_on_request() -> None:
    clock = FakeClock()
    simulator = Simulator.from_spec(parse_spec(SPEC), clock)
    with (
        ExporterServer(simulator, port=0, interval_s=3600, hostname_label="Hostname", clock=clock) as server,
        httpx.Client(base_url=server.url, timeout=5) as http,
    ):
        response = http.get("/metrics")

    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'Hostname="n1"' in response.text and 'hostname="n1"' not in response.text


CHAT = {"service": "chat", "namespace": "ml", "deployment": "llm", "replicaRequestsPerSecond": 10}


def test_traffic_serves_the_gateways_series_and_drives_its_deployments_gpus(served: Served) -> None:
    response = served.http.put("/traffic", json=CHAT | {"requestsPerSecond": 8})

    assert response.status_code == 200
    assert response.json() | {"requests": None} == CHAT | {
        "requestsPerSecond": 8,
        "promptTokens": 2048,
        "generatedTokens": 64,
        "prefillTokensPerSecond": 8000,
        "decodeTokensPerSecond": 1500,
        "maxQueue": 10000,
        "replicaCapacity": 10,
        "replicas": 1,  # the one pod of `llm` that holds a GPU
        "queue": 0,
        "load": 0.8,
        "requests": None,
    }
    assert served.samples("DCGM_FI_DEV_GPU_UTIL") == {"GPU-a": 80, "GPU-b": 0}
    served.after(10)
    assert served.samples("gateway_requests_total", "service") == {"chat": 80}
    assert served.samples("gateway_prompt_tokens_total", "service") == {"chat": 80 * 2048}
    assert served.samples("gateway_queue_depth", "service") == {"chat": 0}

    served.http.put("/traffic", json=CHAT | {"requestsPerSecond": 14})  # 4/s more than one replica serves
    served.after(5)

    assert served.samples("gateway_queue_depth", "service") == {"chat": 20}
    assert served.samples("DCGM_FI_DEV_GPU_UTIL") == {"GPU-a": 100, "GPU-b": 0}
    assert [s["queue"] for s in served.http.get("/traffic").json()["services"]] == [20]


def test_busy_traffic_overrides_a_load_for_its_deployment_and_an_idle_one_hands_it_back(
    served: Served,
) -> None:
    served.http.put("/traffic", json=CHAT | {"requestsPerSecond": 5})
    served.http.put("/load", json={"load": 0.1, "namespace": "ml", "deployment": "llm"})
    assert served.samples("DCGM_FI_DEV_GPU_UTIL")["GPU-a"] == 50  # the load's own collection ran the gateway

    served.http.put("/traffic", json=CHAT | {"requestsPerSecond": 0})
    assert served.samples("DCGM_FI_DEV_GPU_UTIL")["GPU-a"] == 0  # idle: set to 0 once
    served.http.put("/load", json={"load": 0.3, "namespace": "ml", "deployment": "llm"})
    served.after(5)

    assert served.samples("DCGM_FI_DEV_GPU_UTIL")["GPU-a"] == 30
    assert served.samples("gateway_requests_total", "service") == {"chat": 0}


class _ReadOnlySource:
    """A source without a load signal, as NVML is."""

    def collect(self) -> Sequence[Reading]:
        labels = DeviceLabels(0, "GPU-real", "00000000:18:00.0", "NVIDIA H200", "n1", "560.35.03")
        return [Reading(labels, {f.GPU_UTIL: 42})]


def test_an_exporter_of_real_gpus_has_no_load_signal() -> None:
    with (
        ExporterServer(_ReadOnlySource(), port=0, interval_s=3600, clock=FakeClock()) as server,
        httpx.Client(base_url=server.url, timeout=5) as http,
    ):
        put = http.put("/load", json={"load": 0.5})
        traffic = http.put("/traffic", json=CHAT | {"requestsPerSecond": 1})
        metrics = http.get("/metrics")

    assert put.status_code == 404
    assert "no load signal" in put.json()["error"]
    assert traffic.status_code == 404
    assert "no simulated gateway" in traffic.json()["error"]
    assert 'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-real"' in metrics.text
