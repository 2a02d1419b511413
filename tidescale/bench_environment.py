"""`tidescale bench environment`: peak memory of the whole local environment under work.

Starts Kafka, the exporter and Prometheus, runs the Kafka→Kafka transform on PyFlink and then on Spark
(each in a child process, as `pipeline run` would), and samples the summed RSS of every process involved.
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
from tidescale.local import environment
from tidescale.memory import PeakSampler, rss_mib, tree

BUDGET_MIB = 6 * 1024


def add_benchmarks(bench_sub: Any) -> None:
    bench = bench_sub.add_parser("environment", help="peak RSS of the local environment running both engines")
    bench.add_argument("--requests", type=int, default=5000)
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    state_dir = Path(tempfile.mkdtemp(prefix="tidescale-bench-env-"))
    result: dict[str, Any] = {"benchmark": "environment", "requests": args.requests}
    try:
        env = environment.up(["kafka", "exporter", "prometheus"], state_dir)
        roots = [p.pid for c in env.components.values() for p in c.processes]
        result["idle_rss_mib"] = round(rss_mib(tree(roots)), 1)
        with PeakSampler(roots) as sampler:
            for engine in ("flink", "spark"):
                started = SYSTEM_CLOCK.monotonic()
                child = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tidescale",
                        "demo",
                        "--engine",
                        engine,
                        "--requests",
                        str(args.requests),
                        "--state-dir",
                        str(state_dir),
                        "--keep",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                sampler.roots = [*roots, child.pid]
                code = child.wait(timeout=600)
                result[f"{engine}_seconds"] = round(SYSTEM_CLOCK.monotonic() - started, 1)
                result[f"{engine}_exit_code"] = code
        result["peak_rss_mib"] = round(sampler.peak_mib, 1)
        result["budget_mib"] = BUDGET_MIB
        result["within_budget"] = sampler.peak_mib <= BUDGET_MIB
    finally:
        environment.down(state_dir)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:16} {value}")
    return 0 if result.get("within_budget") else 1
