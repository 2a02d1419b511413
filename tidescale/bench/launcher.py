"""`tidescale bench launcher`: from `submit` to every pod bound, for a gang TrainingJob on KWOK GPU nodes.

1. A local control plane with `--nodes` KWOK GPU nodes (`gpu_pool`: 8 H100s and one RDMA NIC each), or
   the running one of `--kubeconfig` (its pool's nodes are added, and removed after); Volcano's PodGroup
   and Queue CRDs from ../shared/crds.
2. `tidescale scheduler run` in this process (`jobs.scheduler.wiring.Running`, the pool's nodes only),
   started and synced before the first submission.
3. `--runs` times: a `--workers`-worker TrainingJob (`--gpus` GPUs each, a gang) submitted through
   `jobs.launcher.client.submit`; a watch on the namespace's pods records when each pod is first seen
   bound; `submit_to_bound` runs from just before the submit call to the last of the job's pods bound
   (the Job controller creating the pods and the scheduler waiting for the whole gang included). Then
   the job is deleted (Foreground, waited for until nothing is left: not timed) before the next one.
4. The last line is one JSON object: `submit_to_bound_seconds` `{p50, p99, max, mean}`, the time of the
   submit call itself, and the peak RSS of this process (the launcher client and the scheduler in it).
   The run's namespace and nodes are deleted after, also on error; the control plane is stopped when
   this command started it.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from jobs.launcher.kinds import parse_jobs
from jobs.launcher.render import JOB_LABEL
from kernel.clock import SYSTEM_CLOCK, Clock, Deadline
from kernel.errors import TidescaleError

SHARED_CRDS = Path(__file__).resolve().parents[3] / "shared" / "crds"
POOL = "launcher-bench"
GOAL_P50_SECONDS = 2.0


def add_benchmarks(bench_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = bench_sub.add_parser(
        "launcher",
        help="submit to all pods bound for a gang TrainingJob on KWOK GPU nodes (p50, p99, peak RSS)",
    )
    b.add_argument("--nodes", type=int, default=100, help="KWOK GPU nodes, 8 GPUs each (default 100)")
    b.add_argument("--workers", type=int, default=16, help="workers of the TrainingJob (default 16)")
    b.add_argument("--gpus", type=int, default=8, help="GPUs per worker (default 8: a whole node)")
    b.add_argument("--runs", type=int, default=20, help="submissions (default 20)")
    b.add_argument("--timeout", type=float, default=60.0, help="seconds one run may take (default 60)")
    b.add_argument("--kubeconfig", default=None, help="use this running control plane (default: start one)")
    b.add_argument("--state-dir", type=Path, default=None, help="where the started control plane runs")
    b.add_argument("--crds", type=Path, default=SHARED_CRDS, help=f"Volcano's CRDs (default {SHARED_CRDS})")
    b.add_argument("--json", action="store_true", help="print the summary as one JSON object (last line)")
    b.set_defaults(func=run)


def _document(name: str, workers: int, gpus: int) -> str:
    return f"""
apiVersion: tidescale.io/v1alpha1
kind: TrainingJob
metadata: {{name: {name}}}
spec:
  image: trainer:1
  command: [torchrun, train.py]
  workers: {workers}
  resources: {{cpu: "8", memory: 64Gi, gpus: {gpus}}}
"""


class BoundWatch:
    """Watches a namespace's pods and remembers, per job, when each of its pods was first seen bound."""

    def __init__(self, api: Any, namespace: str, clock: Clock = SYSTEM_CLOCK) -> None:
        self.api = api
        self.namespace = namespace
        self.clock = clock
        self.bound: dict[str, dict[str, float]] = {}
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bound-watch", daemon=True)

    def start(self) -> BoundWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from kubernetes import client, watch

        core = client.CoreV1Api(self.api)
        version = ""
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(
                    core.list_namespaced_pod,
                    self.namespace,
                    label_selector=JOB_LABEL,
                    resource_version=version or None,
                    timeout_seconds=5,
                ):
                    pod = event["object"]
                    version = pod.metadata.resource_version or version
                    if pod.spec.node_name:
                        job = (pod.metadata.labels or {}).get(JOB_LABEL, "")
                        with self.changed:
                            self.bound.setdefault(job, {}).setdefault(
                                pod.metadata.name, self.clock.monotonic()
                            )
                            self.changed.notify_all()
                    if self._stop.is_set():
                        break
            except Exception:  # a stale resourceVersion or a dropped connection: list again
                version = ""
                self._stop.wait(0.1)

    def wait_bound(self, job: str, count: int, timeout: float) -> float:
        """The time the `count`-th pod of `job` was first seen bound."""
        deadline = Deadline(timeout, self.clock)
        with self.changed:
            while len(self.bound.get(job, {})) < count:
                if deadline.expired():
                    got = len(self.bound.get(job, {}))
                    raise TimeoutError(f"job {job}: {got}/{count} pods bound after {timeout:.0f} s")
                self.changed.wait(min(0.5, max(0.01, deadline.remaining())))
            return max(sorted(self.bound[job].values())[:count])


