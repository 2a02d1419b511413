"""The `tidescale` command: explicit wiring of every package's subcommands in one place.

Each package exposes `add_commands(subparsers)` (and `add_benchmarks(bench_subparsers)` where it has
benchmarks); every leaf parser sets `func`, a handler `(argparse.Namespace) -> int` exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from autoscaler.api.policy import ScalingPolicy
from jobs import cli as jobs_cli
from jobs.launcher import cli as launcher_cli
from jobs.launcher import top as launcher_top
from jobs.scheduler import cli as scheduler_cli
from streaming import cli as streaming_cli
from tidescale import demo, launch_pipelines
from tidescale.bench import console as bench_console
from tidescale.bench import controller as bench_controller
from tidescale.bench import environment as bench_environment
from tidescale.bench import launcher as bench_launcher
from tidescale.bench import scheduler as bench_scheduler
from tidescale.bench import streaming as bench_streaming
from tidescale.commands import console as console_cli
from tidescale.commands import controller as controller_cli
from tidescale.commands import exporter as exporter_cli
from tidescale.commands import local as local_cli
from tidescale.commands import policy as autoscaler_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidescale",
        description="Event-driven autoscaler, streaming runtime and GPU scheduler for AI/ML on Kubernetes.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench = sub.add_parser("bench", help="benchmarks; the last line printed with --json is one JSON object")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")

    demo.add_commands(sub)
    local_cli.add_commands(sub)
    exporter_cli.add_commands(sub)
    autoscaler_cli.add_commands(sub)
    controller_cli.add_commands(sub)
    console_cli.add_commands(sub)
    jobs_cli.add_commands(sub)
    launcher_cli.add_commands(sub, scaling_policy=ScalingPolicy, external_kinds=launch_pipelines.kinds())
    launcher_top.add_commands(sub)
    scheduler_cli.add_commands(sub)
    streaming_cli.add_commands(sub)
    bench_environment.add_benchmarks(bench_sub)
    jobs_cli.add_benchmarks(bench_sub, e2e=bench_scheduler.e2e_command)
    autoscaler_cli.add_benchmarks(bench_sub, e2e=bench_controller.run)
    bench_streaming.add_benchmarks(bench_sub)
    bench_launcher.add_benchmarks(bench_sub)
    bench_console.add_benchmarks(bench_sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
