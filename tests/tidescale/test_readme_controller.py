"""README's "The controller on the local environment", run as a new user runs it: `tidescale local up` in a
state directory of its own, the endpoints exported, `tidescale controller run` in the background, the
examples applied (kubectl when installed, else the Kubernetes Python client with the same documents), the
README's load commands: the GPU load (the first load-driven scale-up must come within 60 s of `local up`
returning, and the Deployment must come back down when the load is lowered), the Kafka lag (records produced
scale the embedder to one replica per `lagPerReplica`, consuming them brings it back), and the gateway's
traffic in front of `llm-inference` (it wakes from zero, scales up and comes back down when it stops).

This module starts its own environment (it tests `local up` itself), once for all its tests. Each test sets up
what it needs through module fixtures that run the README's commands once (`embedder`, `llm_traffic`), so
any one runs alone; in file order the llm-inference scale-down (its 300 s window) is awaited last, after the
Kafka test has run in the meantime.
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

from kernel.clock import SYSTEM_CLOCK, Deadline
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

    def put_traffic(self, requests_per_second: float) -> dict[str, Any]:
        # the README: curl -X PUT "$TIDESCALE_EXPORTER_URL/traffic" -d '{"service": "vllm-code", …}'
        body: dict[str, Any] = {
            "service": "vllm-code",
            "namespace": "ml",
            "deployment": "vllm-code",
            "requestsPerSecond": requests_per_second,
        }
        if requests_per_second:
            body |= {"promptTokens": 2048, "generatedTokens": 64}
        response = httpx.put(f"{self.exporter_url}/traffic", content=json.dumps(body), timeout=5)
        assert response.status_code == 200, response.text
        got: dict[str, Any] = response.json()
        return got

    def pool_nodes(self, pool: str) -> int:
        nodes = client.CoreV1Api(self.api).list_node(label_selector=f"tidescale.io/node-pool={pool}")
        return len(nodes.items)

    def running(self) -> bool:
        assert self.controller.poll() is None, "the controller exited"
        return True


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


@pytest.fixture(scope="module")
def embedder(session: Session) -> Session:
    """The README's steps 4–6: the Kafka topic and its consumer group, the embedder and its policy."""
    # 4. tidescale local topic docs.chunks --partitions 24 --group embedder
    out = run("local", "topic", "docs.chunks", "--partitions", "24", "--group", "embedder", env=session.env)
    assert "group embedder: committed at the start of 24 partitions; lag 0" in out, out
    # 5. kubectl apply -f examples/policies/local/embedding-worker.yaml -f …/gpu-node-pool.yaml
    apply(session, POLICIES / "local" / "embedding-worker.yaml", POLICIES / "gpu-node-pool.yaml")
    #    kubectl -n search rollout status deployment/embedder
    wait_for(lambda: session.available("search", "embedder") == 1, 60, "search/embedder available")
    # 6. kubectl apply -f examples/policies/embedding-worker.yaml
    apply(session, POLICIES / "embedding-worker.yaml")
    wait_for(lambda: session.condition("search", "embedding-worker", "Ready"), 30, "a Ready condition")
    return session


@pytest.fixture(scope="module")
def gpu_load(embedder: Session) -> float:
    """The README's step 7 and 8: the GPU load up until the embedder scales up, then down again; returns how
    long after `local up` returned the scale-up came."""
    session = embedder
    # 7. curl -X PUT "$TIDESCALE_EXPORTER_URL/load" \
    #        -d '{"load": 1.0, "namespace": "search", "deployment": "embedder"}'
    session.put_load(1.0, "search", "embedder")
    wait_for(
        lambda: session.running() and session.replicas("search", "embedder") > 1,
        120,
        "a scale-up of search/embedder",
    )
    took = SYSTEM_CLOCK.monotonic() - session.up_returned
    print(f"first load-driven scale-up {took:.1f} s after `local up` returned")
    ready = session.condition("search", "embedding-worker", "Ready")
    fallback = session.condition("search", "embedding-worker", "Fallback")
    assert ready is not None and ready["status"] == "True", ready and ready["message"]
    assert fallback is None or fallback["status"] == "False", fallback["message"]
    # 8. the same command with "load": 0 (the next tests await its scale-down)
    session.put_load(0.0, "search", "embedder")
    return took


def test_the_readme_reaches_a_load_driven_scale_up_within_a_minute_of_local_up(gpu_load: float) -> None:
    assert gpu_load <= GOAL_S


@dataclass
class Traffic:
    peak: int  # replicas when the traffic stopped


# 40 req/s of 2,048 + 64 tokens at 1/(2048/8000 + 64/1500) = 3.35 req/s per replica: 11.95 replicas of work.
# After the traffic the policy holds the level under which 75 % of the last half hour's work arrived (12–14
# replicas: the short rate window reads 40 req/s give or take Prometheus' extrapolation); with it the SLO
# trigger sizes 20 (G/G/c for the code trace's stated bursts, arrivalVariability 80, p99 ≤ 2 s, until five
# minutes of counts are measured; M/M/c would say 13), more while a backlog drains. So the traffic stops once
# 15 serve it, above what is held after it.
WORK_40 = 12
ABOVE_HELD_40 = 15
# and it lasts at least this long: the rate windows' readings at 40 req/s then outweigh the ramp's
TRAFFIC_AT_LEAST_S = 90.0


