"""One local environment: which components run, where, and how to stop them.

`up` starts the requested components in dependency order and records them in `<state>/state.json`;
`down` stops what that file lists; `status` checks each process and endpoint. A component that fails
to start stops the ones already started, so nothing is left running.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tidescale.local import crds, exporter, kafka, kubernetes, nodes, prometheus
from tidescale.local.process import ComponentError, Spawned, pid_alive, port_open, stop

COMPONENTS = ("kubernetes", "kafka", "exporter", "prometheus")
ENDPOINT_KEYS = {
    "kafka": "kafka_bootstrap",
    "prometheus": "prometheus_url",
    "exporter": "exporter_url",
    "kubernetes": "kubeconfig",
}
STATE_FILE = "state.json"


def default_state_dir() -> Path:
    return Path(os.environ.get("TIDESCALE_STATE_DIR", ".tidescale/local")).absolute()


@dataclass
class RunningProcess:
    name: str
    pid: int
    log_file: str


@dataclass
class RunningComponent:
    """One component: its processes (in start order), what users connect to, and the port that answers."""

    name: str
    processes: list[RunningProcess]
    endpoint: str
    port: int

    def alive(self) -> bool:
        return all(pid_alive(p.pid) for p in self.processes)


@dataclass
class Environment:
    state_dir: Path
    components: dict[str, RunningComponent] = field(default_factory=dict)

    def endpoints(self) -> dict[str, str]:
        return {ENDPOINT_KEYS[name]: c.endpoint for name, c in self.components.items()}

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
                name, [RunningProcess(**p) for p in c["processes"]], c["endpoint"], int(c["port"])
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
    scrape_interval_s: float = 1.0,
    node_pools: list[nodes.NodePoolSpec] | None = None,
) -> Environment:
    """Start the components not yet running in `state_dir` and create the KWOK node pools; on any
    failure stop what this call started."""
    env = Environment.load(state_dir)
    for name, running in list(env.components.items()):
        if not running.alive():
            for process in reversed(running.processes):
                stop(process.pid, process.name)
            del env.components[name]
    started: list[str] = []
    try:
        for name in components:
            if name in env.components:
                continue
            env.components[name] = _start_one(name, env, gpu_spec, scrape or [], scrape_interval_s)
            started.append(name)
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
                stop(process.pid, process.name)
        env.save()
        raise
    return env


def _record(name: str, processes: list[Spawned], endpoint: str, port: int) -> RunningComponent:
    return RunningComponent(
        name, [RunningProcess(p.component, p.pid, str(p.log_file)) for p in processes], endpoint, port
    )


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def _start_one(
    name: str,
    env: Environment,
    gpu_spec: Path | None,
    scrape: list[prometheus.ScrapeTarget],
    interval_s: float,
) -> RunningComponent:
    if name == "kubernetes":
        plane = kubernetes.start(env.state_dir)
        try:
            # tidescale's own resources exist from the start, as `helm install` creates them from crds/.
            crds.install(plane.kubeconfig, crds.tidescale_crds())
        except BaseException:
            for process in reversed(plane.processes):
                stop(process.pid, process.component)
            raise
        return _record(name, list(plane.processes), str(plane.kubeconfig), _port(plane.server))
    if name == "kafka":
        process, bootstrap = kafka.start(env.state_dir)
        return _record(name, [process], bootstrap, _port(bootstrap))
    if name == "exporter":
        # With a cluster (started before the exporter), the GPUs are its nodes' and the pods' as they come
        # and go, as dcgm-exporter reports them; an explicit GPU spec still wins.
        if gpu_spec is None and "kubernetes" in env.components:
            process, url = exporter.start(env.state_dir, kubeconfig=env.components["kubernetes"].endpoint)
        else:
            process, url = exporter.start(env.state_dir, gpu_spec)
        return _record(name, [process], url, _port(url))
    if name == "prometheus":
        targets = list(scrape)
        if "exporter" in env.components:
            address = env.components["exporter"].endpoint.removeprefix("http://")
            targets.insert(0, prometheus.ScrapeTarget("dcgm-exporter", address))
        process, url = prometheus.start(env.state_dir, targets, interval_s=interval_s)
        return _record(name, [process], url, _port(url))
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
