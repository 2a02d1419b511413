"""`tidescale controller run`: the controller as a long-running process (flags, or the environment for the
endpoints: KUBECONFIG, TIDESCALE_PROMETHEUS_URL, TIDESCALE_KAFKA_BOOTSTRAP). Wired into the `tidescale`
command by the composition root (`tidescale.cli`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from kernel import logs
from kernel.service import serve


def add_commands(sub: Any) -> None:
    controller = sub.add_parser("controller", help="the autoscaler controller on Kubernetes")
    csub = controller.add_subparsers(dest="controller_command", required=True, metavar="COMMAND")
    run = csub.add_parser("run", help="watch ScalingPolicies and NodePools and reconcile them until stopped")
    env = os.environ.get
    run.add_argument("--kubeconfig", default=env("KUBECONFIG"), help="default: $KUBECONFIG, else in-cluster")
    run.add_argument("--prometheus-url", default=env("TIDESCALE_PROMETHEUS_URL"))
    run.add_argument("--kafka-bootstrap", default=env("TIDESCALE_KAFKA_BOOTSTRAP"))
    run.add_argument("--events-topic", default="tidescale.scaling-events", help="'' for no Kafka records")
    run.add_argument("--no-kubernetes-events", action="store_true", help="do not write Kubernetes Events")
    run.add_argument(
        "--host", default="127.0.0.1", help="address the webhook, /metrics and the console bind to"
    )
    run.add_argument("--no-console", action="store_true", help="do not serve the web console at / on it")
    run.add_argument(
        "--webhook-port", type=int, default=0, help="Alertmanager webhook (and /metrics); 0: free"
    )
    run.add_argument("--metrics-port", type=int, default=None, help="/metrics on its own port")
    run.add_argument("--leader-elect", action="store_true", help="reconcile only while holding the Lease")
    run.add_argument("--lease-namespace", default=env("POD_NAMESPACE", "default"))
    run.add_argument("--lease-name", default="tidescale-controller")
    run.add_argument("--identity", default=None, help="default: host name and process id")
    run.add_argument("--sync-seconds", type=float, default=15.0, help="the safety-net sweep period")
    run.add_argument("--prometheus-scrape-seconds", type=float, default=15.0)
    run.add_argument("--ready-file", type=Path, default=None, help="write {'url': …} here once serving")
    logs.add_arguments(run)
    run.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from autoscaler.controller.wiring import Options, Running  # the Kubernetes client only when it runs

    logs.configure(args.log_level, args.log_format)
    options = Options(
        kubeconfig=args.kubeconfig,
        prometheus_url=args.prometheus_url,
        kafka_bootstrap=args.kafka_bootstrap,
        events_topic=args.events_topic or None,
        kubernetes_events=not args.no_kubernetes_events,
        host=args.host,
        webhook_port=args.webhook_port,
        metrics_port=args.metrics_port,
        leader_elect=args.leader_elect,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        sync_seconds=args.sync_seconds,
        prometheus_scrape_seconds=args.prometheus_scrape_seconds,
        console=not args.no_console,
        **({"identity": args.identity} if args.identity else {}),
    )
    return serve("controller", lambda: Running(options).start(), options.identity, args.ready_file)
