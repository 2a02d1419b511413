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

from tidescale.local import exporter, kafka, prometheus
from tidescale.local.process import ComponentError, Spawned, pid_alive, port_open, stop

COMPONENTS = ("kafka", "exporter", "prometheus")
STATE_FILE = "state.json"


def default_state_dir() -> Path:
    return Path(os.environ.get("TIDESCALE_STATE_DIR", ".tidescale/local")).absolute()


@dataclass
class RunningComponent:
    name: str
    pid: int
    log_file: str
    endpoint: str


@dataclass
class Environment:
    state_dir: Path
    components: dict[str, RunningComponent] = field(default_factory=dict)

    def endpoints(self) -> dict[str, str]:
        keys = {"kafka": "kafka_bootstrap", "prometheus": "prometheus_url", "exporter": "exporter_url"}
        return {keys[name]: c.endpoint for name, c in self.components.items()}

    @property
    def kafka_bootstrap(self) -> str:
        return self._endpoint("kafka")

    @property
    def prometheus_url(self) -> str:
        return self._endpoint("prometheus")

    @property
    def exporter_url(self) -> str:
        return self._endpoint("exporter")

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
        return cls(state_dir, {n: RunningComponent(**c) for n, c in data["components"].items()})


def parse_components(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise ComponentError(unknown[0], f"no such component (known: {', '.join(COMPONENTS)})")
    return [n for n in COMPONENTS if n in names]  # dependency order


def up(
    components: list[str],
    state_dir: Path,
    gpu_spec: Path | None = None,
    scrape: list[prometheus.ScrapeTarget] | None = None,
    scrape_interval_s: float = 1.0,
) -> Environment:
    """Start the components not yet running in `state_dir`; on any failure stop what this call started."""
    env = Environment.load(state_dir)
    for name, running in list(env.components.items()):
        if not pid_alive(running.pid):
            del env.components[name]
    started: list[Spawned] = []
    try:
        for name in components:
            if name in env.components:
                continue
            process, endpoint = _start_one(name, env, gpu_spec, scrape or [], scrape_interval_s)
            started.append(process)
            env.components[name] = RunningComponent(name, process.pid, str(process.log_file), endpoint)
            env.save()
    except BaseException:
        for process in reversed(started):
            stop(process.pid, process.component)
            env.components.pop(process.component, None)
        env.save()
        raise
    return env


def _start_one(
    name: str,
    env: Environment,
    gpu_spec: Path | None,
    scrape: list[prometheus.ScrapeTarget],
    interval_s: float,
) -> tuple[Spawned, str]:
    if name == "kafka":
        return kafka.start(env.state_dir)
    if name == "exporter":
        return exporter.start(env.state_dir, gpu_spec)
    if name == "prometheus":
        targets = list(scrape)
        if "exporter" in env.components:
            address = env.components["exporter"].endpoint.removeprefix("http://")
            targets.insert(0, prometheus.ScrapeTarget("dcgm-exporter", address))
        return prometheus.start(env.state_dir, targets, interval_s=interval_s)
    raise ComponentError(name, f"no such component (known: {', '.join(COMPONENTS)})")


def down(state_dir: Path) -> list[str]:
    """Stop every component recorded in `state_dir` (reverse order); returns the names stopped."""
    env = Environment.load(state_dir)
    stopped = []
    for name in reversed(list(env.components)):
        if stop(env.components[name].pid, name):
            stopped.append(name)
        del env.components[name]
    env.save()
    return stopped


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int
    running: bool
    reachable: bool
    endpoint: str
    log_file: str


def status(state_dir: Path) -> list[ComponentStatus]:
    env = Environment.load(state_dir)
    result = []
    for name, c in env.components.items():
        port = int(c.endpoint.rsplit(":", 1)[1])
        running = pid_alive(c.pid)
        result.append(
            ComponentStatus(name, c.pid, running, running and port_open(port), c.endpoint, c.log_file)
        )
    return result
