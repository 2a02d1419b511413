"""What the end-to-end benchmarks on the local control plane share: a namespace ready for pods, a
Deployment to scale, a child process that serves once its ready file appears, and the wait until every
ScalingPolicy has been reconciled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from kernel.clock import SYSTEM_CLOCK, Deadline

GROUP, VERSION = "tidescale.io", "v1alpha1"


def ready_namespace(core: Any, name: str, timeout: float = 30) -> None:
    """Create namespace `name` and wait for its default ServiceAccount (pods need it)."""
    core.create_namespace({"metadata": {"name": name}})
    deadline = Deadline(timeout)
    while not any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items):
        if deadline.expired():
            raise RuntimeError(f"no default ServiceAccount in namespace {name} after {timeout:.0f} s")
        SYSTEM_CLOCK.sleep(0.2)


def deployment(name: str, image: str) -> dict[str, Any]:
    """A one-replica Deployment of `image` labelled `app: name` (KWOK never runs it)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "server", "image": image}]},
            },
        },
    }


def start(command: list[str], ready_file: Path, log: Path, what: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start `command` (output to `log`) and wait until it writes `ready_file`; returns it and its URL."""
    child = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = Deadline(60)
    while not ready_file.exists():
        if child.poll() is not None or deadline.expired():
            raise RuntimeError(f"{what} did not start (log: {log})")
        SYSTEM_CLOCK.sleep(0.2)
    return child, str(json.loads(ready_file.read_text())["url"])


def start_controller(state_dir: Path, kubeconfig: str, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    """`tidescale controller run` as deployed, in a child process logging to `state_dir`, once it serves."""
    ready_file = state_dir / "controller-ready.json"
    command = [sys.executable, "-m", "tidescale", "controller", "run", "--kubeconfig", kubeconfig, *flags]
    command += ["--ready-file", str(ready_file)]
    return start(command, ready_file, state_dir / "controller.log", "the controller")


def stop(child: subprocess.Popen[bytes] | None) -> None:
    if child is None:
        return
    child.terminate()
    try:
        child.wait(30)
    except subprocess.TimeoutExpired:
        child.kill()


def wait_policies_reconciled(custom: Any, namespace: str, count: int, timeout: float = 600) -> int:
    """Wait until `count` ScalingPolicies of `namespace` carry conditions (the controller has reconciled each
    once) or `timeout` passes; returns how many do."""
    deadline = Deadline(timeout)
    while True:
        listing = custom.list_namespaced_custom_object(
            "tidescale.io", "v1alpha1", namespace, "scalingpolicies"
        )
        ready = sum(1 for o in listing["items"] if (o.get("status") or {}).get("conditions"))
        if ready == count or deadline.expired():
            return ready
        SYSTEM_CLOCK.sleep(1.0)
