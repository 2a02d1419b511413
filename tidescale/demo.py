"""`tidescale demo`: the whole system on real components, with an embedded default.

1. the local environment: the Kubernetes control plane with a KWOK GPU node in pool `h100` (a NodePool
   lets the controller add more), Kafka (KRaft), the simulated DCGM exporter following the cluster's pods,
   Prometheus scraping it;
2. the tidescale scheduler and the autoscaler controller, both in this process, as `scheduler run` and
   `controller run` would run them;
3. through the launcher, an `InferenceService` on shared GPUs (1:2 vGPU slices) with its ScalingPolicy
   (GPU utilization and the Kafka lag of the requests it serves): its pods bound by the tidescale scheduler;
4. the llm-preprocessor pipeline (examples/pipelines) on PyFlink or Spark, feeding the service's topic;
5. GPU load up: replicas scale out, the node pool grows when pods no longer fit, scaling events shown as
   they happen, `top node`; then the servers catch up on the topic and the load drops: replicas scale in.
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import Any

from autoscaler.core.nodepool import POOL_LABEL
from kernel.clock import SYSTEM_CLOCK, Deadline
from kernel.errors import TidescaleError
from streaming import pipeline_file, spec
from streaming.engine import EngineRegistry, RunOptions
from streaming.engines import register_builtins
from streaming.plan import plan
from tidescale.local import crds, environment, exporter, kafka, nodes, prometheus
from tidescale.traffic import MODELS, llm_requests

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "examples" / "pipelines" / "llm-preprocessor.yaml"
VOLCANO_CRDS = [
    ROOT.parent / "shared" / "crds" / f"scheduling.volcano.sh_{n}.yaml" for n in ("podgroups", "queues")
]
NAMESPACE = "demo"
SERVICE = "llm"
POOL = "h100"
UTIL_QUERY = f'avg(DCGM_FI_DEV_GPU_UTIL{{namespace="{NAMESPACE}", pod=~"{SERVICE}-.*"}})'
MAX_REPLICAS = 8


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
    stack = _Stack()
    try:
        return _run(args, state_dir, stack)
    except TidescaleError as exc:
        print(f"tidescale demo: {exc}")
        return 1
    finally:
        stack.stop()
        if not args.keep:
            step(f"stopping the environment ({', '.join(environment.down(state_dir)) or 'nothing running'})")


class _Stack:
    """What the demo starts in this process: the scheduler, the controller, the event printer."""

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.done = threading.Event()

    def stop(self) -> None:
        self.done.set()
        for part in reversed(self.parts):
            part.stop()


def pool_spec() -> nodes.NodePoolSpec:
    return nodes.NodePoolSpec(
        name=POOL,
        count=1,
        capacity={"cpu": "48", "memory": "512Gi", "nvidia.com/gpu": "2"},
        gpu=nodes.Gpu(model="NVIDIA H100 80GB HBM3", memory_mib=81559),
    )


def service_document(lag_topic: str) -> str:
    """The InferenceService: 1:2 vGPU slices of H100s, scaled on GPU utilization and on its topic's lag."""
    return json.dumps(
        {
            "apiVersion": "tidescale.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {
                "image": "vllm/vllm-openai:v0.11.0",
                "replicas": 2,
                "port": 8000,
                "resources": {"cpu": "4", "memory": "16Gi", "vgpu": {"ratio": 2}},
                "nodeSelector": {POOL_LABEL: POOL},
                "scalingPolicy": {
                    "minReplicas": 2,
                    "maxReplicas": MAX_REPLICAS,
                    "nodePool": POOL,
                    "triggers": [
                        {"type": "GPUUtilization", "name": "gpu", "target": 70, "pollSeconds": 1},
                        {
                            "type": "KafkaLag",
                            "name": "requests",
                            "topic": lag_topic,
                            "group": "llm-servers",
                            "lagPerReplica": 200,
                        },
                    ],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}},
                },
            },
        }
    )


def node_pool_document() -> dict[str, Any]:
    return {
        "apiVersion": "tidescale.io/v1alpha1",
        "kind": "NodePool",
        "metadata": {"name": POOL},
        "spec": {
            "node": {
                "gpuModel": "NVIDIA H100 80GB HBM3",
                "gpus": 2,
                "gpuMemoryMiB": 81559,
                "cpu": "48",
                "memory": "512Gi",
            },
            "minNodes": 1,
            "maxNodes": 4,
            "hourlyPrice": 24.58,
            "provisioningSeconds": 0,
            "provider": {"type": "KWOK"},
            "labels": {POOL_LABEL: POOL},
        },
    }


