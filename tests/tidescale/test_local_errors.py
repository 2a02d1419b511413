"""A component that cannot start fails fast with a clear error: component, reason, log file."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidescale.local import environment, kafka, prometheus
from tidescale.local.process import ComponentError, free_port, spawn, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def test_kafka_on_a_taken_port_names_the_component_and_the_port(tmp_path: Path, taken_port: int) -> None:
    with pytest.raises(ComponentError) as error:
        kafka.start(tmp_path, kafka.KafkaPorts(broker=taken_port, controller=free_port()))
    assert error.value.component == "kafka"
    assert f"port 127.0.0.1:{taken_port} is already in use" in str(error.value)


def test_prometheus_on_a_taken_port_names_the_component_and_the_port(tmp_path: Path, taken_port: int) -> None:
    with pytest.raises(
        ComponentError, match=rf"^prometheus: port 127\.0\.0\.1:{taken_port} is already in use"
    ):
        prometheus.start(tmp_path, [], port=taken_port)


def test_a_missing_prometheus_binary_says_where_it_looked_and_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "prometheus"
    monkeypatch.setenv("TIDESCALE_PROMETHEUS", str(missing))
    with pytest.raises(ComponentError) as error:
        prometheus.start(tmp_path, [])
    assert str(error.value) == f"prometheus: prometheus binary not found at {missing}: run `make setup`"


def test_a_missing_kafka_jar_set_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDESCALE_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ComponentError, match=r"^kafka: jars for kafka are missing in .*: run `make setup`"):
        kafka.start(tmp_path)


def test_a_process_that_dies_while_starting_reports_its_exit_code_and_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "broken.log"
    process = spawn("broken", [sys.executable, "-c", "print('bad config line 3'); raise SystemExit(3)"], log)
    with pytest.raises(ComponentError) as error:
        wait_until(process, lambda: False, timeout=30, what="ready")
    message = str(error.value)
    assert message.startswith(f"broken: exited with code 3 before ready (log: {log})")
    assert "bad config line 3" in message


def test_a_process_that_never_becomes_ready_times_out_and_is_stopped(tmp_path: Path) -> None:
    process = spawn("sleepy", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "sleepy.log")
    with pytest.raises(ComponentError, match=r"^sleepy: not ready after 1 s"):
        wait_until(process, lambda: False, timeout=1, what="ready")
    assert process.popen is not None
    assert process.popen.wait(timeout=10) is not None


def test_a_failed_start_stops_the_components_already_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDESCALE_PROMETHEUS", str(tmp_path / "missing"))
    with pytest.raises(ComponentError, match=r"^prometheus: "):
        environment.up(["exporter", "prometheus"], tmp_path)
    assert environment.Environment.load(tmp_path).components == {}
    assert environment.status(tmp_path) == []


def test_an_unknown_component_is_refused_with_the_known_ones() -> None:
    with pytest.raises(
        ComponentError,
        match=r"^zookeeper: no such component \(known: kubernetes, kafka, exporter, prometheus\)",
    ):
        environment.parse_components("kafka,zookeeper")


def tidescale(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidescale", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_local_up_prints_the_endpoints_as_json_last_and_down_stops_them(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    try:
        up = tidescale("local", "up", "--components", "exporter,prometheus", "--state-dir", state, "--json")
        assert up.returncode == 0, up.stderr
        endpoints = json.loads(up.stdout.strip().splitlines()[-1])
        assert endpoints["exporter_url"].startswith("http://127.0.0.1:")
        assert endpoints["prometheus_url"].startswith("http://127.0.0.1:")
        assert "kafka_bootstrap" not in endpoints

        status = tidescale("local", "status", "--state-dir", state, "--json")
        assert status.returncode == 0
        assert {row["name"]: row["reachable"] for row in json.loads(status.stdout)} == {
            "exporter": True,
            "prometheus": True,
        }
    finally:
        down = tidescale("local", "down", "--state-dir", state)
    assert down.returncode == 0
    assert "prometheus" in down.stdout
    assert "exporter" in down.stdout
    after = tidescale("local", "status", "--state-dir", state)
    assert "no components recorded" in after.stdout


def test_local_up_with_an_unknown_component_exits_non_zero_with_the_error_on_stderr(tmp_path: Path) -> None:
    result = tidescale("local", "up", "--components", "zookeeper", "--state-dir", str(tmp_path))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "tidescale local up: zookeeper: no such component (known: kubernetes, kafka, exporter, prometheus)"
    )
