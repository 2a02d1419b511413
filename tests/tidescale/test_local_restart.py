"""A component started again on the same state directory keeps its port: by `tidescale local restart`, or by
`local up` after it died; a kept port someone took is an error naming it; `local env` exports what runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.waiting import wait_for
from tidescale.local import environment, prometheus

pytestmark = pytest.mark.integration


def tidescale(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidescale", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[str]:
    state_dir = str(tmp_path / "state")
    up = tidescale("local", "up", "--components", "prometheus,exporter", "--state-dir", state_dir, "--json")
    assert up.returncode == 0, up.stderr
    try:
        yield state_dir
    finally:
        down = tidescale("local", "down", "--state-dir", state_dir)
        assert down.returncode == 0, down.stderr


def kill(state_dir: str, name: str) -> int:
    """SIGKILL a component, as a crash would; returns its port."""
    component = environment.Environment.load(Path(state_dir)).components[name]
    os.kill(component.processes[0].pid, signal.SIGKILL)
    wait_for(lambda: not component.alive(), 10, f"{name} gone")
    return component.port


def serves_and_scrapes_the_exporter(url: str) -> None:
    assert httpx.get(f"{url}/-/ready", timeout=5).status_code == 200
    wait_for(
        lambda: [r for r in prometheus.query(url, 'up{job="dcgm-exporter"}') if r["value"][1] == "1"],  # type: ignore[index]
        30,
        "the exporter scraped",
    )


def test_a_killed_prometheus_comes_back_on_its_port_by_restart_and_by_up(state: str) -> None:
    port = kill(state, "prometheus")
    assert "stopped" in tidescale("local", "status", "--state-dir", state).stdout

    restarted = tidescale("local", "restart", "prometheus", "--state-dir", state)
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.strip() == f"prometheus restarted: http://127.0.0.1:{port}"
    serves_and_scrapes_the_exporter(f"http://127.0.0.1:{port}")

    assert kill(state, "prometheus") == port
    up = tidescale("local", "up", "--components", "prometheus", "--state-dir", state, "--json")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout.splitlines()[-1])["prometheus_url"] == f"http://127.0.0.1:{port}"
    serves_and_scrapes_the_exporter(f"http://127.0.0.1:{port}")


def test_a_restarted_exporter_keeps_its_port_so_prometheus_still_scrapes_it(state: str) -> None:
    before = environment.Environment.load(Path(state))
    restarted = tidescale("local", "restart", "exporter", "--state-dir", state)
    assert restarted.returncode == 0, restarted.stderr
    after = environment.Environment.load(Path(state))
    assert after.exporter_url == before.exporter_url
    assert after.components["exporter"].processes[0].pid != before.components["exporter"].processes[0].pid
    serves_and_scrapes_the_exporter(after.prometheus_url)


def test_a_kept_port_someone_took_is_an_error_naming_the_port_and_the_process(state: str) -> None:
    port = kill(state, "prometheus")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        # as a server would: connections the killed Prometheus left in TIME_WAIT must not stop the squatter
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        up = tidescale("local", "up", "--components", "prometheus", "--state-dir", state)
    assert up.returncode == 1
    message = up.stderr.strip()
    assert message.startswith(
        f"tidescale local up: prometheus: port 127.0.0.1:{port} is already in use by pid {os.getpid()} "
    )
    assert f"`tidescale local down --state-dir {state}` to forget the ports" in message
    # still recorded (stopped) with its port: the next try, the port free again, gets it back
    assert environment.Environment.load(Path(state)).components["prometheus"].ports == {"http": port}
    restarted = tidescale("local", "restart", "prometheus", "--state-dir", state)
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.strip().endswith(f":{port}")


def test_local_env_exports_what_runs_for_a_shell_to_eval(state: str) -> None:
    env = environment.Environment.load(Path(state))
    shown = subprocess.run(
        [
            "bash",
            "-c",
            f'eval "$({sys.executable} -m tidescale local env --state-dir {state})"; '
            'echo "$TIDESCALE_PROMETHEUS_URL $TIDESCALE_EXPORTER_URL ${TIDESCALE_KAFKA_BOOTSTRAP:-none} '
            '$TIDESCALE_STATE_DIR"; command -v tidescale',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")},
        check=True,
    ).stdout.splitlines()
    assert shown == [
        f"{env.prometheus_url} {env.exporter_url} none {state}",
        str(Path(sys.executable).parent / "tidescale"),
    ]

    as_json = json.loads(tidescale("local", "env", "--state-dir", state, "--json").stdout)
    assert as_json["TIDESCALE_PROMETHEUS_URL"] == env.prometheus_url
    assert "KUBECONFIG" not in as_json
