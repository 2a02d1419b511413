"""`tidescale bench scheduler --e2e`: the openb trace replayed on the local control plane and bound by a
real scheduler — `tidescale scheduler run` or a second kube-scheduler — beside the simulator on the same
pods, nodes and node order.

1. The workload (pure, `workload`): the simulator's submission order for the seed (`prepare_pods` with
   `default_rng(seed)`, then `node_order` from the same generator, as `jobs.simulator.simulate` draws
   them), `--whole-only` applied to the trace before that, the prefix whose GPU demand stays within
   `arrival` x the cluster's GPUs, then `--limit`. Node `bench-<rank>` is the node of tie-break rank
   `rank`: the tidescale scheduler orders nodes by name, so name order is the simulator's order.
2. KWOK nodes, one per node row (allocatable CPU, memory, `nvidia.com/gpu`, `pods: 1001`; the GPU model
   and a partition label unique to the run), created concurrently and waited Ready.
3. Every pod created before the scheduler starts (its `schedulerName` names a scheduler not yet running),
   so that binding, not creation, is timed. Creations run concurrently in segments that end before a
   second boundary (a segment that still came out of order is created again, one pod at a time), so
   creation timestamps (second resolution) never go backwards in submission order: the tidescale
   scheduler's FIFO is (creation timestamp, first seen), and its first list is by name.
4. The scheduler as a child process with the given QPS and burst (kube-scheduler's defaults: 50, 100);
   a watch on the namespace records when each pod is first seen bound; the run ends when every pod is
   bound or none was bound for `idle_seconds`. The scheduler's peak RSS is its VmHWM, polled while it runs;
   its CPU seconds, and tidescale's own cycle counters from its /metrics, are read before it is stopped.
5. Unallocated GPU % on the cluster (what the bound pods asked, over the cluster's GPU milli) beside the
   simulator's at the end of the same sequence; the run's pods, namespace and nodes are deleted after,
   also on error, and the environment is stopped when this command started it.

The simulator's fragmentation model needs the workload's typical tasks: `simulator_unallocated_gpu_pct`
uses the submitted pods (all a live scheduler can learn: what is bound plus what is pending), and
`simulator_trace_typical_unallocated_gpu_pct` the whole trace, as `tidescale bench scheduler` does.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jobs.fgd import MILLI, FragModel, TaskShape, TypicalTasks
from jobs.openb import NodeList, PodList, read_nodes, read_pods
from jobs.scorers import policy_factory
from jobs.simulator import DEFAULT_TUNE, FIRST_SEED, POD_CAP, Simulation, node_order, prepare_pods
from jobs.vocabulary import ALI_COUNT, ALI_MILLI, ALI_MODEL, GFD_PRODUCT, NVIDIA_GPU
from kernel import artefacts
from kernel.clock import SYSTEM_CLOCK, Clock, Deadline
from kernel.errors import InvalidSpec, PermanentError, TidescaleError

SCHEDULERS = ("tidescale", "kube-scheduler")
PARTITION_LABEL = "tidescale.io/bench-run"
TRACE_POD_ANNOTATION = "tidescale.io/trace-pod"
IMAGE = "registry.k8s.io/pause:3.10"
DEFAULT_QPS = 50.0  # kube-scheduler's --kube-api-qps and --kube-api-burst defaults
DEFAULT_BURST = 100
DEFAULT_IDLE_SECONDS = 20.0
NODE_WORKERS = 8
POD_WORKERS = 4
SECOND_MARGIN = 0.2  # no creation starts this close to a second boundary before the earlier ones end
SHARED_NOTE = (
    "kube-scheduler sees a shared-GPU pod as nvidia.com/gpu: 1 (it has no GPU-share vocabulary): "
    "each of them holds a whole GPU; unallocated_gpu_pct counts what they asked, gpus_held_pct what they hold"
)


# -- 1. the workload (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """The run's input: the nodes and their tie-break order, the submitted pods in order."""

    nodes: NodeList
    order: np.ndarray[Any, np.dtype[np.int64]]  # order[rank] = node row; node `bench-<rank>`
    submitted: PodList
    trace_typical: TypicalTasks  # the (filtered) trace's typical tasks, as `simulate` learns them
    rng: np.random.Generator  # the seed's generator after the draws above (the simulator goes on with it)

    @property
    def cluster_gpu_milli(self) -> int:
        return self.nodes.total_gpu_milli

    def demand(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        out: np.ndarray[Any, np.dtype[np.int64]] = self.submitted.num_gpu * self.submitted.gpu_milli
        return out


def whole_only(pods: PodList) -> PodList:
    """CPU-only and whole-GPU pods (drops the shares of one GPU: 0 < gpu_milli < 1000)."""
    keep = np.flatnonzero(~((pods.num_gpu > 0) & (pods.gpu_milli > 0) & (pods.gpu_milli < MILLI)))
    return pods.take(keep.astype(np.int64))


def arrival_prefix(pods: PodList, cluster_gpu_milli: int, arrival: float) -> int:
    """How many leading pods keep the cumulative GPU demand within `arrival` x the cluster's GPU milli."""
    cum = np.cumsum(pods.num_gpu * pods.gpu_milli)
    return int(np.searchsorted(cum, arrival * cluster_gpu_milli, side="right"))


def workload(
    nodes: NodeList,
    pods: PodList,
    seed: int = FIRST_SEED,
    arrival: float = 1.0,
    tune: float = DEFAULT_TUNE,
    limit: int = 0,
    whole: bool = False,
) -> Workload:
    """The simulator's submission order and node order for `seed` (see the module's step 1)."""
    if whole:
        pods = whole_only(pods)
    trace_typical = TypicalTasks.from_arrays(pods.cpu_milli, pods.gpu_milli, pods.num_gpu, pods.gpu_spec)
    rng = np.random.default_rng(seed)
    prepared = prepare_pods(pods, nodes.total_gpu_milli, max(tune, arrival), rng)
    keep = arrival_prefix(prepared, nodes.total_gpu_milli, arrival)
    if limit > 0:
        keep = min(keep, limit)
    submitted = prepared.take(np.arange(keep, dtype=np.int64))
    order = node_order(nodes, rng)
    return Workload(nodes, order, submitted, trace_typical, rng)


def submitted_typical(pods: PodList) -> TypicalTasks:
    return TypicalTasks.from_arrays(pods.cpu_milli, pods.gpu_milli, pods.num_gpu, pods.gpu_spec)


@dataclass(frozen=True)
class Simulated:
    policy: str
    unallocated_gpu_pct: float
    nodes: tuple[int, ...]  # per submitted pod: the rank of its node, -1 if it was not placed


class _Recording(Simulation):
    """The simulator, remembering the node of each placement (they come in submission order)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chosen: list[int] = []

    def place(self, node: int, shape: TaskShape, memory_mib: int, gpus: list[int]) -> None:
        self.chosen.append(node)
        super().place(node, shape, memory_mib, gpus)


def simulate(w: Workload, policy: str, typical: TypicalTasks) -> Simulated:
    """The simulator on the workload's nodes, node order and submitted pods, read at the end."""
    frag = FragModel(typical, sorted(set(w.nodes.models)))
    sim = _Recording(w.nodes, w.order, frag, policy_factory(policy)(frag), copy.deepcopy(w.rng), POD_CAP)
    if len(w.submitted) == 0:
        return Simulated(policy, 100.0, ())
    events = sim.run(w.submitted)
    chosen = iter(sim.chosen)
    nodes = tuple(next(chosen) if placed else -1 for placed in events.placed.tolist())
    used = int(events.used_milli[-1])
    return Simulated(policy, round(100.0 * (1 - used / w.cluster_gpu_milli), 2), nodes)


def node_name(rank: int) -> str:
    return f"bench-{rank:05d}"


def pod_name(index: int) -> str:
    return f"p-{index:05d}"


def node_manifest(nodes: NodeList, row: int, rank: int, partition: str) -> dict[str, Any]:
    from autoscaler.controller.pools.node_manifest import kwok_node

    labels = {PARTITION_LABEL: partition}
    if nodes.models[row]:
        labels[GFD_PRODUCT] = nodes.models[row]
    capacity: dict[str, str | int] = {
        "cpu": f"{int(nodes.cpu_milli[row])}m",
        "memory": f"{int(nodes.memory_mib[row])}Mi",
        NVIDIA_GPU: str(int(nodes.gpus[row])),
        "pods": str(POD_CAP),
    }
    return kwok_node(node_name(rank), labels, capacity)


def is_shared(pods: PodList, i: int) -> bool:
    return int(pods.num_gpu[i]) == 1 and 0 < int(pods.gpu_milli[i]) < MILLI


def pod_manifest(
    pods: PodList, i: int, scheduler: str, scheduler_name: str, partition: str, run: str
) -> dict[str, Any]:
    """Trace pod `i` as a Pod for `scheduler`: shared GPUs as the Alibaba annotations for tidescale and as
    one whole `nvidia.com/gpu` for kube-scheduler; a GPU model constraint as the annotation, or as a
    required node affinity on the GPU product label (kube-scheduler's pods are also kept to the run's
    nodes by affinity; tidescale's config selects them)."""
    limits: dict[str, str] = {}
    if int(pods.cpu_milli[i]) > 0:
        limits["cpu"] = f"{int(pods.cpu_milli[i])}m"
    if int(pods.memory_mib[i]) > 0:
        limits["memory"] = f"{int(pods.memory_mib[i])}Mi"
    annotations = {TRACE_POD_ANNOTATION: pods.names[i]}
    count, spec = int(pods.num_gpu[i]), pods.gpu_spec[i]
    if count > 0:
        if is_shared(pods, i) and scheduler == "tidescale":
            annotations[ALI_COUNT] = "1"
            annotations[ALI_MILLI] = str(int(pods.gpu_milli[i]))
        else:
            limits[NVIDIA_GPU] = str(count)
    body: dict[str, Any] = {
        "schedulerName": scheduler_name,
        "containers": [{"name": "main", "image": IMAGE, "resources": {"limits": limits}}],
        "tolerations": [{"operator": "Exists"}],
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
    }
    if scheduler == "tidescale":
        if spec and count > 0:
            annotations[ALI_MODEL] = spec
    else:
        terms = [{"key": PARTITION_LABEL, "operator": "In", "values": [partition]}]
        if spec and count > 0:
            terms.append({"key": GFD_PRODUCT, "operator": "In", "values": spec.split("|")})
        body["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": terms}]
                }
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(i),
            "labels": {PARTITION_LABEL: run},
            "annotations": annotations,
        },
        "spec": body,
    }


