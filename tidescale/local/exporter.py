"""The simulated DCGM exporter as a harness component: GPUs from a static spec (`--simulate`), or the GPUs
of the local cluster's nodes, labelled with the pods that hold them (`--kubeconfig`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from tidescale.local.process import (
    ComponentError,
    Spawned,
    SpawnHook,
    ensure_port_free,
    free_port,
    spawn,
    wait_until,
)

COMPONENT = "exporter"
DEFAULT_SPEC = Path(__file__).with_name("gpus.yaml")


def start(
    state_dir: Path,
    spec: Path | None = None,
    port: int | None = None,
    timeout: float = 30,
    kubeconfig: Path | str | None = None,
    on_spawn: SpawnHook | None = None,
) -> tuple[Spawned, str]:
    """Start the exporter on 127.0.0.1: following the cluster of `kubeconfig` when given, else with the
    given (or the embedded) GPU spec; returns its URL."""
    log_file = state_dir / "logs" / "exporter.log"
    if kubeconfig is not None:
        if spec is not None:
            raise ComponentError(COMPONENT, "give a GPU spec or a kubeconfig, not both")
        source = ["--kubeconfig", str(kubeconfig)]
    else:
        spec = spec or DEFAULT_SPEC
        if not spec.is_file():
            raise ComponentError(COMPONENT, f"GPU spec {spec} does not exist")
        source = ["--simulate", str(spec)]
    port = port or free_port()
    ensure_port_free(COMPONENT, port)
    ready_file = state_dir / COMPONENT / "ready.json"
    ready_file.parent.mkdir(parents=True, exist_ok=True)
    ready_file.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "tidescale",
        "exporter",
        *source,
        "--listen",
        f"127.0.0.1:{port}",
        "--ready-file",
        str(ready_file),
    ]
    process = spawn(COMPONENT, argv, log_file, on_spawn=on_spawn)
    wait_until(process, ready_file.exists, timeout, "serving")
    url = str(json.loads(ready_file.read_text())["url"])
    return process, url


def set_load(exporter_url: str, load: float, **selector: str) -> dict[str, object]:
    """Set the simulated load (0–1) on all GPUs or on those matching node/uuid/namespace+pod/deployment."""
    response = httpx.put(f"{exporter_url}/load", json={"load": load, **selector}, timeout=5)
    if response.status_code != 200:
        raise ComponentError(
            COMPONENT, f"PUT /load {selector or 'all'} → {response.status_code}: {response.text}"
        )
    body: dict[str, object] = response.json()
    return body
