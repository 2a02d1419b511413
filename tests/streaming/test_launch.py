"""The launcher's process handling and kubeconfig reading, without a cluster: a client that runs past its
timeout is killed with everything it started; the kubeconfig's current context names the server and
the credential files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from kernel.clock import SYSTEM_CLOCK, Deadline
from kernel.errors import PermanentError
from streaming import launch


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state  # a zombie has exited; only its entry waits to be reaped


def test_a_client_past_its_timeout_is_killed_with_the_processes_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"echo started; sleep 60 & echo $! > {pidfile}; wait"

    status, output = launch.run_client(("bash", "-c", script), {}, tmp_path, timeout_s=2)

    assert status is None
    assert "started" in output
    child = int(pidfile.read_text())
    exiting = Deadline(5)  # SIGKILL is delivered at once, but the exit itself is not
    while alive(child) and not exiting.expired():
        SYSTEM_CLOCK.sleep(0.05)
    assert not alive(child)


def test_a_client_that_finishes_returns_its_status_and_output_with_the_environment_given(
    tmp_path: Path,
) -> None:
    status, output = launch.run_client(
        ("bash", "-c", 'echo "$TIDESCALE_TEST_VALUE" in "$PWD"; exit 3'),
        {"TIDESCALE_TEST_VALUE": "given"},
        tmp_path,
        timeout_s=30,
    )
    assert status == 3
    assert output.strip() == f"given in {os.path.realpath(tmp_path)}"


def a_kubeconfig(tmp_path: Path, user: dict[str, str]) -> Path:
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "current-context": "b",
                "contexts": [
                    {"name": "a", "context": {"cluster": "one", "user": "u"}},
                    {"name": "b", "context": {"cluster": "two", "user": "u"}},
                ],
                "clusters": [
                    {"name": "one", "cluster": {"server": "https://one:6443"}},
                    {
                        "name": "two",
                        "cluster": {"server": "https://two:6443", "certificate-authority": "/ca.crt"},
                    },
                ],
                "users": [{"name": "u", "user": user}],
            }
        )
    )
    return path


def test_the_current_context_names_the_server_and_relative_files_are_read_beside_the_kubeconfig(
    tmp_path: Path,
) -> None:
    access = launch.read_access(
        a_kubeconfig(tmp_path, {"client-certificate": "a.crt", "client-key": "a.key"})
    )
    assert access.server == "https://two:6443" and access.ca_file == "/ca.crt"
    assert access.cert_file == str(tmp_path / "a.crt") and access.key_file == str(tmp_path / "a.key")
    assert access.kubeconfig == str(tmp_path / "config")


def test_a_token_file_is_passed_on_and_inline_data_is_left_to_the_client(tmp_path: Path) -> None:
    access = launch.read_access(a_kubeconfig(tmp_path, {"tokenFile": "/var/run/token", "token": "x"}))
    assert access.token_file == "/var/run/token" and access.cert_file is None and access.key_file is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "No such file"), ("apiVersion: v1\nkind: Config\n", "no server for its current context")],
    ids=["missing", "no-context"],
)
def test_an_unusable_kubeconfig_is_a_permanent_error_naming_it(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "config"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PermanentError, match=reason) as raised:
        launch.read_access(path)
    assert str(path) in str(raised.value)