def tidescale_config(scheduler_name: str, partition: str, batch_size: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": "tidescale.io/v1alpha1",
        "kind": "SchedulerConfig",
        "schedulerName": scheduler_name,
        "placement": {"type": "Tidescale"},
        "queuePolicy": "FIFO",
        "nodeSelector": {PARTITION_LABEL: partition},
    }
    if batch_size > 0:
        out["batchSize"] = batch_size
    return out


def kube_scheduler_config(scheduler_name: str, kubeconfig: str, qps: float, burst: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "leaderElection": {"leaderElect": False},
        "clientConnection": {"kubeconfig": kubeconfig, "qps": qps, "burst": burst},
        "profiles": [{"schedulerName": scheduler_name}],
    }


def creation_inversions(timestamps: Sequence[str]) -> int:
    """Adjacent pairs whose creation timestamps go backwards (RFC 3339 in UTC sorts as text)."""
    return sum(1 for a, b in itertools.pairwise(timestamps) if b < a)


def bind_rate(times: Sequence[float]) -> float | None:
    """Pods bound per second between the first and the last bind."""
    if len(times) < 2 or max(times) <= min(times):
        return None
    return round((len(times) - 1) / (max(times) - min(times)), 1)


# -- the shell ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class E2EConfig:
    nodes_path: Path
    pods_path: Path
    scheduler: str = "tidescale"
    seed: int = FIRST_SEED
    arrival: float = 1.0
    tune: float = DEFAULT_TUNE
    limit: int = 0
    whole_only: bool = False
    qps: float = DEFAULT_QPS
    burst: int = DEFAULT_BURST
    batch_size: int = 0  # tidescale's SchedulerConfig batchSize (0: the scheduler's default)
    idle_seconds: float = DEFAULT_IDLE_SECONDS
    kubeconfig: str | None = None  # a running control plane; else this run starts (and stops) its own
    state_dir: Path | None = None
    work_dir: Path | None = None  # configs, the scheduler's log, pods.csv (default: a new temporary folder)
    timeout_seconds: float = 3600.0