def _run(args: argparse.Namespace, state_dir: Path, stack: _Stack) -> int:
    from confluent_kafka import Producer
    from kubernetes import client, config

    from autoscaler.api.policy import ScalingPolicy
    from autoscaler.controller.wiring import Options as ControllerOptions
    from autoscaler.controller.wiring import Running as Controller
    from jobs.launcher.client import submit
    from jobs.launcher.kinds import parse_jobs
    from jobs.scheduler.wiring import Options as SchedulerOptions
    from jobs.scheduler.wiring import Running as Scheduler

    step(
        f"starting Kubernetes (KWOK GPU node pool {POOL}), Kafka, the DCGM exporter, Prometheus ({state_dir})"
    )
    env = environment.up(
        ["kubernetes", "kafka", "exporter", "prometheus"], state_dir, node_pools=[pool_spec()]
    )
    for key, value in env.endpoints().items():
        print(f"    {key:16} {value}")
    if all(p.is_file() for p in VOLCANO_CRDS):
        crds.install(env.kubeconfig, VOLCANO_CRDS)
    api = config.new_client_from_config(config_file=env.kubeconfig)
    custom = client.CustomObjectsApi(api)
    try:
        custom.create_cluster_custom_object("tidescale.io", "v1alpha1", "nodepools", node_pool_document())
    except client.ApiException as e:
        if e.status != 409:
            raise TidescaleError(f"demo: NodePool {POOL}: HTTP {e.status} {e.reason}") from e

    step("starting the tidescale scheduler and the autoscaler controller")
    scheduler = Scheduler(SchedulerOptions(kubeconfig=env.kubeconfig)).start()
    stack.parts.append(scheduler)
    controller = Controller(
        ControllerOptions(
            kubeconfig=env.kubeconfig,
            prometheus_url=env.prometheus_url,
            kafka_bootstrap=env.kafka_bootstrap,
            sync_seconds=5,
            prometheus_scrape_seconds=1,
        )
    ).start()
    stack.parts.append(controller)
    print(f"    scheduler {scheduler.http.url}/metrics   controller {controller.http.url}/metrics")
    threading.Thread(target=_print_events, args=(api, stack.done), daemon=True).start()

    run_id = SYSTEM_CLOCK.now().strftime("%H%M%S")
    source = f"llm-requests-{run_id}"
    pipeline = plan(
        spec.retarget(
            pipeline_file.load(PIPELINE),
            source=source,
            group=f"demo-{run_id}",
            sink=f"llm-requests-clean-{run_id}",
            dead_letter=f"llm-requests-dlq-{run_id}",
        )
    )
    served = f"{pipeline.sink.topic}.{MODELS[0]}"

    step(f"submitting InferenceService {NAMESPACE}/{SERVICE} (1:2 vGPU slices) through the launcher")
    _namespace(client.CoreV1Api(api))
    jobs = parse_jobs(service_document(served), "demo", scaling_policy=ScalingPolicy)
    submit(api, jobs, namespace=NAMESPACE, replace=True, wait=True, timeout=120)
    _show_pods(api)
    _top(api, env.prometheus_url)

    requests = llm_requests(args.requests, malformed_every=100)
    step(f"producing {len(requests)} synthetic LLM requests (1 % malformed) to Kafka topic {source}")
    producer = Producer({"bootstrap.servers": env.kafka_bootstrap, "linger.ms": 5})
    for payload in requests:
        producer.produce(source, payload)
    producer.flush(30)

    step(f"running the {pipeline.name} pipeline on {args.engine}: {source} → one topic per model + DLQ")
    started = SYSTEM_CLOCK.monotonic()
    register_builtins(EngineRegistry()).get(args.engine).run(
        pipeline,
        RunOptions(
            env.kafka_bootstrap,
            bounded=True,
            checkpoint_dir=state_dir / "checkpoints" / run_id,
            timeout_s=600,
        ),
    )
    print(f"    done in {SYSTEM_CLOCK.monotonic() - started:.1f} s (including engine start-up)")
    # The run has finished: every topic is read to its end, nothing is waited for.
    per_model = {m: kafka.read_to_end(env.kafka_bootstrap, [f"{pipeline.sink.topic}.{m}"]) for m in MODELS}
    dead = kafka.read_to_end(env.kafka_bootstrap, [pipeline.dead_letter.topic])
    for model, records in per_model.items():
        print(f"    {pipeline.sink.topic}.{model:14} {len(records):6} records")
    print(f"    {pipeline.dead_letter.topic:33} {len(dead):6} dead letters")
    arrived = sum(len(r) for r in per_model.values()) + len(dead)

    step(
        f"{len(per_model[MODELS[0]])} requests wait on {served}; GPU load 95 %: watch the replicas and nodes"
    )
    exporter.set_load(env.exporter_url, 0.95, namespace=NAMESPACE, deployment=SERVICE)
    apps = client.AppsV1Api(api)
    _watch_scale(api, apps, env, lambda r, n: r >= MAX_REPLICAS and n >= 2, 150)
    _top(api, env.prometheus_url)

    step("the servers catch up on the topic and the GPU load drops to 10 %")
    kafka.commit_to_end(env.kafka_bootstrap, served, "llm-servers")  # the lag the policy sees goes to 0
    exporter.set_load(env.exporter_url, 0.1, namespace=NAMESPACE, deployment=SERVICE)
    _watch_scale(api, apps, env, lambda r, n: r <= 2, 120)
    _top(api, env.prometheus_url)
    if args.keep:
        step(f"left running; stop with: tidescale local down --state-dir {state_dir}")
    return 0 if arrived == len(requests) else 1


