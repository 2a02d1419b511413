"""`tidescale scheduler run`: the secondary Kubernetes scheduler as a long-running process. Wired into the
`tidescale` command by the composition root (`tidescale.cli`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from kernel import logs
from kernel.errors import TidescaleError
from kernel.service import serve


def add_commands(sub: Any) -> None:
    sched = sub.add_parser("scheduler", help="the tidescale secondary Kubernetes scheduler")
    ssub = sched.add_subparsers(dest="scheduler_command", required=True, metavar="COMMAND")
    run = ssub.add_parser("run", help="bind every pod whose spec.schedulerName is ours, until stopped")
    env = os.environ.get
    run.add_argument("--kubeconfig", default=env("KUBECONFIG"), help="default: $KUBECONFIG, else in-cluster")
    run.add_argument("--scheduler-name", default=None, help="default: the config's schedulerName (tidescale)")
    run.add_argument("--config", type=Path, default=None, help="a SchedulerConfig YAML file")
    run.add_argument("--leader-elect", action="store_true", help="bind only while holding the Lease")
    run.add_argument("--lease-namespace", default=env("POD_NAMESPACE", "default"))
    run.add_argument("--identity", default=None, help="default: host name and process id")
    run.add_argument("--metrics-address", default="127.0.0.1", help="address /metrics and /healthz bind to")
    run.add_argument("--metrics-port", type=int, default=0, help="/metrics and /healthz port (0: a free one)")
    run.add_argument("--qps", type=float, default=None, help="API client QPS (default 50, as kube-scheduler)")
    run.add_argument("--burst", type=int, default=None, help="API client burst (default 100)")
    run.add_argument("--ready-file", type=Path, default=None, help="write {'url': …} here once serving")
    logs.add_arguments(run)
    run.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from jobs.scheduler.config import SchedulerConfig, read_config
    from jobs.scheduler.wiring import Options, Running  # the Kubernetes client only when it runs

    logs.configure(args.log_level, args.log_format)
    try:
        cfg = read_config(args.config) if args.config else SchedulerConfig()
    except TidescaleError as e:
        print(str(e), file=sys.stderr)
        return 2
    overrides: dict[str, Any] = {}
    if args.scheduler_name:
        overrides["scheduler_name"] = args.scheduler_name
    if args.qps is not None:
        overrides["qps"] = args.qps
    if args.burst is not None:
        overrides["burst"] = args.burst
    cfg = cfg.model_copy(update=overrides)
    options = Options(
        kubeconfig=args.kubeconfig,
        config=cfg,
        leader_elect=args.leader_elect,
        lease_namespace=args.lease_namespace,
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
        **({"identity": args.identity} if args.identity else {}),
    )
    return serve(
        "scheduler",
        lambda: Running(options).start(),
        options.identity,
        args.ready_file,
        f"{cfg.scheduler_name} ",
    )