@dataclass
class E2EOutcome:
    """The JSON summary, and which node each pod was bound to (pod index -> node rank) for tests."""

    summary: dict[str, Any]
    bound: dict[int, int] = field(default_factory=dict)
    simulated: Simulated | None = None


Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"bench scheduler --e2e: {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of the process (all its threads) so far, None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scheduler_metrics(text: str) -> dict[str, float]:
    """The tidescale scheduler's own counters from its /metrics text."""
    wanted = {
        "cycles": "tidescale_scheduler_cycles_total",
        "cycle_seconds": "tidescale_scheduler_cycle_seconds_sum",
        "pods_bound": "tidescale_scheduler_pods_bound_total",
    }
    out: dict[str, float] = {}
    for key, name in wanted.items():
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        if m:
            out[key] = round(float(m.group(1)), 2)
    errors = re.findall(r"^tidescale_scheduler_bind_errors_total\{[^}]*\} (\S+)$", text, re.M)
    out["bind_errors"] = sum(float(e) for e in errors)
    return out


def vm_hwm_mib(pid: int) -> float | None:
    """The process's peak resident set (VmHWM), None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


class BindWatch:
    """The run's pods from a list and then a watch: when each was first seen bound, and where."""

    def __init__(self, api: Any, namespace: str, clock: Clock = SYSTEM_CLOCK) -> None:
        from kubernetes import client

        from kernel.informer import Informer

        self.clock = clock
        self.lock = threading.Lock()
        self.first: dict[str, tuple[float, str]] = {}
        self.changed = threading.Event()
        core = client.CoreV1Api(api)
        self.informer = Informer("bench-pods", core.list_namespaced_pod, (namespace,), (self._on_pod,), clock)

    def _on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        node = (obj.get("spec") or {}).get("nodeName")
        if kind == "DELETED" or not node:
            return
        name = str((obj.get("metadata") or {}).get("name"))
        with self.lock:
            if name not in self.first:
                self.first[name] = (self.clock.monotonic(), str(node))
                self.changed.set()

    def start(self, timeout: float = 60) -> None:
        self.informer.start()
        if not self.informer.wait_synced(timeout):
            raise PermanentError(f"the watch on the run's pods did not sync within {timeout:.0f} s")

    def snapshot(self) -> dict[str, tuple[float, str]]:
        with self.lock:
            return dict(self.first)

    def stop(self) -> None:
        self.informer.stop()


