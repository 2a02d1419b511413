"""`tidescale demo`: the end-to-end path that exists today, on real components, with an embedded default.

1. the local environment: Kafka (KRaft), the simulated DCGM exporter, Prometheus scraping it;
2. synthetic LLM requests produced to Kafka;
3. the llm-preprocessor pipeline (examples/pipelines) on PyFlink, or Spark: normalised, language-tagged,
   token-counted requests routed to one topic per model, malformed ones to the dead-letter topic;
4. GPU load on the `llm` replicas following the request volume, seen through PromQL in Prometheus.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernel.clock import SYSTEM_CLOCK, Deadline
from kernel.errors import TidescaleError
from streaming import spec
from streaming.engine import ENGINES, RunOptions
from streaming.engines import register_builtins
from streaming.plan import plan
from tidescale.local import environment, exporter, prometheus
from tidescale.traffic import MODELS, llm_requests

PIPELINE = Path(__file__).resolve().parent.parent / "examples" / "pipelines" / "llm-preprocessor.yaml"
UTIL_QUERY = 'avg(DCGM_FI_DEV_GPU_UTIL{namespace="demo", pod=~"llm-.*"})'
POWER_QUERY = 'sum(DCGM_FI_DEV_POWER_USAGE{namespace="demo", pod=~"llm-.*"})'


def add_commands(sub: Any) -> None:
    demo = sub.add_parser("demo", help="run the end-to-end demo on the embedded default")
    demo.add_argument("--engine", choices=("flink", "spark"), default="flink")
    demo.add_argument("--requests", type=int, default=2000, help="synthetic requests to produce")
    demo.add_argument("--state-dir", type=Path, default=Path(".tidescale/demo"))
    demo.add_argument("--keep", action="store_true", help="leave the environment running at the end")
    demo.set_defaults(func=run)


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).absolute()
    try:
        return _run(args, state_dir)
    except TidescaleError as exc:
        print(f"tidescale demo: {exc}")
        return 1
    finally:
        if not args.keep:
            step(f"stopping the environment ({', '.join(environment.down(state_dir)) or 'nothing running'})")


def _run(args: argparse.Namespace, state_dir: Path) -> int:
    from confluent_kafka import Producer

    step(f"starting Kafka, the simulated DCGM exporter and Prometheus (state and logs in {state_dir})")
    env = environment.up(["kafka", "exporter", "prometheus"], state_dir)
    for key, value in env.endpoints().items():
        print(f"    {key:16} {value}")

    run_id = SYSTEM_CLOCK.now().strftime("%H%M%S")
    source = f"llm-requests-{run_id}"
    pipeline = plan(
        spec.retarget(
            spec.load(PIPELINE),
            source=source,
            group=f"demo-{run_id}",
            sink=f"llm-requests-clean-{run_id}",
            dead_letter=f"llm-requests-dlq-{run_id}",
        )
    )
    requests = llm_requests(args.requests, malformed_every=100)
    step(f"producing {len(requests)} synthetic LLM requests (1 % malformed) to Kafka topic {source}")
    producer = Producer({"bootstrap.servers": env.kafka_bootstrap, "linger.ms": 5})
    for payload in requests:
        producer.produce(source, payload)
    producer.flush(30)

    step(f"running the {pipeline.name} pipeline on {args.engine}: {source} → one topic per model + DLQ")
    started = SYSTEM_CLOCK.monotonic()
    register_builtins()
    checkpoints = state_dir / "checkpoints" / run_id
    ENGINES.get(args.engine).run(
        pipeline, RunOptions(env.kafka_bootstrap, bounded=True, checkpoint_dir=checkpoints, timeout_s=600)
    )
    print(f"    done in {SYSTEM_CLOCK.monotonic() - started:.1f} s (including engine start-up)")

    per_model = {m: _read(env.kafka_bootstrap, f"{pipeline.sink.topic}.{m}") for m in MODELS}
    dead = _read(env.kafka_bootstrap, pipeline.dead_letter.topic)
    for model, records in per_model.items():
        print(f"    {pipeline.sink.topic}.{model:14} {len(records):6} records")
    print(f"    {pipeline.dead_letter.topic:33} {len(dead):6} dead letters")
    first = next((r[0] for r in per_model.values() if r), None)
    print(f"    first record: {json.dumps(first, ensure_ascii=False) if first else '-'}")
    if dead:
        print(f"    first dead letter's reason: {dead[0].get('reason')}")
    arrived = sum(len(r) for r in per_model.values()) + len(dead)

    if "kubernetes" in env.components:
        # the exporter follows the cluster here: its GPUs belong to real pods, so run the llm Deployment
        _llm_deployment(env.kubeconfig)
    step("setting the simulated GPU load of the 2 llm replicas; Prometheus scrapes the exporter every second")
    for fraction in (0.1, 0.4, 0.7, 0.95, 0.3):
        exporter.set_load(env.exporter_url, fraction, namespace="demo", deployment="llm")
        util, power = _wait_for(env.prometheus_url, fraction * 100)
        print(f"    load set to {fraction:4.0%}  →  Prometheus: GPU util {util:5.1f} %, power {power:6.0f} W")
    if args.keep:
        step(f"left running; stop with: tidescale local down --state-dir {state_dir}")
    return 0 if arrived == len(requests) else 1


def _llm_deployment(kubeconfig: str, timeout: float = 60) -> None:
    """The 2-replica, 1-GPU-each `llm` Deployment in namespace `demo` on the KWOK GPU nodes, running."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    api = config.new_client_from_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    step("creating the llm Deployment (2 replicas, 1 GPU each) in namespace demo on the KWOK GPU nodes")
    container = {
        "name": "vllm",
        "image": "vllm/vllm-openai:v0.11.0",
        "resources": {"limits": {"nvidia.com/gpu": "1"}},
    }
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llm"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "llm"}},
            "template": {"metadata": {"labels": {"app": "llm"}}, "spec": {"containers": [container]}},
        },
    }
    deadline = Deadline(timeout)
    creates: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (core.create_namespace, ({"metadata": {"name": "demo"}},)),
        (apps.create_namespaced_deployment, ("demo", body)),
    ]
    for create, arguments in creates:
        while True:
            try:
                create(*arguments)
                break
            except ApiException as e:
                if e.status == 409:  # already there (a kept environment)
                    break
                if e.status != 403 or deadline.expired():  # 403: the namespace's ServiceAccount is not ready
                    raise TidescaleError(
                        f"demo: cannot create the llm Deployment: HTTP {e.status} {e.reason}"
                    ) from e
                SYSTEM_CLOCK.sleep(0.5)
    while True:
        pods = core.list_namespaced_pod("demo", label_selector="app=llm").items
        if sum(1 for p in pods if p.status.phase == "Running") >= 2:
            return
        if deadline.expired():
            raise TidescaleError(
                f"demo: the llm pods are not running after {timeout:.0f} s (are there GPU nodes?)"
            )
        SYSTEM_CLOCK.sleep(0.5)


def _read(bootstrap: str, topic: str, idle_s: float = 5) -> list[dict[str, Any]]:
    """Every record of `topic` from the start, until nothing new arrives for `idle_s`."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-read-{topic}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    values: list[dict[str, Any]] = []
    deadline = Deadline(idle_s)
    try:
        while not deadline.expired():
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(json.loads(message.value() or b"null"))
                deadline = Deadline(idle_s)
    finally:
        consumer.close()
    return values


def _wait_for(url: str, util: float, timeout: float = 15) -> tuple[float, float]:
    deadline = Deadline(timeout)
    seen, power = float("nan"), float("nan")
    while not deadline.expired():
        result = prometheus.query(url, UTIL_QUERY)
        if result:
            seen = float(result[0]["value"][1])  # type: ignore[index]
            if abs(seen - util) <= 2:
                break
        SYSTEM_CLOCK.sleep(0.5)
    power_result = prometheus.query(url, POWER_QUERY)
    if power_result:
        power = float(power_result[0]["value"][1])  # type: ignore[index]
    return seen, power
