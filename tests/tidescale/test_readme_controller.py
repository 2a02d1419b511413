"""README's "The controller on the local environment", run as a new user runs it: `tidescale local up` in a
state directory of its own, the endpoints exported, `tidescale controller run` in the background, the
examples applied (kubectl when installed, else the Kubernetes Python client with the same documents), the
README's load command; the first load-driven scale-up must come within 60 s of `local up` returning, and the
Deployment must come back down when the load is lowered.

This module starts its own environment (it tests `local up` itself), once for all its tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client, config, utils

from kernel.clock import SYSTEM_CLOCK
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "examples" / "policies"
TIDESCALE = [sys.executable, "-m", "tidescale"]
# The README's goal: a load-driven scale-up within this many seconds of `local up` returning.
GOAL_S = 60.0
GROUP, VERSION = "tidescale.io", "v1alpha1"
PLURALS = {"ScalingPolicy": "scalingpolicies", "NodePool": "nodepools"}


@dataclass
class Session:
    state_dir: Path
    env: dict[str, str]
    exporter_url: str
    up_returned: float  # SYSTEM_CLOCK.monotonic() when `local up` returned
    api: client.ApiClient
    controller: subprocess.Popen[bytes]

    def replicas(self, namespace: str, name: str) -> int:
        return int(client.AppsV1Api(self.api).read_namespaced_deployment(name, namespace).spec.replicas)

    def available(self, namespace: str, name: str) -> int:
        status = client.AppsV1Api(self.api).read_namespaced_deployment(name, namespace).status
        return int(status.available_replicas or 0)

    def condition(self, namespace: str, name: str, kind: str) -> dict[str, Any] | None:
        obj = client.CustomObjectsApi(self.api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "scalingpolicies", name
        )
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c.get("type") == kind:
                return dict(c)
        return None

    def put_load(self, load: float, namespace: str, deployment: str) -> None:
        # the README: curl -X PUT "$exporter_url/load" -d '{"load": …, "namespace": …, "deployment": …}'
        body = {"load": load, "namespace": namespace, "deployment": deployment}
        response = httpx.put(f"{self.exporter_url}/load", content=json.dumps(body), timeout=5)
        assert response.status_code == 200, response.text


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [*TIDESCALE, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"tidescale {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


def exported(state_dir: Path) -> dict[str, str]:
    """The README's `eval "$(tidescale local env)"`: the same variables, from `local env --json`."""
    variables: dict[str, str] = json.loads(run("local", "env", "--state-dir", str(state_dir), "--json"))
    return variables


def apply(session: Session, *paths: Path) -> None:
    """`kubectl apply -f …` as the README shows it; without kubectl, the same documents through the client."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        args = [a for p in paths for a in ("-f", str(p))]
        done = subprocess.run(
            [kubectl, "apply", *args], env=session.env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return
    custom = client.CustomObjectsApi(session.api)
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            plural = PLURALS.get(doc["kind"])
            if plural is None:
                utils.create_from_dict(session.api, doc)
            elif doc["kind"] == "NodePool":
                custom.create_cluster_custom_object(GROUP, VERSION, plural, doc)
            else:
                ns = doc["metadata"]["namespace"]
                custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, doc)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    state_dir = tmp_path_factory.mktemp("readme") / "local"
    # 1. tidescale local up --components kubernetes,kafka,exporter,prometheus --gpu-nodes 2 --json
    out = run(
        "local",
        "up",
        "--components",
        "kubernetes,kafka,exporter,prometheus",
        "--gpu-nodes",
        "2",
        "--state-dir",
        str(state_dir),
        "--json",
        timeout=600,
    )
    up_returned = SYSTEM_CLOCK.monotonic()
    assert json.loads(out.strip().splitlines()[-1])["kubeconfig"]  # the endpoints, last, as one object
    controller: subprocess.Popen[bytes] | None = None
    log = (state_dir / "controller.log").open("wb")
    try:
        # 2. eval "$(tidescale local env)"
        env = os.environ | exported(state_dir)
        # 3. tidescale controller run --prometheus-scrape-seconds 1 &
        controller = subprocess.Popen(
            [*TIDESCALE, "controller", "run", "--prometheus-scrape-seconds", "1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        api = config.new_client_from_config(config_file=env["KUBECONFIG"])
        yield Session(state_dir, env, env["TIDESCALE_EXPORTER_URL"], up_returned, api, controller)
    finally:
        if controller is not None:
            controller.terminate()
            try:
                controller.wait(timeout=20)
            except subprocess.TimeoutExpired:
                controller.kill()
        log.close()
        subprocess.run([*TIDESCALE, "local", "down", "--state-dir", str(state_dir)], cwd=ROOT, check=False)


def test_the_readme_reaches_a_load_driven_scale_up_within_a_minute_of_local_up_and_back_down(
    session: Session,
) -> None:
    # 4. tidescale local topic docs.chunks --partitions 24
    run("local", "topic", "docs.chunks", "--partitions", "24", env=session.env)
    # 5. kubectl apply -f examples/policies/local/embedding-worker.yaml -f …/gpu-node-pool.yaml
    apply(session, POLICIES / "local" / "embedding-worker.yaml", POLICIES / "gpu-node-pool.yaml")
    #    kubectl -n search rollout status deployment/embedder
    wait_for(lambda: session.available("search", "embedder") == 1, 60, "search/embedder available")
    # 6. kubectl apply -f examples/policies/embedding-worker.yaml
    apply(session, POLICIES / "embedding-worker.yaml")
    wait_for(lambda: session.condition("search", "embedding-worker", "Ready"), 30, "a Ready condition")
    # 7. curl -X PUT "$TIDESCALE_EXPORTER_URL/load" \
    #        -d '{"load": 1.0, "namespace": "search", "deployment": "embedder"}'
    session.put_load(1.0, "search", "embedder")

    def scaled_up() -> bool:
        if session.replicas("search", "embedder") > 1:
            return True
        assert session.controller.poll() is None, "the controller exited"
        return False

    wait_for(scaled_up, 120, "a scale-up of search/embedder")
    took = SYSTEM_CLOCK.monotonic() - session.up_returned
    print(f"first load-driven scale-up {took:.1f} s after `local up` returned")
    ready = session.condition("search", "embedding-worker", "Ready")
    fallback = session.condition("search", "embedding-worker", "Fallback")
    assert ready is not None and ready["status"] == "True", ready and ready["message"]
    assert fallback is None or fallback["status"] == "False", fallback["message"]
    assert took <= GOAL_S

    # 8. the same command with "load": 0: back to one replica (scale-to-zero waits 10 minutes of idleness)
    session.put_load(0.0, "search", "embedder")
    wait_for(lambda: session.replicas("search", "embedder") == 1, 180, "search/embedder back at 1 replica")