def _api(kubeconfig: str, pool: int) -> Any:
    from kubernetes import config

    api = config.new_client_from_config(config_file=kubeconfig)
    api.configuration.connection_pool_maxsize = pool
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = pool
    return api


def _create_nodes(core: Any, w: Workload, partition: str, progress: Progress) -> list[str]:
    names = [node_name(rank) for rank in range(len(w.order))]
    manifests = [node_manifest(w.nodes, int(row), rank, partition) for rank, row in enumerate(w.order)]
    with ThreadPoolExecutor(NODE_WORKERS, thread_name_prefix="create-node") as pool:
        list(pool.map(lambda m: core.create_node(m, _preload_content=False), manifests))
    progress(f"created {len(names)} nodes; waiting until KWOK reports them Ready")
    deadline = Deadline(max(60.0, len(names) / 10))
    while True:
        listing = json.loads(
            core.list_node(label_selector=f"{PARTITION_LABEL}={partition}", _preload_content=False).data
        )
        ready = sum(
            1
            for n in listing.get("items", [])
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (n.get("status") or {}).get("conditions") or []
            )
        )
        if ready == len(names):
            return names
        if deadline.expired():
            raise PermanentError(f"KWOK made {ready} of {len(names)} nodes Ready in time")
        SYSTEM_CLOCK.sleep(0.5)


