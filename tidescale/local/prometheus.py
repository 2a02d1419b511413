"""Prometheus from Debian's package, with a configuration the harness writes and callers extend.

Scrape targets live in `targets.json` beside the config; adding one rewrites the config and asks
the running server to reload (`--web.enable-lifecycle`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from kernel import artefacts
from kernel.errors import PermanentError
from tidescale.local.process import (
    ComponentError,
    Spawned,
    SpawnHook,
    ensure_port_free,
    free_port,
    spawn,
    wait_until,
)

COMPONENT = "prometheus"


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    address: str  # host:port
    path: str = "/metrics"


def render_config(targets: list[ScrapeTarget], interval_s: float) -> str:
    config = {
        "global": {"scrape_interval": f"{interval_s:g}s", "evaluation_interval": f"{interval_s:g}s"},
        "scrape_configs": [
            {
                "job_name": target.job,
                "metrics_path": target.path,
                "static_configs": [{"targets": [target.address]}],
            }
            for target in targets
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def _home(state_dir: Path) -> Path:
    return state_dir / COMPONENT


def read_targets(state_dir: Path) -> list[ScrapeTarget]:
    path = _home(state_dir) / "targets.json"
    if not path.exists():
        return []
    return [ScrapeTarget(**item) for item in json.loads(path.read_text())]


def write_config(state_dir: Path, targets: list[ScrapeTarget], interval_s: float) -> Path:
    home = _home(state_dir)
    home.mkdir(parents=True, exist_ok=True)
    (home / "targets.json").write_text(json.dumps([t.__dict__ for t in targets], indent=2))
    (home / "interval").write_text(f"{interval_s:g}")
    config = home / "prometheus.yml"
    tmp = config.with_suffix(".tmp")
    tmp.write_text(render_config(targets, interval_s))
    tmp.replace(config)
    return config


def start(
    state_dir: Path,
    targets: list[ScrapeTarget],
    port: int | None = None,
    interval_s: float = 1.0,
    timeout: float = 60,
    on_spawn: SpawnHook | None = None,
) -> tuple[Spawned, str]:
    """Start Prometheus on 127.0.0.1; returns the process and its URL once `/-/ready` answers."""
    log_file = state_dir / "logs" / "prometheus.log"
    try:
        binary = artefacts.prometheus_binary()
    except PermanentError as exc:
        raise ComponentError(COMPONENT, str(exc), log_file if log_file.exists() else None) from exc
    port = port or free_port()
    ensure_port_free(COMPONENT, port)
    config = write_config(state_dir, targets, interval_s)
    argv = [
        str(binary),
        f"--config.file={config}",
        f"--storage.tsdb.path={_home(state_dir) / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
    ]
    process = spawn(COMPONENT, argv, log_file, on_spawn=on_spawn)
    url = f"http://127.0.0.1:{port}"
    wait_until(process, lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200, timeout, "ready")
    return process, url


def add_scrape_target(state_dir: Path, url: str, target: ScrapeTarget) -> None:
    """Add (or replace, by job name) a scrape target on a running Prometheus and reload it."""
    targets = [t for t in read_targets(state_dir) if t.job != target.job] + [target]
    _rewrite(state_dir, url, targets, f"adding {target.job}")


def remove_scrape_target(state_dir: Path, url: str, job: str) -> None:
    """Stop scraping `job` (a process that is gone) on a running Prometheus and reload it."""
    targets = read_targets(state_dir)
    if any(t.job == job for t in targets):
        _rewrite(state_dir, url, [t for t in targets if t.job != job], f"removing {job}")


def _rewrite(state_dir: Path, url: str, targets: list[ScrapeTarget], what: str) -> None:
    interval_file = _home(state_dir) / "interval"
    interval_s = float(interval_file.read_text()) if interval_file.exists() else 1.0
    write_config(state_dir, targets, interval_s)
    try:
        response = httpx.post(f"{url}/-/reload", timeout=10)
    except httpx.HTTPError as exc:
        raise ComponentError(COMPONENT, f"reload after {what} failed: {exc}") from exc
    if response.status_code != 200:
        raise ComponentError(COMPONENT, f"reload after {what} refused: {response.text.strip()}")


def query(url: str, promql: str, timeout: float = 5) -> list[dict[str, object]]:
    """An instant PromQL query; returns the `result` list of the API's answer."""
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=timeout)
    response.raise_for_status()
    body = response.json()
    if body.get("status") != "success":
        raise ComponentError(COMPONENT, f"query {promql!r} failed: {body.get('error')}")
    result: list[dict[str, object]] = body["data"]["result"]
    return result
