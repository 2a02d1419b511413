"""The real exporter as a subprocess, started the way the harness starts it: port 0 and a ready file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kernel.clock import Deadline
from tidescale.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "exporter" / "simulate.yaml"
START_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 10.0
EXPORTER = [sys.executable, "-m", "tidescale", "exporter"]


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    url: str


def start_exporter(tmp: Path, *extra: str) -> Running:
    ready = tmp / "ready.json"
    log = tmp / "exporter.log"
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would block the exporter
        process = subprocess.Popen(
            [
                *EXPORTER,
                "--simulate",
                str(EXAMPLE),
                "--listen",
                "127.0.0.1:0",
                "--ready-file",
                str(ready),
                *extra,
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = Deadline(START_TIMEOUT_S)
    while not ready.exists():
        if process.poll() is not None or deadline.expired():
            stop(process)
            pytest.fail(f"exporter did not become ready (exit {process.returncode}): {log.read_text()}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(0.05)
    info = json.loads(ready.read_text())
    assert info["pid"] == process.pid
    return Running(process, info["url"])


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL if it lingers; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(EXIT_TIMEOUT_S)
    return process.returncode


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_exporter(tmp_path_factory.mktemp("exporter"))
    try:
        yield running
    finally:
        stop(running.process)


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200
    return {
        family.name: [(s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(response.text)
    }


def test_a_deployments_load_set_over_http_is_scraped_with_dcgm_names_labels_and_values(
    exporter: Running,
) -> None:
    put = httpx.put(
        f"{exporter.url}/load", json={"load": 0.8, "namespace": "ml", "deployment": "llm"}, timeout=5
    )
    assert put.status_code == 200
    assert len(put.json()["uuids"]) == 5

    families = scrape(exporter.url)

    assert {
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "DCGM_FI_PROF_SM_ACTIVE",
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        "DCGM_FI_PROF_DRAM_ACTIVE",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_SM_CLOCK",
        "DCGM_FI_DEV_MEM_CLOCK",
    } <= set(families)
    util = families["DCGM_FI_DEV_GPU_UTIL"]
    assert len(util) == 8
    for labels, value in util:
        assert {
            "gpu",
            "UUID",
            "pci_bus_id",
            "device",
            "modelName",
            "hostname",
            "DCGM_FI_DRIVER_VERSION",
        } <= set(labels)
        assert labels["device"] == f"nvidia{labels['gpu']}"
        assert labels["DCGM_FI_DRIVER_VERSION"] == "550.127.05"
        pod = labels.get("pod", "")
        if pod.startswith("llm-"):
            assert abs(value - 80) <= 2  # the example spec adds ±2 points of seeded noise
            assert (labels["namespace"], labels["container"]) == ("ml", "vllm")
        else:
            assert value == 0
    assert sum("pod" not in labels for labels, _ in util) == 1
    sm_active = {labels["UUID"]: v for labels, v in families["DCGM_FI_PROF_SM_ACTIVE"]}
    assert sorted(round(v, 2) for v in sm_active.values())[-5:] == pytest.approx([0.78] * 5, abs=0.021)


def test_gpus_on_one_node_take_a_load_and_get_load_reports_it(exporter: Running) -> None:
    put = httpx.put(f"{exporter.url}/load", json={"load": 0.25, "node": "gpu-node-2"}, timeout=5)
    loads = httpx.get(f"{exporter.url}/load", timeout=5).json()["loads"]

    assert put.status_code == 200
    assert [loads[u] for u in put.json()["uuids"]] == [0.25] * 4
    power = {labels["UUID"]: v for labels, v in scrape(exporter.url)["DCGM_FI_DEV_POWER_USAGE"]}
    assert [power[u] for u in put.json()["uuids"]] == [pytest.approx(70 + 0.25 * 630)] * 4


def test_an_unknown_selector_is_answered_404_naming_what_matched_nothing(exporter: Running) -> None:
    response = httpx.put(
        f"{exporter.url}/load", json={"load": 0.5, "namespace": "ml", "pod": "ghost-0"}, timeout=5
    )

    assert response.status_code == 404
    assert "no GPU matches pod 'ghost-0'" in response.json()["error"]


def test_traffic_set_over_http_serves_the_gateways_series_and_loads_its_deployments_gpus(
    exporter: Running,
) -> None:
    body = {"service": "chat", "namespace": "ml", "deployment": "llm", "requestsPerSecond": 10}
    put = httpx.put(f"{exporter.url}/traffic", json=body | {"replicaRequestsPerSecond": 4}, timeout=5)

    assert put.status_code == 200
    assert (put.json()["replicas"], put.json()["load"]) == (5, 0.5)  # 10 req/s on 5 pods of 4 req/s
    families = scrape(exporter.url)
    assert [labels for labels, _ in families["gateway_queue_depth"]] == [{"service": "chat"}]
    assert [labels for labels, _ in families["gateway_requests"]] == [{"service": "chat"}]  # a counter
    util = [v for labels, v in families["DCGM_FI_DEV_GPU_UTIL"] if labels.get("pod", "").startswith("llm-")]
    assert util == [pytest.approx(50, abs=2)] * 5  # ±2 points of seeded noise
    listed = httpx.get(f"{exporter.url}/traffic", timeout=5).json()["services"]
    assert [(s["service"], s["requestsPerSecond"]) for s in listed] == [("chat", 10)]


def test_sigterm_shuts_the_exporter_down_with_exit_code_0(tmp_path: Path) -> None:
    running = start_exporter(tmp_path, "--old-hostname-label", "--interval", "0.2")
    try:
        text = httpx.get(f"{running.url}/metrics", timeout=5).text
    finally:
        code = stop(running.process)

    assert 'Hostname="gpu-node-1"' in text
    assert code == 0


@pytest.mark.skipif(Path("/proc/driver/nvidia").exists(), reason="an NVIDIA driver is present")
def test_nvml_mode_without_nvml_exits_2_with_one_clear_line() -> None:
    result = subprocess.run(
        [*EXPORTER, "--nvml", "--listen", "127.0.0.1:0"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )

    assert result.returncode == 2
    assert result.stderr.startswith("tidescale exporter: --nvml: NVML not available: ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--listen", "127.0.0.1:http"],
            "--listen 127.0.0.1:http: expected HOST:PORT",
            id="port-not-a-number",
        ),
        pytest.param(["--listen", "127.0.0.1:70000"], "port must be within 0..65535", id="port-out-of-range"),
        pytest.param(["--interval", "0"], "--interval must be above 0 seconds", id="interval-zero"),
    ],
)
def test_unusable_flags_exit_2_naming_the_flag(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["exporter", "--simulate", str(EXAMPLE), *args])

    assert code == 2
    assert message in capsys.readouterr().err


def test_an_invalid_spec_exits_2_naming_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "gpus.yaml"
    spec.write_text(
        'driverVersion: "1"\nnodes:\n  - name: n1\n    gpus:\n      - {model: X, memoryMiB: -5}\n'
    )

    code = main(["exporter", "--simulate", str(spec)])

    assert code == 2
    assert capsys.readouterr().err == (
        f"tidescale exporter: {spec}:5: nodes[0].gpus[0].memoryMiB: Input should be greater than 0\n"
    )


def test_a_taken_port_exits_2_naming_the_address(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["exporter", "--simulate", str(EXAMPLE), "--listen", f"127.0.0.1:{port}"])

    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