@pytest.fixture(scope="module")
def llm_traffic(session: Session) -> Traffic:
    """The README's llm-inference commands up to the traffic stopping: the gateway's series at rest, the
    Deployment at zero and the policy with its NodePool; 40 req/s until the replicas serve it; then 0."""
    # curl -X PUT "$TIDESCALE_EXPORTER_URL/traffic" -d '{"service": "vllm-code", …, "requestsPerSecond": 0}'
    assert session.put_traffic(0)["requests"] == 0
    # kubectl apply -f examples/policies/local/llm-inference.yaml
    apply(session, POLICIES / "local" / "llm-inference.yaml")
    # kubectl apply -f examples/policies/llm-inference.yaml
    apply(session, POLICIES / "llm-inference.yaml")
    wait_for(lambda: session.condition("ml", "llm-inference", "Ready"), 30, "a Ready condition")
    assert session.replicas("ml", "vllm-code") == 0
    # curl … -d '{…, "requestsPerSecond": 40, "promptTokens": 2048, "generatedTokens": 64}'
    session.put_traffic(40)
    started = Deadline(TRAFFIC_AT_LEAST_S)
    wait_for(
        lambda: session.running() and session.available("ml", "vllm-code") >= ABOVE_HELD_40,
        90,
        f"{ABOVE_HELD_40} replicas of ml/vllm-code available",
    )
    # the held level is a percentile of the last half hour's readings: most of them at the full rate
    SYSTEM_CLOCK.sleep(started.remaining())
    peak = session.replicas("ml", "vllm-code")
    # curl … -d '{…, "requestsPerSecond": 0}'
    session.put_traffic(0)
    return Traffic(peak)


def test_the_readmes_traffic_wakes_llm_inference_from_zero_onto_new_h100_nodes(
    session: Session, llm_traffic: Traffic
) -> None:
    ready = session.condition("ml", "llm-inference", "Ready")
    assert ready is not None and ready["status"] == "True", ready and ready["message"]

    def no_fallback() -> bool:
        fallback = session.condition("ml", "llm-inference", "Fallback")
        return fallback is None or fallback["status"] == "False"

    # replicas ready a moment ago may have no GPU series yet (the exporter and Prometheus' scrape follow
    # them): on a loaded machine the GPU trigger can miss three reads in a row and the fallback hold the
    # replicas for a sweep or two; once they are scraped it clears
    try:
        wait_for(no_fallback, 60, "the Fallback condition False once the new replicas' GPUs are scraped")
    except AssertionError as e:
        fallback = session.condition("ml", "llm-inference", "Fallback") or {}
        raise AssertionError(f"{e}: {fallback.get('message')}") from None
    # the KWOK node-pool provider added the h100 nodes the replicas select (8 GPUs each)
    assert session.pool_nodes("h100") >= -(-ABOVE_HELD_40 // 8)


def test_the_readmes_embedder_comes_back_to_one_replica_once_the_gpu_load_is_lowered(
    embedder: Session, gpu_load: float
) -> None:
    # 8. back to one replica after the 30 s window (scale-to-zero waits 10 minutes of idleness); in file
    # order the llm-inference scale-up ran in the meantime
    wait_for(lambda: embedder.replicas("search", "embedder") == 1, 180, "search/embedder back at 1 replica")


def test_the_readmes_records_scale_the_embedder_by_their_kafka_lag_and_consuming_them_brings_it_back(
    embedder: Session,
) -> None:
    session = embedder
    wait_for(lambda: session.replicas("search", "embedder") == 1, 180, "search/embedder at 1 replica")
    # tidescale local produce docs.chunks --records 20000: lag 20,000 at 5,000 per replica
    out = run("local", "produce", "docs.chunks", "--records", "20000", env=session.env)
    assert "produced 20000 records of 512 bytes onto docs.chunks (24 partitions)" in out, out
    wait_for(lambda: session.running() and session.replicas("search", "embedder") == 4, 30, "4 replicas")
    wait_for(
        lambda: (
            "lag 20000 on docs.chunks"
            in (session.condition("search", "embedding-worker", "Ready") or {}).get("message", "")
        ),
        30,  # the status is written at the next sweep (15 s), later on a loaded machine
        "the lag named in the policy's Ready condition",
    )

    # tidescale local consume docs.chunks --group embedder --to-end: lag 0, back to 1 after the 30 s window
    out = run("local", "consume", "docs.chunks", "--group", "embedder", "--to-end", env=session.env)
    assert "group embedder: consumed 20000 records of docs.chunks; lag 0" in out, out
    wait_for(lambda: session.running() and session.replicas("search", "embedder") == 1, 60, "1 replica")


def test_the_readmes_llm_inference_comes_back_down_once_the_traffic_stops(
    session: Session, llm_traffic: Traffic
) -> None:
    highest = llm_traffic.peak

    def down() -> bool:
        nonlocal highest
        now = session.replicas("ml", "vllm-code")
        highest = max(highest, now)  # a reading from before the stop may still have added some
        return session.running() and now < highest

    # the 300 s scale-down window (panic's 60 s hold inside it), after the last recommendation for the peak;
    # the embedder's tests ran in the meantime
    wait_for(down, 360, "ml/vllm-code scaled down", interval=1.0)
    # not below the work of the last half hour (and not to zero before 900 idle seconds)
    held = session.replicas("ml", "vllm-code")
    ready = session.condition("ml", "llm-inference", "Ready") or {}
    assert held >= WORK_40, ready.get("message")
