"""The harness under faults, as a user meets them: `local up` stopped by SIGTERM or SIGKILL during start-up
leaves nothing running that `local down` cannot find; a finished process whose parent has not reaped it
counts as gone at once; `local up` returns only once its nodes have lost the not-ready taint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.waiting import wait_for
from tidescale.local import environment, nodes
from tidescale.local.process import ComponentError, pid_alive, process_state, stop

pytestmark = pytest.mark.integration


def start_local_up(state_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tidescale",
            "local",
            "up",
            "--components=kubernetes",
            f"--state-dir={state_dir}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def recorded_while_starting(state_dir: Path, at_least: int) -> list[int]:
    """The pids of the control plane recorded before it is ready: at least `at_least` processes spawned."""

    def pids() -> list[int] | None:
        try:
            data = json.loads((state_dir / environment.STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        record = data["components"].get("kubernetes")
        if record is None or record.get("ready", True) or len(record["processes"]) < at_least:
            return None
        return [p["pid"] for p in record["processes"]]

    found: list[int] = wait_for(pids, 60, f"{at_least} control-plane processes recorded while starting")
    return found


def test_a_local_up_stopped_by_sigterm_during_start_up_stops_what_it_started(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    up = start_local_up(state_dir)
    try:
        pids = recorded_while_starting(state_dir, at_least=2)  # etcd and the API server, not yet ready
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        up.kill()
    still = [pid for pid in pids if pid_alive(pid)]
    assert still == [], f"left running after SIGTERM: {still}"
    assert environment.Environment.load(state_dir).components == {}


def test_a_local_up_killed_during_start_up_leaves_processes_that_local_down_stops(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    up = start_local_up(state_dir)
    try:
        pids = recorded_while_starting(state_dir, at_least=1)
        up.kill()  # SIGKILL: no handler runs; what it spawned lives on in its own sessions
        up.wait(timeout=30)
        assert any(pid_alive(pid) for pid in pids)
        env = environment.Environment.load(state_dir)
        with pytest.raises(ComponentError, match="still starting"):
            _ = env.kubeconfig  # not handed out as if it were ready
        down = subprocess.run(
            [sys.executable, "-m", "tidescale", "local", "down", "--state-dir", str(state_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert down.returncode == 0, down.stderr
        # Everything spawned before the kill, including processes recorded after `pids` was read.
        recorded = [p.pid for p in env.components["kubernetes"].processes]
        still = [pid for pid in {*pids, *recorded} if pid_alive(pid)]
        assert still == [], f"left running after local down: {still}"
    finally:
        for pid in pids:
            stop(pid, "leftover", timeout=5)


ZOMBIE_PARENT = textwrap.dedent(
    """
    import os, sys, time
    child = os.fork()
    if child == 0:
        os._exit(0)
    print(child, flush=True)
    time.sleep(60)  # never reaps its child: it stays a zombie while this parent lives
    """
)


def test_a_process_that_exited_but_is_not_reaped_by_its_parent_counts_as_gone() -> None:
    parent = subprocess.Popen([sys.executable, "-c", ZOMBIE_PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        zombie = int(parent.stdout.readline())
        wait_for(lambda: process_state(zombie) == "Z", 10, "the child to become a zombie")
        os.kill(zombie, 0)  # it still answers kill(0) ...
        assert not pid_alive(zombie)  # ... yet it is gone
        assert stop(zombie, "zombie") is False  # and `local down` does not wait for it to go
    finally:
        parent.kill()
        parent.wait()


LEADER_GONE_THREAD_LEFT = textwrap.dedent(
    """
    import ctypes, socket, threading, time
    server = socket.create_server(("127.0.0.1", 0))
    print(server.getsockname()[1], flush=True)
    threading.Thread(target=time.sleep, args=(60,)).start()
    ctypes.CDLL(None).pthread_exit(None)  # the leader ends; the process lives on in its other thread
    """
)


def test_a_process_whose_leader_thread_ended_while_others_run_still_counts_as_running() -> None:
    # what a killed Prometheus or JVM looks like for a moment: its leader a zombie, its sockets still open
    process = subprocess.Popen(
        [sys.executable, "-c", LEADER_GONE_THREAD_LEFT], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        wait_for(lambda: process_state(process.pid) == "Z", 10, "the leader thread to end")
        assert pid_alive(process.pid)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) == 0  # its listening socket is still open
    finally:
        process.kill()
        process.wait()
    assert not pid_alive(process.pid)


def test_local_up_returns_once_its_nodes_are_ready_and_untainted(
    cluster: environment.Environment,
) -> None:
    pool = nodes.gpu_pool(2, "taint-check")
    names = nodes.add(cluster.kubeconfig, pool)
    try:
        core = nodes._core(cluster.kubeconfig)
        for name in names:
            taints = [t.key for t in (core.read_node(name).spec.taints or [])]
            assert not set(taints) & nodes.LIFECYCLE_TAINTS, f"{name} still tainted: {taints}"
    finally:
        nodes.delete(cluster.kubeconfig, names)
