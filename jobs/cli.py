"""The `jobs` commands and the `scheduler` benchmark of the `tidescale` CLI.

`add_commands` registers `tidescale jobs explain FILE --snapshot SNAPSHOT` (and the launcher's
`jobs list|get|logs|delete`, `jobs.launcher.cli`); `add_benchmarks` registers `tidescale bench scheduler`.
Handlers take the parsed arguments and return the exit code: 0 done (explain: every pod placed),
1 explain: not every pod placed, 2 invalid input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobs.bench import BenchConfig, format_table, run_bench
from jobs.explain import explain
from jobs.launcher.cli import add_job_commands
from jobs.scorers import POLICY_NAMES
from jobs.snapshot import read_snapshot
from jobs.workload import read_pod_group
from kernel.errors import InvalidSpec, TidescaleError

DEFAULT_TRACES = Path("../shared/traces/openb")
DEFAULT_NODES = "openb_node_list_gpu_node.csv"
DEFAULT_PODS = "openb_pod_list_default.csv"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = sub.add_parser("jobs", help="submitted jobs: list, get, logs, delete; explain pod groups")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")
    ex = jobs_sub.add_parser(
        "explain",
        help="where a pod group would be placed on a cluster snapshot, and why (or why not)",
    )
    ex.add_argument("file", type=Path, nargs="?", help="pod group (YAML or JSON), with --snapshot")
    ex.add_argument("--snapshot", type=Path, help="cluster snapshot (YAML or JSON)")
    ex.add_argument("--kubeconfig", help="explain a pending pod on the live cluster instead (with --pod)")
    ex.add_argument("--pod", help="NAMESPACE/NAME of the pending pod (its gang is explained with it)")
    ex.add_argument("--scheduler-config", type=Path, help="the scheduler's SchedulerConfig (placement, name)")
    ex.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ex.set_defaults(func=explain_command)
    add_job_commands(jobs_sub)  # list, get, logs, delete: the launcher's


def add_benchmarks(
    bench_sub: argparse._SubParsersAction[argparse.ArgumentParser],
    e2e: Callable[[argparse.Namespace], int] | None = None,
) -> None:
    """`e2e`: the benchmark on the local control plane (`--e2e`), which needs the local environment and
    the scheduler's process: the composition root (`tidescale.cli`) passes it in."""
    b = bench_sub.add_parser(
        "scheduler",
        help="the FGD paper's experiment on the openb trace: unallocated GPUs, decisions/s, peak RSS",
    )
    b.add_argument(
        "--traces",
        type=Path,
        default=DEFAULT_TRACES,
        help=f"folder that relative --nodes/--pods names are read from (default {DEFAULT_TRACES})",
    )
    b.add_argument("--nodes", default=DEFAULT_NODES, help=f"node list CSV (default {DEFAULT_NODES})")
    b.add_argument("--pods", default=DEFAULT_PODS, help=f"pod list CSV (default {DEFAULT_PODS})")
    b.add_argument(
        "--arrival",
        type=float,
        default=1.0,
        help="arrival level as a ratio of cluster GPUs (default 1.0 = 100%%)",
    )
    b.add_argument(
        "--report-arrivals",
        default="",
        help="more arrival levels to report from the same runs, comma-separated (e.g. 0.9,0.95,1.05)",
    )
    b.add_argument(
        "--policy", default="tidescale", choices=POLICY_NAMES, help="placement policy (default tidescale)"
    )
    b.add_argument("--seeds", type=int, default=10, help="number of seeds, from --first-seed on (default 10)")
    b.add_argument(
        "--first-seed", "--seed", type=int, default=42, help="first seed (default 42, as in the paper)"
    )
    b.add_argument(
        "--tune", type=float, default=1.3, help="workload tuned up to this x cluster GPUs (default 1.3)"
    )
    b.add_argument(
        "--synthetic-nodes",
        type=int,
        default=0,
        help="replace the cluster by N nodes cycling the trace's node shapes",
    )
    b.add_argument(
        "--limit-pods",
        "--limit",
        type=int,
        default=0,
        help="place only the first N submitted pods (timing runs; --e2e: of those within --arrival)",
    )
    b.add_argument("--json", action="store_true", help="print the summary as one JSON object (last line)")
    e = b.add_argument_group("on the local control plane (--e2e)")
    e.add_argument(
        "--e2e",
        action="store_true",
        help="replay one seed on the local control plane, bound by a real scheduler (see docs/benchmarks.md)",
    )
    e.add_argument(
        "--scheduler",
        default="tidescale",
        choices=("tidescale", "kube-scheduler"),
        help="--e2e: `tidescale scheduler run` or a second kube-scheduler (default tidescale)",
    )
    e.add_argument("--whole-only", action="store_true", help="--e2e: drop the trace's shared-GPU pods first")
    e.add_argument("--qps", type=float, default=50.0, help="--e2e: the scheduler's API QPS (default 50)")
    e.add_argument("--burst", type=int, default=100, help="--e2e: the scheduler's API burst (default 100)")
    e.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="--e2e: tidescale's SchedulerConfig batchSize, pods offered per cycle (default its own)",
    )
    e.add_argument(
        "--idle-seconds",
        type=float,
        default=20.0,
        help="--e2e: stop when no pod was bound for this long (default 20)",
    )
    e.add_argument(
        "--kubeconfig", default=None, help="--e2e: use this running control plane (default: start one)"
    )
    e.add_argument("--state-dir", type=Path, default=None, help="--e2e: where the started control plane runs")
    b.set_defaults(func=bench_command, e2e_handler=e2e)


