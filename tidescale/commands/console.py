"""`tidescale console`: the web console on its own, from the API server alone — ScalingPolicies from an
informer, scaling events from the Kubernetes Events the controller writes (a watch: they appear as the
controller records them, with no controller connection and no Kafka), GPU nodes, applications and queues
from the cluster's objects, DCGM's usage from Prometheus when one is given. The controller serves the same
console on its own endpoint (`tidescale controller run`, unless `--no-console`).

```
tidescale console [--kubeconfig K] [--address 127.0.0.1] [--port 0] [--prometheus URL] [--ready-file F]
```
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path
from typing import Any

from kernel import logs
from kernel.service import serve


def add_commands(sub: Any) -> None:
    env = os.environ.get
    c = sub.add_parser(
        "console", help="the web console: live scaling events, policies, GPU nodes, applications, queues"
    )
    c.add_argument("--kubeconfig", default=env("KUBECONFIG"), help="default: $KUBECONFIG, else in-cluster")
    c.add_argument("--address", default="127.0.0.1", help="address to bind (default: loopback only)")
    c.add_argument("--port", type=int, default=0, help="port to bind (default 0: a free one, printed)")
    c.add_argument(
        "--prometheus",
        default=None,
        metavar="URL",
        help="Prometheus with the DCGM metrics for GPU utilization and memory (default: "
        "$TIDESCALE_PROMETHEUS_URL, else the local environment's; '' for none)",
    )
    c.add_argument("--ready-file", type=Path, default=None, help="write {'url': …} here once serving")
    logs.add_arguments(c)
    c.set_defaults(func=console_command)


def console_command(args: argparse.Namespace) -> int:
    from autoscaler.console.server import Standalone  # the Kubernetes client only when it runs
    from jobs.launcher.top import default_prometheus_url

    logs.configure(args.log_level, args.log_format)
    prometheus = default_prometheus_url() if args.prometheus is None else (args.prometheus or None)
    return serve(
        "console",
        lambda: Standalone(args.kubeconfig, args.address, args.port, prometheus).start(),
        f"{platform.node()}-{os.getpid()}",
        args.ready_file,
    )
