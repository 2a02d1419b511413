"""`tidescale bench scheduler --e2e` on a tiny synthetic trace (written here, never the real one).

In-process on the session's `cluster` fixture (the root conftest's control plane): the benchmark is given
its kubeconfig, so it starts no environment of its own; it still starts the scheduler under test as a
child process, and deletes that process, the run's pods, namespace and nodes at the end (checked here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubernetes import client

from jobs.openb import read_nodes, read_pods
from tidescale.bench.scheduler import (
    PARTITION_LABEL,
    E2EConfig,
    E2EOutcome,
    Workload,
    is_shared,
    run_e2e,
    workload,
)

pytestmark = pytest.mark.integration

NODES = """sn,cpu_milli,memory_mib,gpu,model
tiny-0,32000,131072,4,T4
tiny-1,32000,131072,4,T4
tiny-2,16000,65536,2,P100
tiny-3,16000,65536,2,P100
tiny-4,64000,262144,8,V100M16
tiny-5,24000,65536,8,V100M16
"""

# (cpu milli, memory MiB, GPUs, milli per GPU): CPU-only, shares of one GPU, 1-8 whole GPUs
PODS = [
    (4000, 8192, 0, 0),
    (8000, 16384, 0, 0),
    (2000, 4096, 0, 0),
    (6000, 8192, 0, 0),
    (4000, 8192, 1, 250),
    (2000, 4096, 1, 500),
    (6000, 12288, 1, 300),
    (8000, 16384, 1, 700),
    (4000, 8192, 1, 460),
    (8000, 16384, 1, 1000),
    (12000, 24576, 1, 1000),
    (4000, 8192, 1, 1000),
    (6000, 12288, 1, 1000),
    (8000, 16384, 1, 1000),
    (16000, 32768, 2, 1000),
    (8000, 16384, 2, 1000),
    (12000, 24576, 2, 1000),
    (16000, 65536, 4, 1000),
    (24000, 98304, 4, 1000),
    (32000, 131072, 8, 1000),
]
ARRIVAL = 1.2  # past the cluster's GPUs: some pods cannot be placed
KEYS = {
    "scheduler",
    "nodes",
    "pods",
    "pods_bound",
    "unallocated_gpu_pct",
    "simulator_unallocated_gpu_pct",
    "pods_bound_per_second",
    "peak_rss_mib",
    "seconds",
    "qps",
    "burst",
}


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tiny-trace")
    (folder / "nodes.csv").write_text(NODES)
    rows = ["name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec"]
    rows += [f"tiny-pod-{i:02d},{c},{m},{n},{g}," for i, (c, m, n, g) in enumerate(PODS)]
    (folder / "pods.csv").write_text("\n".join(rows) + "\n")
    return folder / "nodes.csv", folder / "pods.csv"


def run(trace: tuple[Path, Path], kubeconfig: str, scheduler: str, work: Path) -> tuple[E2EOutcome, Workload]:
    nodes_path, pods_path = trace
    cfg = E2EConfig(
        nodes_path,
        pods_path,
        scheduler=scheduler,
        arrival=ARRIVAL,
        idle_seconds=5,
        kubeconfig=kubeconfig,
        work_dir=work,
    )
    outcome = run_e2e(cfg)
    return outcome, workload(read_nodes(nodes_path), read_pods(pods_path), cfg.seed, ARRIVAL)


def fits_somewhere(w: Workload, bound: dict[int, int], i: int, shared_as_whole: bool) -> bool:
    """Whether pod `i` fits a node's free CPU, memory and whole GPUs once the bound pods are counted (a
    shared-GPU pod counted as a whole GPU: for tidescale an upper bound of what it holds)."""
    p, n = w.submitted, w.nodes
    rows = w.order
    cpu = n.cpu_milli[rows].copy()
    mem = n.memory_mib[rows].copy()
    gpus = n.gpus[rows].copy()
    for j, rank in bound.items():
        cpu[rank] -= p.cpu_milli[j]
        mem[rank] -= p.memory_mib[j]
        gpus[rank] -= 1 if is_shared(p, j) and shared_as_whole else p.num_gpu[j]
    need = 1 if is_shared(p, i) else int(p.num_gpu[i])
    ok = (cpu >= p.cpu_milli[i]) & (mem >= p.memory_mib[i]) & (gpus >= need)
    return bool(np.any(ok))


def assert_cleaned_up(kubeconfig: str, outcome: E2EOutcome) -> None:
    from kubernetes import config

    core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    assert core.list_node(label_selector=PARTITION_LABEL).items == []
    gone = [n.metadata.name for n in core.list_namespace().items if n.status.phase != "Terminating"]
    assert outcome.summary["namespace"] not in gone
    leftover: list[Any] = core.list_pod_for_all_namespaces(label_selector=PARTITION_LABEL).items
    assert leftover == []


def test_tidescale_binds_what_the_simulator_places_and_leaves_as_much_unallocated(
    trace: tuple[Path, Path], cluster: Any, tmp_path: Path
) -> None:
    outcome, w = run(trace, cluster.kubeconfig, "tidescale", tmp_path)
    s = outcome.summary
    assert s.keys() >= KEYS
    assert s["pods"] == len(w.submitted) > len(PODS) // 2
    assert outcome.simulated is not None
    placed = {i for i, rank in enumerate(outcome.simulated.nodes) if rank >= 0}
    assert 0 < len(placed) < len(w.submitted), "the tiny trace should leave some pods unplaced"
    assert set(outcome.bound) == placed
    assert s["unallocated_gpu_pct"] == s["simulator_unallocated_gpu_pct"]
    unbound = [i for i in range(len(w.submitted)) if i not in outcome.bound and not is_shared(w.submitted, i)]
    assert not [i for i in unbound if fits_somewhere(w, outcome.bound, i, shared_as_whole=False)]
    assert s["peak_rss_mib"] > 0 and s["pods_bound"] == len(placed)
    assert_cleaned_up(cluster.kubeconfig, outcome)


def test_kube_scheduler_binds_every_pod_that_fits_holding_a_whole_gpu_per_shared_pod(
    trace: tuple[Path, Path], cluster: Any, tmp_path: Path
) -> None:
    outcome, w = run(trace, cluster.kubeconfig, "kube-scheduler", tmp_path)
    s = outcome.summary
    assert s.keys() >= KEYS and {"gpus_held_pct", "simulator_bestfit_unallocated_gpu_pct"} <= s.keys()
    assert s["pods_bound"] == len(outcome.bound) > 0
    unbound = [i for i in range(len(w.submitted)) if i not in outcome.bound]
    assert not [i for i in unbound if fits_somewhere(w, outcome.bound, i, shared_as_whole=True)]
    held = sum(1 if is_shared(w.submitted, i) else int(w.submitted.num_gpu[i]) for i in outcome.bound)
    assert s["gpus_held_pct"] == round(100.0 * held / int(w.nodes.gpus.sum()), 2)
    assert "note" in s  # the shared-GPU pods each held a whole GPU
    assert s["peak_rss_mib"] > 0
    assert_cleaned_up(cluster.kubeconfig, outcome)