def _new_namespace(core: Any, name: str) -> None:
    core.create_namespace({"metadata": {"name": name, "labels": {PARTITION_LABEL: name}}})
    deadline = Deadline(30)
    while not any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items):
        if deadline.expired():
            raise PermanentError(f"no default ServiceAccount in namespace {name} after 30 s")
        SYSTEM_CLOCK.sleep(0.2)


class _PodMaker:
    """Creates the run's pods concurrently in submission order, in segments that end before a second
    boundary (see the module's step 3). A creation slow enough to cross the boundary can still put two
    pods of one segment out of order: then the segment is deleted and created again one pod at a time,
    before any later pod exists."""

    def __init__(self, core: Any, namespace: str, manifests: list[dict[str, Any]], clock: Clock) -> None:
        self.core = core
        self.namespace = namespace
        self.manifests = manifests
        self.clock = clock
        self.stamps: list[str] = [""] * len(manifests)  # creation timestamps, by submission index
        self.recreated = 0

    def create(self, i: int) -> None:
        for attempt in range(50):
            try:
                response = self.core.create_namespaced_pod(
                    self.namespace, self.manifests[i], _preload_content=False
                )
                break
            except Exception as e:  # 409: the deleted pod of the same name is not gone yet
                if getattr(e, "status", None) != 409 or attempt == 49:
                    raise
                self.clock.sleep(0.1)
        self.stamps[i] = str(json.loads(response.data)["metadata"]["creationTimestamp"])

    def _settle(self, inflight: set[Future[None]], start: int, end: int) -> None:
        for f in wait(inflight).done:
            f.result()
        inflight.clear()
        if creation_inversions(self.stamps[max(start - 1, 0) : end]) == 0:
            return
        for i in range(start, end):
            name = self.manifests[i]["metadata"]["name"]
            self.core.delete_namespaced_pod(
                name, self.namespace, grace_period_seconds=0, _preload_content=False
            )
        for i in range(start, end):
            self.create(i)
        self.recreated += end - start

    def run(self) -> list[str]:
        inflight: set[Future[None]] = set()
        start = 0
        with ThreadPoolExecutor(POD_WORKERS, thread_name_prefix="create-pod") as pool:
            for i in range(len(self.manifests)):
                if 1.0 - self.clock.now().microsecond / 1e6 < SECOND_MARGIN:
                    self._settle(inflight, start, i)
                    start = i
                    left = 1.0 - self.clock.now().microsecond / 1e6
                    if left < SECOND_MARGIN:
                        self.clock.sleep(left + 0.01)
                while len(inflight) >= 2 * POD_WORKERS:
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for f in done:
                        f.result()
                    inflight -= done
                inflight.add(pool.submit(self.create, i))
            self._settle(inflight, start, len(self.manifests))
        return self.stamps


def _scheduler_command(
    cfg: E2EConfig, work: Path, kubeconfig: str, scheduler_name: str, partition: str
) -> tuple[list[str], Path | None]:
    """The scheduler's argv and, for tidescale, the file it writes once serving."""
    import yaml

    if cfg.scheduler == "tidescale":
        config_file = work / "scheduler-config.yaml"
        config_file.write_text(yaml.safe_dump(tidescale_config(scheduler_name, partition, cfg.batch_size)))
        ready = work / "scheduler-ready.json"
        script = Path(sys.executable).parent / "tidescale"
        head = [str(script)] if script.exists() else [sys.executable, "-m", "tidescale"]
        return [
            *head,
            "scheduler",
            "run",
            "--kubeconfig",
            kubeconfig,
            "--config",
            str(config_file),
            "--qps",
            f"{cfg.qps:g}",
            "--burst",
            str(cfg.burst),
            "--metrics-port",
            "0",
            "--ready-file",
            str(ready),
            "--log-level",
            "WARNING",
        ], ready
    config_file = work / "kube-scheduler-config.yaml"
    config_file.write_text(
        yaml.safe_dump(kube_scheduler_config(scheduler_name, kubeconfig, cfg.qps, cfg.burst))
    )
    binary = artefacts.cached_binary("kube-scheduler")
    return [
        str(binary),
        f"--config={config_file}",
        "--secure-port=0",
        "--bind-address=127.0.0.1",
        "--v=1",
    ], None


