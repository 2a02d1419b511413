"""`tidescale local up|down|restart|status|env|nodes|topic|produce|consume`: the local environment from the
command line."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kernel.errors import TidescaleError
from tidescale.local import environment, kafka, nodes
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
    up.add_argument(
        "--scrape-interval", type=float, default=None, help="seconds (default 1, or what Prometheus had)"
    )
    up.add_argument("--gpu-nodes", type=int, default=0, help="KWOK nodes with 8 H100s each, in pool 'gpu'")
    up.add_argument(
        "--nodes", type=Path, default=None, metavar="SPEC", help="KWOK node pools (LocalNodes YAML)"
    )
    up.add_argument("--json", action="store_true", help="print the endpoints as one JSON object, last")
    up.set_defaults(func=_up)

    down = local_sub.add_parser("down", help="stop every component of a state directory")
    down.add_argument("--state-dir", type=Path, default=None)
    down.set_defaults(func=_down)

    node_cmd = local_sub.add_parser(
        "nodes", help="list, add or delete KWOK nodes while the control plane runs"
    )
    node_sub = node_cmd.add_subparsers(dest="nodes_command", required=True, metavar="ACTION")
    node_list = node_sub.add_parser("list", help="nodes by pool")
    node_list.add_argument("--state-dir", type=Path, default=None)
    node_list.set_defaults(func=_nodes_list)
    node_add = node_sub.add_parser(
        "add", help="add nodes to a pool of a LocalNodes spec, or to the 'gpu' pool"
    )
    node_add.add_argument("--state-dir", type=Path, default=None)
    node_add.add_argument(
        "--spec", type=Path, default=None, help="LocalNodes YAML (default: the --gpu-nodes pool)"
    )
    node_add.add_argument("--pool", default="gpu")
    node_add.add_argument("--count", type=int, default=1)
    node_add.set_defaults(func=_nodes_add)
    node_delete = node_sub.add_parser("delete", help="delete nodes by name")
    node_delete.add_argument("names", nargs="+")
    node_delete.add_argument("--state-dir", type=Path, default=None)
    node_delete.set_defaults(func=_nodes_delete)

    topic = local_sub.add_parser("topic", help="create a Kafka topic on the local broker (kept if it exists)")
    topic.add_argument("name")
    topic.add_argument("--partitions", type=int, default=1)
    topic.add_argument(
        "--group",
        default=None,
        help="also commit this consumer group at the start of every partition it has no offset for "
        "(a worker that has read nothing: every record produced from then on is its lag)",
    )
    topic.add_argument("--state-dir", type=Path, default=None)
    topic.set_defaults(func=_topic)

    produce = local_sub.add_parser("produce", help="produce records onto a topic of the local broker")
    produce.add_argument("topic")
    produce.add_argument("--records", type=int, required=True, help="how many")
    produce.add_argument("--size", type=int, default=512, metavar="BYTES", help="each record's (default 512)")
    produce.add_argument("--state-dir", type=Path, default=None)
    produce.set_defaults(func=_produce)

    consume = local_sub.add_parser(
        "consume", help="read a topic as a consumer group and commit what was read, as a worker does"
    )
    consume.add_argument("topic")
    consume.add_argument("--group", required=True)
    how_far = consume.add_mutually_exclusive_group(required=True)
    how_far.add_argument(
        "--to-end", action="store_true", help="everything: commit the end of every partition"
    )
    how_far.add_argument("--records", type=int, help="at most this many, from the group's committed offsets")
    consume.add_argument("--state-dir", type=Path, default=None)
    consume.set_defaults(func=_consume)

    restart = local_sub.add_parser(
        "restart", help="stop a component and start it again on the same ports, with the same options"
    )
    restart.add_argument("component", choices=environment.COMPONENTS)
    restart.add_argument("--state-dir", type=Path, default=None)
    restart.set_defaults(func=_restart)

    env = local_sub.add_parser(
        "env",
        help="print `export` lines for the running components, to eval",
        description=(
            'eval "$(tidescale local env)" exports KUBECONFIG, TIDESCALE_KAFKA_BOOTSTRAP, '
            "TIDESCALE_PROMETHEUS_URL and TIDESCALE_EXPORTER_URL for the components that run, "
            "TIDESCALE_STATE_DIR, and puts the directory of this tidescale first on PATH"
        ),
    )
    env.add_argument("--state-dir", type=Path, default=None)
    env.add_argument("--json", action="store_true", help="the variables as one JSON object instead")
    env.set_defaults(func=_env)

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


def node_pools(args: argparse.Namespace) -> list[nodes.NodePoolSpec]:
    pools = list(nodes.load(args.nodes).pools) if args.nodes else []
    if args.gpu_nodes:
        pools.append(nodes.gpu_pool(args.gpu_nodes))
    return pools


def _kubeconfig(args: argparse.Namespace) -> str:
    return environment.Environment.load(_state_dir(args)).kubeconfig


def _nodes_list(args: argparse.Namespace) -> int:
    for name in nodes.existing(_kubeconfig(args)):
        print(name)
    return 0


def _nodes_add(args: argparse.Namespace) -> int:
    try:
        if args.spec:
            pools = {p.name: p for p in nodes.load(args.spec).pools}
            if args.pool not in pools:
                raise TidescaleError(f"{args.spec}: no pool {args.pool!r} (known: {', '.join(pools)})")
            pool = pools[args.pool]
        else:
            pool = nodes.gpu_pool(args.count, args.pool)
        added = nodes.add(_kubeconfig(args), pool, args.count)
    except (TidescaleError, TimeoutError) as exc:
        print(f"tidescale local nodes add: {exc}", file=sys.stderr)
        return 1
    print("added:", ", ".join(added))
    return 0


def _nodes_delete(args: argparse.Namespace) -> int:
    nodes.delete(_kubeconfig(args), args.names)
    print("deleted:", ", ".join(args.names))
    return 0


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir).absolute() if args.state_dir else environment.default_state_dir()


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM during `local up` unwinds like Ctrl-C: what this call started is stopped, not left behind."""
    raise SystemExit(128 + signum)