def _namespace(core: Any) -> None:
    from kubernetes.client.rest import ApiException

    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except ApiException as e:
        if e.status != 409:
            raise TidescaleError(f"demo: namespace {NAMESPACE}: HTTP {e.status} {e.reason}") from e
    deadline = Deadline(30)
    while not any(
        sa.metadata.name == "default" for sa in core.list_namespaced_service_account(NAMESPACE).items
    ):
        if deadline.expired():
            raise TidescaleError(f"demo: no default ServiceAccount in {NAMESPACE} after 30 s")
        SYSTEM_CLOCK.sleep(0.3)


def _print_events(api: Any, done: threading.Event) -> None:
    """The controller's scaling events, as `tidescale events watch` prints them, while the demo runs."""
    from autoscaler.controller.sinks import kube_events
    from tidescale.commands.policy import event_line

    try:
        for record in kube_events.watch(api, NAMESPACE, should_stop=done.is_set):
            print(f"    event  {event_line(record)}", flush=True)
    except TidescaleError as e:
        print(f"    (events: {e})", flush=True)


def _show_pods(api: Any) -> None:
    from kubernetes import client

    for p in (
        client.CoreV1Api(api)
        .list_namespaced_pod(NAMESPACE, label_selector=f"tidescale.io/job={SERVICE}")
        .items
    ):
        ann = p.metadata.annotations or {}
        slices = ann.get("tidescale.io/gpu-slices", "-")
        print(f"    pod {p.metadata.name:28} {p.spec.node_name or '(pending)':14} slices {slices}")


def _top(api: Any, prometheus_url: str) -> None:
    """`tidescale top node -d` for the demo pool: per GPU, what is allocated, to whom, and DCGM's view."""
    from jobs.launcher import top, views

    view = top.top_nodes(api, prometheus_url, f"{POOL_LABEL}={POOL}")
    for line in views.format_nodes(view, True).splitlines():
        print(f"    {line}")


def _watch_scale(api: Any, apps: Any, env: Any, reached: Any, timeout: float) -> None:
    from kubernetes import client

    deadline = Deadline(timeout)
    last: tuple[int, int, int] | None = None
    core = client.CoreV1Api(api)
    while not deadline.expired():
        dep = apps.read_namespaced_deployment(SERVICE, NAMESPACE)
        replicas = int(dep.spec.replicas or 0)
        pool_nodes = len(core.list_node(label_selector=f"{POOL_LABEL}={POOL}").items)
        bound = sum(
            1
            for p in core.list_namespaced_pod(NAMESPACE, label_selector=f"tidescale.io/job={SERVICE}").items
            if p.spec.node_name
        )
        now = (replicas, pool_nodes, bound)
        if now != last:
            util = prometheus.query(env.prometheus_url, UTIL_QUERY)
            shown = f"{float(util[0]['value'][1]):5.1f} %" if util else "  -  "  # type: ignore[index]
            print(
                f"    replicas {replicas}  bound {bound}  {POOL} nodes {pool_nodes}  GPU util {shown}",
                flush=True,
            )
            last = now
        if reached(replicas, pool_nodes) and bound == replicas:
            return
        SYSTEM_CLOCK.sleep(1.0)
    print(f"    (still {last} after {timeout:.0f} s)")
