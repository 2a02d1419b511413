"""`tidescale bench environment`: start time and memory of the local environment, idle and under work.

Starts the requested components (with KWOK nodes when Kubernetes is among them), waits for them to
settle, reads each component's RSS, then runs the Kafka→Kafka preprocessing job on each requested engine
(each in a child process, as `pipeline run` would) while sampling the summed RSS of every process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kernel.clock import SYSTEM_CLOCK
from tidescale.local import environment, nodes
from tidescale.memory import PeakSampler, rss_mib, tree

BUDGET_MIB = 6 * 1024
SETTLE_SECONDS = 10


def add_benchmarks(bench_sub: Any) -> None:
    bench = bench_sub.add_parser("environment", help="start time and memory of the local environment")
    bench.add_argument("--components", default="kafka,exporter,prometheus")
    bench.add_argument("--engines", default="flink,spark", help="comma-separated; empty for none")
    bench.add_argument("--gpu-nodes", type=int, default=4, help="KWOK nodes when kubernetes is started")
    bench.add_argument("--requests", type=int, default=5000)
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    state_dir = Path(tempfile.mkdtemp(prefix="tidescale-bench-env-"))
    names = environment.parse_components(args.components)
    engines = [e for e in args.engines.split(",") if e]
    pools = [nodes.gpu_pool(args.gpu_nodes)] if "kubernetes" in names and args.gpu_nodes else []
    result: dict[str, Any] = {"benchmark": "environment", "components": names, "engines": engines}
    try:
        started = SYSTEM_CLOCK.monotonic()
        env = environment.up(names, state_dir, node_pools=pools)
        result["start_seconds"] = round(SYSTEM_CLOCK.monotonic() - started, 1)
        result["gpu_nodes"] = args.gpu_nodes if pools else 0
        SYSTEM_CLOCK.sleep(SETTLE_SECONDS)
        roots: list[int] = []
        per_process: dict[str, float] = {}
        for component in env.components.values():
            for process in component.processes:
                roots.append(process.pid)
                per_process[process.name] = round(rss_mib(tree([process.pid])), 1)
        result["idle_rss_mib"] = round(sum(per_process.values()), 1)
        result["idle_rss_mib_by_process"] = per_process
        with PeakSampler(roots) as sampler:
            for engine in engines:
                began = SYSTEM_CLOCK.monotonic()
                command = [sys.executable, "-m", "tidescale", "demo", "--engine", engine, "--requests",
                           str(args.requests), "--state-dir", str(state_dir), "--keep"]  # fmt: skip
                child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                sampler.roots = [*roots, child.pid]
                result[f"{engine}_exit_code"] = child.wait(timeout=600)
                result[f"{engine}_seconds"] = round(SYSTEM_CLOCK.monotonic() - began, 1)
        result["peak_rss_mib"] = round(sampler.peak_mib, 1)
        result["budget_mib"] = BUDGET_MIB
        result["within_budget"] = sampler.peak_mib <= BUDGET_MIB
    finally:
        environment.down(state_dir)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
    return 0 if result.get("within_budget") else 1