def _up(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        names = environment.parse_components(args.components)
        scrape = [parse_scrape(s) for s in args.scrape]
        pools = node_pools(args)
        if pools and "kubernetes" not in names:
            raise TidescaleError("--gpu-nodes/--nodes need the kubernetes component")
        env = environment.up(names, state_dir, args.gpu_spec, scrape, args.scrape_interval, pools)
    except (TidescaleError, TimeoutError) as exc:
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


def _topic(args: argparse.Namespace) -> int:
    try:
        if args.partitions < 1:
            raise TidescaleError(f"--partitions {args.partitions}: at least 1")
        bootstrap = environment.Environment.load(_state_dir(args)).kafka_bootstrap
        created = kafka.create_topic(bootstrap, args.name, args.partitions)
        print(f"topic {args.name}: {'created' if created else 'exists'} on {bootstrap}")
        if args.group:
            registered = kafka.register_group(bootstrap, args.name, args.group)
            lag = _lag(bootstrap, args.name, args.group)
            if registered:
                print(f"group {args.group}: committed at the start of {registered} partitions; {lag}")
            else:
                print(f"group {args.group}: has an offset on every partition already; {lag}")
    except (TidescaleError, TimeoutError) as exc:
        print(f"tidescale local topic: {exc}", file=sys.stderr)
        return 1
    return 0


def _produce(args: argparse.Namespace) -> int:
    try:
        if args.records < 0 or args.size < 1:
            raise TidescaleError("--records must be 0 or more and --size at least 1")
        bootstrap = environment.Environment.load(_state_dir(args)).kafka_bootstrap
        done = kafka.produce(bootstrap, args.topic, args.records, args.size)
    except (TidescaleError, TimeoutError) as exc:
        print(f"tidescale local produce: {exc}", file=sys.stderr)
        return 1
    print(
        f"produced {done.records} records of {args.size} bytes onto {args.topic} ({done.partitions} "
        f"partitions) on {bootstrap} in {done.seconds:.1f} s"
    )
    return 0


def _consume(args: argparse.Namespace) -> int:
    try:
        if args.records is not None and args.records < 0:
            raise TidescaleError(f"--records {args.records}: 0 or more")
        bootstrap = environment.Environment.load(_state_dir(args)).kafka_bootstrap
        kafka.partition_count(bootstrap, args.topic)  # a missing topic is an error, not an empty read
        if args.to_end:
            read = kafka.commit_to_end(bootstrap, args.topic, args.group)
        else:
            read = kafka.consume(bootstrap, args.topic, args.group, args.records)
        lag = _lag(bootstrap, args.topic, args.group)
        print(f"group {args.group}: consumed {read} records of {args.topic}; {lag}")
    except (TidescaleError, TimeoutError) as exc:
        print(f"tidescale local consume: {exc}", file=sys.stderr)
        return 1
    return 0


def _lag(bootstrap: str, topic: str, group: str) -> str:
    lag, uncommitted = kafka.group_lag(bootstrap, topic, group)
    return f"lag {lag}" + (f" ({uncommitted} partitions with no offset)" if uncommitted else "")


def _restart(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    try:
        env = environment.restart(args.component, state_dir)
    except (TidescaleError, TimeoutError) as exc:
        print(f"tidescale local restart: {exc}", file=sys.stderr)
        return 1
    print(f"{args.component} restarted: {env.components[args.component].endpoint}")
    return 0


def _env(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    env = environment.Environment.load(state_dir)
    path = os.environ.get("PATH", "")
    # The directory of this interpreter holds the `tidescale` script of its environment (a venv's bin/);
    # not resolved: a venv's python is a link to the base interpreter, elsewhere.
    variables = environment.exports(env, str(Path(sys.executable).parent), path)
    if args.json:
        print(json.dumps(variables))
    else:
        print("\n".join(environment.export_lines(variables, path)))
    stopped = [name for name, c in env.components.items() if not c.alive()]
    if not env.components:
        print(f"# nothing recorded in {state_dir}: start it with `tidescale local up`", file=sys.stderr)
    elif stopped:
        print(
            f"# not running, left out: {', '.join(stopped)} (`tidescale local restart NAME`)", file=sys.stderr
        )
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
