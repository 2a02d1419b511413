"""`tidescale bench controller --e2e --policies N --json`: the controller on the real local environment.

1. Starts Kubernetes (KWOK nodes) and Kafka, creates N Deployments and N ScalingPolicies driven by Kafka
   consumer-group lag: `--probes` of them on their own topic with committed offsets (the signals), the rest
   on a shared topic whose lag stays put (the load every sweep carries).
2. Runs `tidescale controller run` as a child process (Kubernetes Events and a Kafka event topic on, as
   deployed), waits until every policy has a Ready condition in its status.
3. For each probe in turn: produces a burst of records onto its topic and times, from the producer's flush,
   until the Deployment's spec.replicas read through the API has changed (polled every 20 ms).
4. Reads the controller's /metrics for the sweep durations (every policy, once per sync period) and its peak
   RSS, then stops everything.

The last line is one JSON object: `{"policies": N, "reaction_seconds": {"p50": …, "p99": …},
"reconcile_seconds_per_cycle": …, …}`.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kernel.clock import SYSTEM_CLOCK, Deadline
from tidescale.bench import cluster
from tidescale.local import environment, nodes
from tidescale.memory import PeakSampler, tree

NAMESPACE = "bench"
PROBE_PARTITIONS = 8
BURST = 1000
LAG_PER_REPLICA = 100


def _policy(name: str, topic: str, group: str) -> dict[str, Any]:
    return {
        "apiVersion": "tidescale.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "targetRef": {"kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 8,
            "triggers": [
                {
                    "type": "KafkaLag",
                    "name": "lag",
                    "topic": topic,
                    "group": group,
                    "lagPerReplica": LAG_PER_REPLICA,
                }
            ],
        },
    }


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def _histogram(text: str, name: str) -> tuple[float, float]:
    """(sum, count) of one histogram in a Prometheus text exposition."""
    total = re.search(rf"^{name}_sum (\S+)$", text, re.M)
    count = re.search(rf"^{name}_count (\S+)$", text, re.M)
    return (float(total.group(1)) if total else 0.0, float(count.group(1)) if count else 0.0)


def run(args: argparse.Namespace) -> int:
    # clients imported here: the `tidescale` command should not pay for them on every start
    import httpx
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
    from kubernetes import client, config

    n, probes = int(args.policies), int(args.probes)
    sync_s = float(args.sync_seconds)
    if n < 1 or probes < 1 or probes > n:
        print("--policies must be ≥ 1 and --probes between 1 and --policies", file=sys.stderr)
        return 2
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="tidescale-bench-controller-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"benchmark": "controller-e2e", "policies": n, "probes": probes}
    controller: subprocess.Popen[bytes] | None = None
    pool = nodes.NodePoolSpec(
        name="bench", count=2, capacity={"cpu": "1000", "memory": "4Ti", "pods": str(n + 50)}
    )
    try:
        env = environment.up(["kubernetes", "kafka"], state_dir, node_pools=[pool])
        api = config.new_client_from_config(config_file=env.kubeconfig)
        core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
        cluster.ready_namespace(core, NAMESPACE)
        # 1. topics, committed offsets for the probes, deployments and policies
        admin = AdminClient({"bootstrap.servers": env.kafka_bootstrap})
        topics = [NewTopic("bench-shared", num_partitions=4, replication_factor=1)]
        topics += [
            NewTopic(f"probe-{j}", num_partitions=PROBE_PARTITIONS, replication_factor=1)
            for j in range(probes)
        ]
        for future in admin.create_topics(topics).values():
            future.result(60)
        for j in range(probes):
            consumer = Consumer({"bootstrap.servers": env.kafka_bootstrap, "group.id": f"probe-{j}"})
            consumer.commit(
                offsets=[TopicPartition(f"probe-{j}", p, 0) for p in range(PROBE_PARTITIONS)],
                asynchronous=False,
            )
            consumer.close()
        began = SYSTEM_CLOCK.monotonic()
        for i in range(n):
            name = f"probe-{i}" if i < probes else f"worker-{i}"
            apps.create_namespaced_deployment(NAMESPACE, cluster.deployment(name, "embed-worker:1.0"))
            topic = name if i < probes else "bench-shared"
            custom.create_namespaced_custom_object(
                "tidescale.io", "v1alpha1", NAMESPACE, "scalingpolicies", _policy(name, topic, name)
            )
        result["create_seconds"] = round(SYSTEM_CLOCK.monotonic() - began, 1)
        # 2. the controller, as deployed, in a child process
        controller, url = cluster.start_controller(
            state_dir,
            env.kubeconfig,
            *("--kafka-bootstrap", env.kafka_bootstrap, "--events-topic", "tidescale.scaling-events"),
            *("--sync-seconds", str(sync_s)),
        )
        with PeakSampler([controller.pid]) as sampler:
            started = SYSTEM_CLOCK.monotonic()
            ready = cluster.wait_policies_reconciled(custom, NAMESPACE, n)
            result["all_ready_seconds"] = round(SYSTEM_CLOCK.monotonic() - started, 1)
            result["ready_policies"] = ready
            # 3. reaction: a lag burst on one probe topic at a time
            producer = Producer({"bootstrap.servers": env.kafka_bootstrap, "linger.ms": 0})
            reactions: list[float] = []
            for j in range(probes):
                name = f"probe-{j}"
                before = apps.read_namespaced_deployment_scale(name, NAMESPACE).spec.replicas
                for k in range(BURST):
                    producer.produce(name, b"x", partition=k % PROBE_PARTITIONS)
                producer.flush(30)
                t0 = SYSTEM_CLOCK.monotonic()
                deadline = Deadline(30)
                while apps.read_namespaced_deployment_scale(name, NAMESPACE).spec.replicas == before:
                    if deadline.expired():
                        break
                    SYSTEM_CLOCK.sleep(0.02)
                else:
                    reactions.append(SYSTEM_CLOCK.monotonic() - t0)
                SYSTEM_CLOCK.sleep(0.5)
            # let at least two sweeps run with every policy in place
            SYSTEM_CLOCK.sleep(2 * sync_s)
            metrics = httpx.get(f"{url}/metrics", timeout=10).text
            peak = sampler.peak_mib
        total, count = _histogram(metrics, "tidescale_sweep_seconds")
        result["reaction_seconds"] = {
            "p50": round(statistics.median(reactions), 3) if reactions else None,
            "p99": round(_percentile(reactions, 99), 3) if reactions else None,
            "max": round(max(reactions), 3) if reactions else None,
            "samples": len(reactions),
            "missed": probes - len(reactions),
        }
        result["reconcile_seconds_per_cycle"] = round(total / count, 3) if count else None
        result["sweeps"] = int(count)
        result["sync_seconds"] = sync_s
        result["controller_peak_rss_mib"] = round(peak, 1)
        result["controller_processes"] = len(tree([controller.pid]))
    finally:
        if controller is not None:
            controller.terminate()
            try:
                controller.wait(30)
            except subprocess.TimeoutExpired:
                controller.kill()
        environment.down(state_dir)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0
