"""One local environment: which components run, where, and how to stop them.

`up` starts the requested components in dependency order and records them in `<state>/state.json`;
`down` stops what that file lists and forgets it; `status` checks each process and endpoint. A component
that fails to start stops the ones already started, so nothing is left running.

A recorded component keeps its ports: one that died, started again by `up` or by `restart`, binds the ports
it had (Kafka both of its listeners, the control plane its API server's and etcd's), so that what its clients
were given (a bootstrap address, a Prometheus URL, a kubeconfig, Prometheus' scrape target for the exporter)
stays true. A kept port someone else took is an error naming the port and, when known, the process; `down`
forgets the ports with the rest. `exports` is what `tidescale local env` prints for a shell to `eval`.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tidescale.local import crds, exporter, kafka, kubernetes, nodes, prometheus
from tidescale.local.process import (
    ComponentError,
    Spawned,
    SpawnHook,
    ensure_port_free,
    free_port,
    pid_alive,
    port_open,
    stop,
)

COMPONENTS = ("kubernetes", "kafka", "exporter", "prometheus")
ENDPOINT_KEYS = {
    "kafka": "kafka_bootstrap",
    "prometheus": "prometheus_url",
    "exporter": "exporter_url",
    "kubernetes": "kubeconfig",
}
# What `tidescale local env` exports for each component, named as the commands read them (KUBECONFIG,
# TIDESCALE_PROMETHEUS_URL, TIDESCALE_KAFKA_BOOTSTRAP); no command reads the exporter's, it is for
# `curl -X PUT $TIDESCALE_EXPORTER_URL/load`.
EXPORTS = {
    "kubernetes": "KUBECONFIG",
    "kafka": "TIDESCALE_KAFKA_BOOTSTRAP",
    "prometheus": "TIDESCALE_PROMETHEUS_URL",
    "exporter": "TIDESCALE_EXPORTER_URL",
}
STATE_FILE = "state.json"
DEFAULT_SCRAPE_INTERVAL_S = 1.0


def default_state_dir() -> Path:
    return Path(os.environ.get("TIDESCALE_STATE_DIR", ".tidescale/local")).absolute()


@dataclass
class RunningProcess:
    name: str
    pid: int
    log_file: str


@dataclass
class RunningComponent:
    """One component: its processes (in start order), what users connect to, the port that answers, the
    ports a restart binds again (by name), and the options it was started with (for `restart`)."""

    name: str
    processes: list[RunningProcess]
    endpoint: str
    port: int
    ports: dict[str, int] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    # False while it starts: its processes are recorded as they are spawned, so that `local down` stops
    # them even if `local up` is killed before the component is ready.
    ready: bool = True

    def alive(self) -> bool:
        return self.ready and all(pid_alive(p.pid) for p in self.processes)


@dataclass
class Environment:
    state_dir: Path
    components: dict[str, RunningComponent] = field(default_factory=dict)

    def endpoints(self) -> dict[str, str]:
        return {ENDPOINT_KEYS[name]: c.endpoint for name, c in self.components.items() if c.ready}

    @property
    def kafka_bootstrap(self) -> str:
        return self._endpoint("kafka")

    @property
    def prometheus_url(self) -> str:
        return self._endpoint("prometheus")

    @property
    def exporter_url(self) -> str:
        return self._endpoint("exporter")

    @property
    def kubeconfig(self) -> str:
        return self._endpoint("kubernetes")

    def _endpoint(self, name: str) -> str:
        if name not in self.components:
            raise ComponentError(name, f"not started in this environment ({self.state_dir})")
        if not self.components[name].ready:
            raise ComponentError(name, f"still starting, or its start was stopped ({self.state_dir})")
        return self.components[name].endpoint

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {"components": {n: asdict(c) for n, c in self.components.items()}}
        tmp = self.state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.state_dir / STATE_FILE)

    @classmethod
    def load(cls, state_dir: Path) -> Environment:
        path = state_dir / STATE_FILE
        if not path.exists():
            return cls(state_dir)
        data = json.loads(path.read_text())
        components = {
            name: RunningComponent(
                name,
                [RunningProcess(**p) for p in c["processes"]],
                c["endpoint"],
                int(c["port"]),
                {k: int(v) for k, v in (c.get("ports") or {}).items()},
                {k: str(v) for k, v in (c.get("options") or {}).items()},
                bool(c.get("ready", True)),
            )
            for name, c in data["components"].items()
        }
        return cls(state_dir, components)


def parse_components(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise ComponentError(unknown[0], f"no such component (known: {', '.join(COMPONENTS)})")
    return [n for n in COMPONENTS if n in names]  # start order


def up(
    components: list[str],
    state_dir: Path,
    gpu_spec: Path | None = None,
    scrape: list[prometheus.ScrapeTarget] | None = None,
    scrape_interval_s: float | None = None,
    node_pools: list[nodes.NodePoolSpec] | None = None,
) -> Environment:
    """Start the components not yet running in `state_dir` (a recorded one that died on its kept ports, with
    the options it had unless given others) and create the KWOK node pools; on any failure stop what this
    call started."""
    env = Environment.load(state_dir)
    before: dict[str, RunningComponent] = {}  # the records of the components this call starts again
    started: list[str] = []
    try:
        for name in components:
            previous = env.components.get(name)
            if previous is not None:
                if previous.alive():
                    continue
                for process in reversed(previous.processes):  # what is left of it (or of a stopped start)
                    stop(process.pid, process.name)
                if previous.ready:
                    before[name] = previous
            options = dict(previous.options) if previous is not None else {}
            if gpu_spec is not None and name == "exporter":
                options["gpu_spec"] = str(gpu_spec)
            if scrape_interval_s is not None and name == "prometheus":
                options["scrape_interval_s"] = f"{scrape_interval_s:g}"
            kept = previous.ports if previous is not None else {}
            started.append(name)
            on_spawn = _record_while_starting(env, name, kept, options)
            env.components[name] = _start_one(name, env, options, kept, scrape or [], on_spawn)
            env.save()
        if node_pools:
            kubeconfig = env.kubeconfig
            for pool in node_pools:
                missing = pool.count - len(nodes.existing(kubeconfig, pool.name))
                if missing > 0:
                    nodes.add(kubeconfig, pool, missing)
    except BaseException:
        for name in reversed(started):
            for process in reversed(env.components.pop(name).processes):
                stop(process.pid, process.name)  # a no-op for those the component's own start stopped
            if name in before:  # recorded again as it was (stopped), with its ports
                env.components[name] = before[name]
        env.save()
        raise
    return env


def restart(name: str, state_dir: Path) -> Environment:
    """Stop a recorded component (if it runs) and start it again on its ports, with its options."""
    env = Environment.load(state_dir)
    if name not in env.components:
        recorded = ", ".join(env.components) or "none"
        raise ComponentError(
            name,
            f"not recorded in {state_dir} (recorded: {recorded}): "
            f"start it with `tidescale local up --components {name}`",
        )
    for process in reversed(env.components[name].processes):
        stop(process.pid, process.name)
    return up([name], state_dir)


def exports(env: Environment, bin_dir: str, path: str = "") -> dict[str, str]:
    """The variables `tidescale local env` exports: each running component's endpoint under the name the
    commands read, the state directory (so that they find this environment), and PATH with `bin_dir` (where
    `tidescale` is) first, unless `path` already has it."""
    out = {
        EXPORTS[name]: c.endpoint
        for name in COMPONENTS
        if (c := env.components.get(name)) is not None and c.alive()
    }
    out["TIDESCALE_STATE_DIR"] = str(env.state_dir)
    if bin_dir not in path.split(os.pathsep):
        out["PATH"] = f"{bin_dir}{os.pathsep}{path}" if path else bin_dir
    return out


def export_lines(variables: dict[str, str], path: str = "") -> list[str]:
    """`export NAME=value` lines for a POSIX shell to `eval`; a PATH that is `path` with directories put
    first is written as those directories and `"$PATH"`, for the shell to expand."""
    lines = []
    rest = os.pathsep + path
    for key, value in variables.items():
        if key == "PATH" and path and value.endswith(rest):
            lines.append(f'export PATH={shlex.quote(value.removesuffix(rest))}{os.pathsep}"$PATH"')
        else:
            lines.append(f"export {key}={shlex.quote(value)}")
    return lines


def _record_while_starting(
    env: Environment, name: str, kept: dict[str, int], options: dict[str, str]
) -> SpawnHook:
    """Record `name` as starting (no endpoint yet), and each of its processes as it is spawned."""
    record = RunningComponent(name, [], "", 0, dict(kept), dict(options), ready=False)
    env.components[name] = record
    env.save()

    def spawned(process: Spawned) -> None:
        record.processes.append(RunningProcess(process.component, process.pid, str(process.log_file)))
        env.save()

    return spawned


def _record(
    name: str,
    processes: list[Spawned],
    endpoint: str,
    port: int,
    ports: dict[str, int],
    options: dict[str, str],
) -> RunningComponent:
    return RunningComponent(
        name,
        [RunningProcess(p.component, p.pid, str(p.log_file)) for p in processes],
        endpoint,
        port,
        ports,
        options,
    )


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def _check_kept(name: str, kept: dict[str, int], state_dir: Path) -> None:
    """A kept port someone else took is an error: moving would break the clients that were given it."""
    for port in kept.values():
        ensure_port_free(
            name,
            port,
            why=(
                f"; {name} had this port before and keeps it, so that its clients keep working: stop that "
                f"process, or `tidescale local down --state-dir {state_dir}` to forget the ports"
            ),
        )


def _start_one(
    name: str,
    env: Environment,
    options: dict[str, str],
    kept: dict[str, int],
    scrape: list[prometheus.ScrapeTarget],
    on_spawn: SpawnHook | None = None,
) -> RunningComponent:
    _check_kept(name, kept, env.state_dir)
    if name == "kubernetes":
        plane = kubernetes.start(env.state_dir, ports=kept or None, on_spawn=on_spawn)
        try:
            # tidescale's own resources exist from the start, as `helm install` creates them from crds/.
            crds.install(plane.kubeconfig, crds.tidescale_crds())
        except BaseException:
            for process in reversed(plane.processes):
                stop(process.pid, process.component)
            raise
        return _record(
            name, list(plane.processes), str(plane.kubeconfig), _port(plane.server), plane.ports, options
        )
    if name == "kafka":
        ports = kafka.KafkaPorts(kept.get("broker") or free_port(), kept.get("controller") or free_port())
        process, bootstrap = kafka.start(env.state_dir, ports, on_spawn=on_spawn)
        named = {"broker": ports.broker, "controller": ports.controller}
        return _record(name, [process], bootstrap, ports.broker, named, options)
    if name == "exporter":
        # With a cluster (started before the exporter), the GPUs are its nodes' and the pods' as they come
        # and go, as dcgm-exporter reports them; an explicit GPU spec still wins.
        port = kept.get("http") or free_port()
        if "gpu_spec" not in options and "kubernetes" in env.components:
            kubeconfig = env.components["kubernetes"].endpoint
            process, url = exporter.start(env.state_dir, port=port, kubeconfig=kubeconfig, on_spawn=on_spawn)
        else:
            spec = Path(options["gpu_spec"]) if "gpu_spec" in options else None
            process, url = exporter.start(env.state_dir, spec, port=port, on_spawn=on_spawn)
        running = env.components.get("prometheus")
        if running is not None and running.alive():  # a Prometheus started before it scrapes it too
            target = prometheus.ScrapeTarget("dcgm-exporter", url.removeprefix("http://"))
            prometheus.add_scrape_target(env.state_dir, running.endpoint, target)
        return _record(name, [process], url, _port(url), {"http": _port(url)}, options)
    if name == "prometheus":
        # Started again, it keeps the targets it had (callers add some while it runs); then the ones given.
        targets = prometheus.read_targets(env.state_dir) if kept else []
        if "exporter" in env.components:
            address = env.components["exporter"].endpoint.removeprefix("http://")
            targets.append(prometheus.ScrapeTarget("dcgm-exporter", address))
        targets.extend(scrape)
        latest = {t.job: t for t in targets}  # by job name, the last one given wins
        interval_s = float(options.get("scrape_interval_s", DEFAULT_SCRAPE_INTERVAL_S))
        port = kept.get("http") or free_port()
        process, url = prometheus.start(
            env.state_dir, list(latest.values()), port, interval_s=interval_s, on_spawn=on_spawn
        )
        return _record(name, [process], url, port, {"http": port}, options)
    raise ComponentError(name, f"no such component (known: {', '.join(COMPONENTS)})")


def down(state_dir: Path) -> list[str]:
    """Stop every component recorded in `state_dir` (reverse order); returns the names stopped."""
    env = Environment.load(state_dir)
    stopped = []
    for name in reversed(list(env.components)):
        was_running = [stop(p.pid, p.name) for p in reversed(env.components[name].processes)]
        if any(was_running):
            stopped.append(name)
        del env.components[name]
    env.save()
    return stopped


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pids: list[int]
    running: bool
    reachable: bool
    endpoint: str
    log_files: list[str]


def status(state_dir: Path) -> list[ComponentStatus]:
    env = Environment.load(state_dir)
    result = []
    for name, c in env.components.items():
        running = c.alive()
        result.append(
            ComponentStatus(
                name,
                [p.pid for p in c.processes],
                running,
                running and port_open(c.port),
                c.endpoint,
                [p.log_file for p in c.processes],
            )
        )
    return result
