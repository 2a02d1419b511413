"""`tidescale exporter`: serve DCGM-compatible metrics for simulated GPUs (`--simulate SPEC`), for
simulated GPUs that follow a cluster's GPU nodes and pods (`--kubeconfig FILE`), or for real ones
(`--nvml`).

The shell around the server: parse flags, build the source, bind, write the ready file, wait for
SIGTERM/SIGINT, shut down. Exit codes: 0 after a clean shutdown, 2 for a bad spec, an unusable
`--listen`, NVML unavailable, a cluster that cannot be read, or a port that cannot be bound; the
reason goes to stderr as one line per problem, prefixed `tidescale exporter:`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from exporter.model import SimParams
from exporter.render import HostnameLabel
from exporter.server import ExporterServer, LoadTarget, MetricSource, TrafficTarget
from exporter.simulator import Simulator
from exporter.spec import load_spec
from exporter.traffic import GatewaySimulator
from kernel import logs
from kernel.clock import SYSTEM_CLOCK
from kernel.errors import PermanentError, TemporaryError

PROG = "tidescale exporter"
DEFAULT_LISTEN = "127.0.0.1:9400"


def add_commands(sub: Any) -> None:
    """Register `exporter` on the `tidescale` subparsers."""
    parser = sub.add_parser(
        "exporter",
        help=(
            "DCGM-compatible GPU metrics for simulated (--simulate SPEC), cluster-following "
            "(--kubeconfig FILE) or real (--nvml) GPUs"
        ),
        description=(
            "Serve dcgm-exporter's metrics on /metrics. With --simulate or --kubeconfig, values follow a "
            "load signal set with PUT /load (JSON {'load': 0..1} plus an optional node, uuid, "
            "namespace+pod or namespace+deployment); GET /load lists the loads. With --kubeconfig, the "
            "GPUs are the cluster's (nodes with nvidia.com/gpu capacity), labelled with the pods that "
            "hold them, and a load set for a deployment also reaches its pods created later. Both also "
            "simulate an inference gateway: PUT /traffic (JSON {'service', 'namespace', 'deployment', "
            "'requestsPerSecond'} plus optional token counts and capacity) serves gateway_* series for the "
            "service and drives its deployment's GPU load; GET /traffic lists the services."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--simulate", metavar="SPEC", type=Path, help="YAML describing nodes, GPUs and pods")
    source.add_argument(
        "--kubeconfig",
        metavar="FILE",
        type=Path,
        help="simulate the GPUs of this cluster's nodes, allocated to its pods (watched)",
    )
    source.add_argument("--nvml", action="store_true", help="read real GPUs through NVML (pip extra 'nvml')")
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=DEFAULT_LISTEN,
        help=f"address to bind (default {DEFAULT_LISTEN}); port 0 picks a free port",
    )
    parser.add_argument(
        "--ready-file",
        metavar="PATH",
        type=Path,
        help='once serving, write {"url": ..., "pid": ...} here (atomically)',
    )
    parser.add_argument(
        "--interval",
        metavar="SECONDS",
        type=float,
        default=1.0,
        help="collection interval (default 1; dcgm-exporter's is 30)",
    )
    parser.add_argument(
        "--old-hostname-label",
        action="store_true",
        help="label the node 'Hostname' as dcgm-exporter up to 4.x did, instead of 'hostname'",
    )
    logs.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, args.log_format)
    try:
        host, port = parse_listen(args.listen)
        if not args.interval > 0:
            raise PermanentError(f"--interval must be above 0 seconds, got {args.interval}")
        source, load_target, close = _source(args)
    except PermanentError as e:
        return _fail(str(e))
    # a simulated source has a simulated gateway in front of its pods
    traffic = GatewaySimulator(source, SYSTEM_CLOCK) if isinstance(source, Simulator) else None
    try:
        return _serve(args, source, load_target, traffic, host, port)
    finally:
        close()


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` or `PORT`; an empty host means 127.0.0.1, never all interfaces."""
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = "", value
    if host.startswith("["):
        raise PermanentError(f"--listen {value}: IPv6 addresses are not supported; use an IPv4 host")
    try:
        port = int(port_text)
    except ValueError:
        raise PermanentError(f"--listen {value}: expected HOST:PORT, the port a number") from None
    if not 0 <= port <= 65535:
        raise PermanentError(f"--listen {value}: port must be within 0..65535")
    return host or "127.0.0.1", port


def _source(args: argparse.Namespace) -> tuple[MetricSource, LoadTarget | None, Callable[[], None]]:
    if args.nvml:
        from exporter.nvml import NvmlSource, NvmlUnavailable

        try:
            nvml = NvmlSource.open()
        except NvmlUnavailable as e:
            raise PermanentError(f"--nvml: {e}") from e
        return nvml, None, nvml.close
    if args.kubeconfig is not None:
        from exporter.cluster import ClusterFollower
        from kernel.kubeclient import api_client

        simulator = Simulator((), SimParams(), SYSTEM_CLOCK, keep_unmatched=True)
        follower = ClusterFollower(api_client(str(args.kubeconfig)), simulator)
        try:
            follower.start()
        except TemporaryError as e:
            raise PermanentError(f"--kubeconfig {args.kubeconfig}: {e}") from e
        return simulator, simulator, follower.stop
    spec = load_spec(args.simulate)
    simulator = Simulator.from_spec(spec, SYSTEM_CLOCK)
    return simulator, simulator, lambda: None


def _serve(
    args: argparse.Namespace,
    source: MetricSource,
    load_target: LoadTarget | None,
    traffic_target: TrafficTarget | None,
    host: str,
    port: int,
) -> int:
    hostname_label: HostnameLabel = "Hostname" if args.old_hostname_label else "hostname"
    try:
        server = ExporterServer(
            source,
            load_target=load_target,
            traffic_target=traffic_target,
            host=host,
            port=port,
            interval_s=args.interval,
            hostname_label=hostname_label,
            clock=SYSTEM_CLOCK,
        )
    except OSError as e:
        return _fail(f"cannot listen on {host}:{port}: {e.strerror or e}")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        try:
            if args.ready_file is not None:
                write_ready_file(args.ready_file, server.url)
        except OSError as e:
            return _fail(f"cannot write ready file {args.ready_file}: {e.strerror or e}")
        print(f"{PROG}: serving on {server.url}/metrics", flush=True)
        stop.wait()
        print(f"{PROG}: shutting down", flush=True)
        return 0
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def write_ready_file(path: Path, url: str) -> None:
    """Write `{"url", "pid"}` to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _fail(message: str) -> int:
    for line in message.splitlines() or [message]:
        print(f"{PROG}: {line}", file=sys.stderr)
    return 2