def _write_pods(path: Path, pods: PodList, simulated: Sequence[int], bound: dict[int, int]) -> Path:
    """Per submitted pod: its shape, the simulator's node rank and the bound one (-1: none), for diagnosis."""
    lines = ["index,trace_pod,cpu_milli,memory_mib,num_gpu,gpu_milli,simulator_node,bound_node"]
    lines += [
        f"{i},{pods.names[i]},{int(pods.cpu_milli[i])},{int(pods.memory_mib[i])},{int(pods.num_gpu[i])},"
        f"{int(pods.gpu_milli[i])},{simulated[i]},{bound.get(i, -1)}"
        for i in range(len(pods))
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _cleanup(core: Any, namespace: str | None, partition: str, progress: Progress) -> None:
    """The run's pods (at once: grace 0), its namespace and its nodes; each step tried even if one fails."""
    steps: list[tuple[str, Callable[[], Any]]] = []
    if namespace is not None:
        steps += [
            (
                "pods",
                lambda: core.delete_collection_namespaced_pod(
                    namespace, grace_period_seconds=0, _preload_content=False
                ),
            ),
            ("namespace", lambda: core.delete_namespace(namespace, _preload_content=False)),
        ]
    steps.append(
        (
            "nodes",
            lambda: core.delete_collection_node(
                label_selector=f"{PARTITION_LABEL}={partition}", _preload_content=False
            ),
        )
    )
    for what, step in steps:
        try:
            step()
        except Exception as e:  # cleaning up: say what was left, go on with the rest
            progress(f"cleanup: deleting the run's {what} failed: {e}")


def run_e2e(cfg: E2EConfig, progress: Progress = _stderr, clock: Clock = SYSTEM_CLOCK) -> E2EOutcome:
    import httpx
    from kubernetes import client

    from tidescale.local import environment
    from tidescale.local.process import spawn, stop

    if cfg.scheduler not in SCHEDULERS:
        raise InvalidSpec(
            "--scheduler", [f"0: no scheduler {cfg.scheduler!r} (known: {', '.join(SCHEDULERS)})"]
        )
    # 1. the workload and the simulator on it
    nodes, trace = read_nodes(cfg.nodes_path), read_pods(cfg.pods_path)
    w = workload(nodes, trace, cfg.seed, cfg.arrival, cfg.tune, cfg.limit, cfg.whole_only)
    pods = w.submitted
    demand = w.demand()
    shared = [i for i in range(len(pods)) if is_shared(pods, i)]
    ours = simulate(w, "tidescale", submitted_typical(pods))
    trace_sim = simulate(w, "tidescale", w.trace_typical)
    progress(
        f"{len(nodes)} nodes ({int(nodes.gpus.sum())} GPUs), {len(pods)} pods ({len(shared)} shared-GPU);"
        f" simulator (tidescale): {ours.unallocated_gpu_pct:.2f} % GPUs unallocated"
    )
    run = uuid.uuid4().hex[:8]
    partition = f"bench-{run}"
    scheduler_name = f"bench-{cfg.scheduler}-{run}"
    work = cfg.work_dir or Path(tempfile.mkdtemp(prefix="tidescale-bench-scheduler-"))
    work.mkdir(parents=True, exist_ok=True)
    own_env = cfg.kubeconfig is None
    state_dir = cfg.state_dir or work / "env"
    summary: dict[str, Any] = {
        "benchmark": "scheduler-e2e",
        "scheduler": cfg.scheduler,
        "nodes": len(nodes),
        "gpus": int(nodes.gpus.sum()),
        "pods": len(pods),
        "shared_gpu_pods": len(shared),
        "seed": cfg.seed,
        "arrival": cfg.arrival,
        "whole_only": cfg.whole_only,
        "limit": cfg.limit or None,
        "qps": cfg.qps,
        "burst": cfg.burst,
        "batch_size": cfg.batch_size or None,
        "namespace": partition,
    }
    outcome = E2EOutcome(summary, simulated=ours)
    namespace: str | None = None
    core: Any = None
    proc: Any = None
    watch: BindWatch | None = None
    ok = False
    try:
        kubeconfig = cfg.kubeconfig
        if kubeconfig is None:
            progress(f"starting the control plane in {state_dir}")
            kubeconfig = environment.up(["kubernetes"], state_dir).kubeconfig
        api = _api(kubeconfig, 2 * POD_WORKERS + NODE_WORKERS)
        core = client.CoreV1Api(api)
        # 2. nodes
        began = clock.monotonic()
        _create_nodes(core, w, partition, progress)
        summary["create_nodes_seconds"] = round(clock.monotonic() - began, 1)
        # 3. pods, all of them before the scheduler starts
        namespace = partition
        _new_namespace(core, namespace)
        manifests = [
            pod_manifest(pods, i, cfg.scheduler, scheduler_name, partition, run) for i in range(len(pods))
        ]
        began = clock.monotonic()
        maker = _PodMaker(core, namespace, manifests, clock)
        stamps = maker.run()
        summary["create_pods_seconds"] = round(clock.monotonic() - began, 1)
        summary["creation_order_inversions"] = creation_inversions(stamps)
        summary["pods_recreated_in_order"] = maker.recreated
        progress(f"created {len(pods)} pods in {summary['create_pods_seconds']} s in namespace {namespace}")
        watch = BindWatch(api, namespace, clock)
        watch.start()
        # 4. the scheduler, timed from its start
        argv, ready_file = _scheduler_command(cfg, work, kubeconfig, scheduler_name, partition)
        log_file = work / f"{cfg.scheduler}.log"
        summary["scheduler_log"] = str(log_file)
        started = clock.monotonic()
        proc = spawn(cfg.scheduler, argv, log_file)
        progress(f"started {cfg.scheduler} (pid {proc.pid}, log {log_file})")
        peak = 0.0
        quiet_since = started
        ready_at: float | None = None if ready_file is not None else started
        deadline = Deadline(cfg.timeout_seconds, clock)
        last_report = started
        while True:
            hwm = vm_hwm_mib(proc.pid)
            if hwm is not None:
                peak = max(peak, hwm)
            if not proc.alive():
                raise PermanentError(f"{cfg.scheduler} exited with code {proc.exit_code()} (log: {log_file})")
            if ready_at is None and ready_file is not None and ready_file.exists():
                ready_at = clock.monotonic()
                quiet_since = ready_at
            seen = watch.snapshot()
            if seen:
                quiet_since = max(quiet_since, *(t for t, _ in seen.values()))
            now = clock.monotonic()
            if len(seen) == len(pods):
                break
            if ready_at is not None and now - quiet_since > cfg.idle_seconds:
                break
            if ready_at is None and now - started > 120:
                raise PermanentError(f"{cfg.scheduler} did not start within 120 s (log: {log_file})")
            if deadline.expired():
                progress(f"stopping at the {cfg.timeout_seconds:.0f} s limit")
                break
            if now - last_report >= 10:
                last_report = now
                progress(f"{len(seen)}/{len(pods)} pods bound after {now - started:.0f} s")
            watch.changed.wait(0.5)
            watch.changed.clear()
        hwm = vm_hwm_mib(proc.pid)
        if hwm is not None:
            peak = max(peak, hwm)
        summary["scheduler_cpu_seconds"] = cpu_seconds(proc.pid)
        if ready_file is not None and ready_file.exists():
            try:
                url = json.loads(ready_file.read_text())["url"]
                summary["scheduler_metrics"] = scheduler_metrics(httpx.get(f"{url}/metrics", timeout=10).text)
            except (httpx.HTTPError, KeyError, ValueError) as e:
                progress(f"the scheduler's /metrics could not be read: {e}")
        stop(proc.pid, cfg.scheduler)
        proc = None
        # 5. read the cluster beside the simulator
        seen = watch.snapshot()
        index = {pod_name(i): i for i in range(len(pods))}
        rank = {node_name(r): r for r in range(len(w.order))}
        outcome.bound = {index[n]: rank.get(node, -1) for n, (_, node) in seen.items() if n in index}
        times = [t for t, _ in seen.values()]
        allocated = int(sum(int(demand[i]) for i in outcome.bound))
        cluster = w.cluster_gpu_milli
        summary |= {
            "pods_bound": len(outcome.bound),
            "unallocated_gpu_pct": round(100.0 * (1 - allocated / cluster), 2) if cluster else None,
            "simulator_unallocated_gpu_pct": ours.unallocated_gpu_pct,
            "simulator_pods_placed": sum(1 for n in ours.nodes if n >= 0),
            "simulator_policy": "tidescale",
            "simulator_typical_tasks": "the submitted pods",
            "simulator_trace_typical_unallocated_gpu_pct": trace_sim.unallocated_gpu_pct,
            "pods_bound_per_second": bind_rate(times),
            "seconds": round(max(times) - started, 2) if times else None,
            "first_bind_seconds": round(min(times) - started, 2) if times else None,
            "last_bind_seconds": round(max(times) - started, 2) if times else None,
            "peak_rss_mib": round(peak, 1),
        }
        if ready_file is not None and ready_at is not None:
            summary["ready_seconds"] = round(ready_at - started, 2)
        placed = {i: n for i, n in enumerate(ours.nodes) if n >= 0}
        summary["same_node_as_simulator_pct"] = (
            round(100.0 * sum(1 for i, n in placed.items() if outcome.bound.get(i) == n) / len(placed), 2)
            if placed
            else None
        )
        off = [i for i in range(len(pods)) if outcome.bound.get(i, -1) != placed.get(i, -1)]
        summary["first_pod_off_simulator"] = off[0] if off else None
        summary["bound_not_simulated"] = sum(1 for i in outcome.bound if i not in placed)
        summary["simulated_not_bound"] = sum(1 for i in placed if i not in outcome.bound)
        summary["pods_file"] = str(_write_pods(work / "pods.csv", pods, ours.nodes, outcome.bound))
        if cfg.scheduler == "kube-scheduler":
            shared_set = set(shared)
            held = sum(1 if i in shared_set else int(pods.num_gpu[i]) for i in outcome.bound)
            gpus = int(nodes.gpus.sum())
            summary["gpus_held_pct"] = round(100.0 * held / gpus, 2) if gpus else None
            for policy in ("bestfit", "random"):
                other = simulate(w, policy, submitted_typical(pods))
                summary[f"simulator_{policy}_unallocated_gpu_pct"] = other.unallocated_gpu_pct
            if shared:
                summary["note"] = SHARED_NOTE
        ok = True
    finally:
        if proc is not None:
            stop(proc.pid, cfg.scheduler)
        if watch is not None:
            watch.stop()
        if core is not None and not own_env:
            _cleanup(core, namespace, partition, progress)
        if own_env:
            environment.down(state_dir)
            if ok and cfg.state_dir is None:
                shutil.rmtree(state_dir, ignore_errors=True)
    return outcome


def _trace(folder: Path, name: str) -> Path:
    """A trace file: as given when it exists (or is absolute), else under the traces folder."""
    p = Path(name)
    return p if p.is_absolute() or p.exists() else folder / p


def e2e_command(args: argparse.Namespace) -> int:
    """`tidescale bench scheduler --e2e …`: the handler `jobs.cli` is given by the composition root."""
    if args.scheduler not in SCHEDULERS:
        print(f"--scheduler: one of {', '.join(SCHEDULERS)}", file=sys.stderr)
        return 2
    cfg = E2EConfig(
        nodes_path=_trace(args.traces, args.nodes),
        pods_path=_trace(args.traces, args.pods),
        scheduler=args.scheduler,
        seed=args.first_seed,
        arrival=args.arrival / 100 if args.arrival > 5 else args.arrival,  # as a ratio or a percentage
        tune=args.tune,
        limit=args.limit_pods,
        whole_only=args.whole_only,
        qps=args.qps,
        burst=args.burst,
        batch_size=args.batch_size,
        idle_seconds=args.idle_seconds,
        kubeconfig=args.kubeconfig,
        state_dir=args.state_dir,
    )
    try:
        outcome = run_e2e(cfg)
    except InvalidSpec as e:
        print(f"tidescale bench scheduler --e2e: {e}", file=sys.stderr)
        return 2
    except (TidescaleError, subprocess.SubprocessError, OSError) as e:
        print(f"tidescale bench scheduler --e2e: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(outcome.summary))
    else:
        for key, value in outcome.summary.items():
            print(f"{key}: {value}")
    return 0
