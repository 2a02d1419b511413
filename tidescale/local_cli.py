"""`tidescale local up|down|status`: the local environment from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kernel.errors import TidescaleError
from tidescale.local import environment
from tidescale.local.prometheus import ScrapeTarget


def add_commands(sub: Any) -> None:
    local = sub.add_parser("local", help="run Kafka, Prometheus and the simulated GPU exporter on 127.0.0.1")
    local_sub = local.add_subparsers(dest="local_command", required=True, metavar="ACTION")

    up = local_sub.add_parser("up", help="start components in the background")
    up.add_argument(
        "--components",
        default="kafka,prometheus,exporter",
        help=f"comma-separated, of: {', '.join(environment.COMPONENTS)}",
    )
    up.add_argument("--state-dir", type=Path, default=None, help="where state and logs go (.tidescale/local)")
    up.add_argument("--gpu-spec", type=Path, default=None, help="exporter GPU spec YAML (embedded default)")
    up.add_argument(
        "--scrape",
        action="append",
        default=[],
        metavar="JOB=HOST:PORT[/PATH]",
        help="an extra Prometheus scrape target (repeatable)",
    )
    up.add_argument("--scrape-interval", type=float, default=1.0, help="seconds (default 1)")
    up.add_argument("--json", action="store_true", help="print the endpoints as one JSON object, last")
    up.set_defaults(func=_up)

    down = local_sub.add_parser("down", help="stop every component of a state directory")
    down.add_argument("--state-dir", type=Path, default=None)
    down.set_defaults(func=_down)

    status = local_sub.add_parser("status", help="show the components and whether they answer")
    status.add_argument("--state-dir", type=Path, default=None)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)


def parse_scrape(text: str) -> ScrapeTarget:
    job, sep, rest = text.partition("=")
    if not sep or not job or not rest:
        raise TidescaleError(f"--scrape {text!r}: expected JOB=HOST:PORT[/PATH]")
    address, slash, path = rest.partition("/")
    return ScrapeTarget(job, address, "/" + path if slash else "/metrics")


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir).absolute() if args.state_dir else environment.default_state_dir()


def _up(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    try:
        names = environment.parse_components(args.components)
        scrape = [parse_scrape(s) for s in args.scrape]
        env = environment.up(names, state_dir, args.gpu_spec, scrape, args.scrape_interval)
    except TidescaleError as exc:
        print(f"tidescale local up: {exc}", file=sys.stderr)
        return 1
    endpoints = {**env.endpoints(), "state_dir": str(state_dir)}
    if args.json:
        print(json.dumps(endpoints))
    else:
        for key, value in endpoints.items():
            print(f"{key:18} {value}")
        print(f"stop with: tidescale local down --state-dir {state_dir}")
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = environment.down(_state_dir(args))
    print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    return 0


def _status(args: argparse.Namespace) -> int:
    rows = environment.status(_state_dir(args))
    if args.json:
        print(json.dumps([asdict(r) for r in rows]))
        return 0
    if not rows:
        print("no components recorded in", _state_dir(args))
    for row in rows:
        state = "up" if row.reachable else ("running, not answering" if row.running else "stopped")
        pids = ",".join(str(p) for p in row.pids)
        print(f"{row.name:11} {state:24} pid {pids:<12} {row.endpoint:40} logs {', '.join(row.log_files)}")
    return 0 if all(r.reachable for r in rows) else 1
