"""`tidescale local env`'s pure parts: which variables, under which names, and how a shell reads them; the
state file keeps each component's ports and options; a taken port names who holds it."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tidescale.local import environment
from tidescale.local.environment import Environment, RunningComponent, RunningProcess
from tidescale.local.process import ComponentError, ensure_port_free, port_holder

BIN = "/opt/tidescale/.venv/bin"


def an_environment(state_dir: Path, *, dead: str = "") -> Environment:
    """Every component recorded; all run as this test's own process, except `dead` (a pid that is gone)."""
    endpoints = {
        "kubernetes": ("/s/kubernetes/admin.kubeconfig", 6443),
        "kafka": ("127.0.0.1:9092", 9092),
        "exporter": ("http://127.0.0.1:9400", 9400),
        "prometheus": ("http://127.0.0.1:9090", 9090),
    }
    components = {
        name: RunningComponent(
            name,
            [RunningProcess(name, os.getpid() if name != dead else 2**22 + 1, f"/s/logs/{name}.log")],
            endpoint,
            port,
            {"http": port},
        )
        for name, (endpoint, port) in endpoints.items()
    }
    return Environment(state_dir, components)


def test_env_exports_every_running_component_under_the_names_the_commands_read(tmp_path: Path) -> None:
    assert environment.exports(an_environment(tmp_path), BIN, "/usr/bin:/bin") == {
        "KUBECONFIG": "/s/kubernetes/admin.kubeconfig",
        "TIDESCALE_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
        "TIDESCALE_EXPORTER_URL": "http://127.0.0.1:9400",
        "TIDESCALE_PROMETHEUS_URL": "http://127.0.0.1:9090",
        "TIDESCALE_STATE_DIR": str(tmp_path),
        "PATH": f"{BIN}:/usr/bin:/bin",
    }


def test_the_exported_names_are_the_ones_the_commands_read() -> None:
    root = Path(__file__).resolve().parents[2]
    sources = "\n".join(
        p.read_text() for d in ("tidescale/commands", "jobs", "streaming") for p in (root / d).rglob("*.py")
    )
    for name in (
        "KUBECONFIG",
        "TIDESCALE_KAFKA_BOOTSTRAP",
        "TIDESCALE_PROMETHEUS_URL",
        "TIDESCALE_STATE_DIR",
    ):
        assert f'"{name}"' in sources, name


def test_a_component_that_is_not_running_is_left_out_and_path_is_not_added_twice(tmp_path: Path) -> None:
    variables = environment.exports(an_environment(tmp_path, dead="prometheus"), BIN, f"/usr/bin:{BIN}")
    assert "TIDESCALE_PROMETHEUS_URL" not in variables
    assert "PATH" not in variables


def test_export_lines_quote_values_and_leave_path_to_the_shell(tmp_path: Path) -> None:
    variables = {"KUBECONFIG": "/a dir/kubeconfig", "PATH": f"{BIN}:/usr/bin:/bin"}
    assert environment.export_lines(variables, "/usr/bin:/bin") == [
        "export KUBECONFIG='/a dir/kubeconfig'",
        f'export PATH={BIN}:"$PATH"',
    ]


def test_bash_evaluating_the_lines_gets_the_values(tmp_path: Path) -> None:
    state_dir = tmp_path / "it's here"
    variables = environment.exports(an_environment(state_dir), BIN, "/usr/bin:/bin")
    lines = "\n".join(environment.export_lines(variables, "/usr/bin:/bin"))
    shown = subprocess.run(
        ["bash", "-c", 'eval "$1"; echo "$TIDESCALE_STATE_DIR|$PATH"', "-", lines],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    ).stdout.strip()
    assert shown == f"{state_dir}|{BIN}:/usr/bin:/bin"


def test_the_state_file_keeps_each_components_ports_and_options(tmp_path: Path) -> None:
    env = an_environment(tmp_path)
    env.components["kafka"].ports = {"broker": 9092, "controller": 9093}
    env.components["exporter"].options = {"gpu_spec": "/specs/gpus.yaml"}
    env.save()
    assert Environment.load(tmp_path) == env


def test_a_state_file_from_before_ports_were_kept_still_loads(tmp_path: Path) -> None:
    (tmp_path / environment.STATE_FILE).write_text(
        '{"components": {"kafka": {"name": "kafka", "processes": [], "endpoint": "127.0.0.1:1", "port": 1}}}'
    )
    assert Environment.load(tmp_path).components["kafka"].ports == {}


def test_a_taken_port_names_the_process_listening_on_it() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = int(sock.getsockname()[1])
        assert port_holder(port) == f"pid {os.getpid()} ({Path('/proc/self/comm').read_text().strip()})"
        with pytest.raises(
            ComponentError, match=rf"^prometheus: port 127\.0\.0\.1:{port} is already in use by pid "
        ):
            ensure_port_free("prometheus", port)
    assert port_holder(port) is None


def test_restarting_a_component_that_was_never_recorded_says_how_to_start_it(tmp_path: Path) -> None:
    with pytest.raises(
        ComponentError,
        match=r"^kafka: not recorded in .* \(recorded: none\): start it with `tidescale local up "
        r"--components kafka`",
    ):
        environment.restart("kafka", tmp_path)