def _trace(folder: Path, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() or p.exists() else folder / p


def _finite(value: Any) -> Any:
    """NaN (a level no event reached) as null, so the output is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def bench_command(args: argparse.Namespace) -> int:
    if args.e2e:
        if args.e2e_handler is None:
            print(
                "--e2e needs the local environment: run it through the `tidescale` command", file=sys.stderr
            )
            return 2
        return int(args.e2e_handler(args))
    try:
        arrivals = [float(a) for a in args.report_arrivals.split(",") if a.strip()]
    except ValueError:
        print(f"--report-arrivals: not a list of numbers: {args.report_arrivals!r}", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print("--seeds: at least 1", file=sys.stderr)
        return 2
    cfg = BenchConfig(
        nodes_path=_trace(args.traces, args.nodes),
        pods_path=_trace(args.traces, args.pods),
        policy=args.policy,
        arrival=args.arrival,
        seeds=args.seeds,
        first_seed=args.first_seed,
        tune=args.tune,
        report_arrivals=tuple(arrivals),
        synthetic_nodes=args.synthetic_nodes,
        limit_pods=args.limit_pods,
    )
    try:
        result = run_bench(cfg)
    except InvalidSpec as e:
        print(f"tidescale bench scheduler: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_finite(result), allow_nan=False))
    else:
        print(format_table(result))
    return 0


def explain_command(args: argparse.Namespace) -> int:
    if args.kubeconfig or args.pod:
        return explain_live(args)
    if args.file is None or args.snapshot is None:
        print("jobs explain: FILE --snapshot SNAPSHOT, or --kubeconfig K --pod NS/NAME", file=sys.stderr)
        return 2
    try:
        group = read_pod_group(args.file)
        snapshot = read_snapshot(args.snapshot)
    except InvalidSpec as e:
        print(str(e), file=sys.stderr)
        return 2
    try:
        result = explain(group, snapshot)
    except KeyError as e:
        print(f"{args.file}: {e.args[0]}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print("\n".join(result.lines()))
    return 0 if result.complete else 1


def explain_live(args: argparse.Namespace) -> int:
    from kubernetes import config

    from jobs.scheduler.config import SchedulerConfig, read_config
    from jobs.scheduler.live import explain_pod

    if not (args.kubeconfig and args.pod):
        print("jobs explain: --kubeconfig and --pod go together", file=sys.stderr)
        return 2
    try:
        cfg = read_config(args.scheduler_config) if args.scheduler_config else SchedulerConfig()
        api = config.new_client_from_config(config_file=args.kubeconfig)
        result = explain_pod(api, args.pod, cfg)
    except TidescaleError as e:
        print(f"jobs explain: {e}", file=sys.stderr)
        return 2
    if args.json:
        data: dict[str, Any] = {"pod": result.pod, "bound": result.bound_to}
        if result.held is not None:
            data["held"] = {"reason": result.held.reason, "message": result.held.message}
        if result.explanation is not None:
            data["explanation"] = result.explanation.to_json()
        print(json.dumps(data))
    else:
        print("\n".join(result.lines()))
    return 0 if result.complete else 1