def _seconds(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples, dtype=float)
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "max": round(float(a.max()), 3),
        "mean": round(float(a.mean()), 3),
    }


def _namespace(core: Any, clock: Clock = SYSTEM_CLOCK) -> str:
    name = f"launcher-bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    deadline = Deadline(30, clock)
    while not any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items):
        if deadline.expired():
            raise TimeoutError(f"no default ServiceAccount in namespace {name} after 30 s")
        clock.sleep(0.2)
    return name


def run(args: argparse.Namespace) -> int:
    # clients imported here: the `tidescale` command should not pay for them on every start
    from kubernetes import client, config

    from autoscaler.core.nodepool import POOL_LABEL
    from jobs.launcher.client import delete_job, submit
    from jobs.scheduler.config import SchedulerConfig
    from jobs.scheduler.wiring import Options, Running
    from tidescale.local import crds, environment, nodes

    if min(args.nodes, args.workers, args.gpus, args.runs) < 1:
        print("--nodes, --workers, --gpus and --runs: at least 1", file=sys.stderr)
        return 2
    if args.gpus > 8:
        print("--gpus: at most 8 (a node has 8)", file=sys.stderr)
        return 2
    clock = SYSTEM_CLOCK
    own = args.kubeconfig is None
    state_dir: Path = args.state_dir or Path(tempfile.mkdtemp(prefix="tidescale-bench-launcher-"))
    pool = nodes.gpu_pool(args.nodes, name=POOL)
    added: list[str] = []
    running: Running | None = None
    watch: BoundWatch | None = None
    core: Any = None
    namespace = ""
    samples: list[float] = []
    calls: list[float] = []
    try:
        # 1. the control plane, its nodes and Volcano's CRDs
        if own:
            kubeconfig = environment.up(["kubernetes"], state_dir, node_pools=[pool]).kubeconfig
        else:
            kubeconfig = args.kubeconfig
            missing = pool.count - len(nodes.existing(kubeconfig, POOL))
            if missing > 0:
                added = nodes.add(kubeconfig, pool, missing, timeout=120)
        crds.install(
            kubeconfig,
            [
                args.crds / "scheduling.volcano.sh_podgroups.yaml",
                args.crds / "scheduling.volcano.sh_queues.yaml",
            ],
        )
        api = config.new_client_from_config(config_file=kubeconfig)
        core = client.CoreV1Api(api)
        namespace = _namespace(core, clock)
        # 2. the scheduler, in this process, over the pool's nodes
        scheduler = "tidescale" if own else f"tidescale-bench-{namespace.rsplit('-', 1)[1]}"
        cfg = SchedulerConfig(scheduler_name=scheduler, node_selector={POOL_LABEL: POOL})
        running = Running(Options(kubeconfig=kubeconfig, config=cfg)).start()
        watch = BoundWatch(api, namespace, clock).start()
        # 3. submit, wait until every worker is bound, delete
        for i in range(args.runs):
            name = f"train-{i}"
            (job,) = parse_jobs(_document(name, args.workers, args.gpus), "<bench>")
            began = clock.monotonic()
            submit(api, [job], namespace=namespace, scheduler_name=scheduler)
            calls.append(clock.monotonic() - began)
            bound = watch.wait_bound(name, args.workers, args.timeout)
            samples.append(bound - began)
            print(
                f"run {i + 1}/{args.runs}: {args.workers} pods bound {samples[-1]:.3f} s after submit",
                flush=True,
            )
            delete_job(api, name, namespace, propagation="Foreground", wait=True, timeout=args.timeout)
    except (TidescaleError, TimeoutError) as e:
        print(f"tidescale bench launcher: {e}", file=sys.stderr)
        return 1
    finally:
        if watch is not None:
            watch.stop()
        if running is not None:
            running.stop()
        if core is not None and namespace:
            core.delete_namespace(namespace)
        if added:
            nodes.delete(args.kubeconfig, added)
        if own:
            environment.down(state_dir)
            if args.state_dir is None:
                shutil.rmtree(state_dir, ignore_errors=True)
    # 4. the summary
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    result: dict[str, Any] = {
        "benchmark": "launcher",
        "nodes": args.nodes,
        "workers": args.workers,
        "gpus_per_worker": args.gpus,
        "runs": len(samples),
        "submit_to_bound_seconds": _seconds(samples),
        "submit_call_seconds": _seconds(calls),
        "goal_p50_seconds": GOAL_P50_SECONDS,
        "goal_met": _seconds(samples)["p50"] <= GOAL_P50_SECONDS,
        "peak_rss_mib": round(peak_mib, 1),
        "peak_rss_of": "this process: the launcher client and the scheduler in it",
    }
    if args.json:
        print(json.dumps(result))
    else:
        s = result["submit_to_bound_seconds"]
        print(
            f"{args.workers}-worker TrainingJob on {args.nodes} KWOK GPU nodes, {len(samples)} runs: "
            f"submit to all bound p50 {s['p50']} s, p99 {s['p99']} s (goal p50 <= {GOAL_P50_SECONDS} s); "
            f"peak RSS {result['peak_rss_mib']} MiB"
        )
    return 0
