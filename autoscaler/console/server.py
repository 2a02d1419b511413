"""The web console's shell: its HTTP routes, the cluster reads behind the GPU, application and queue views,
and the standalone `tidescale console`.

Routes (GET; JSON unless said, gzip when the client accepts it):
- `/` — the one page (`page.html`: inline CSS and JS, no dependency, an SVG chart);
- `/api/policies?q=&offset=&limit=&sort=name|recent|gap` — one page of ScalingPolicies and a summary of all;
- `/api/chart?policy=NS/NAME` — the policy's replicas and what its metrics asked for, over the last hour;
- `/api/cluster` — `{"nodes", "jobs", "queues"}` together (also one by one: `/api/nodes`, `/api/jobs`,
  `/api/queues`);
- `/api/events` — the recent scaling events; `/api/events/stream` — `text/event-stream`: the last events,
  then each one as it is emitted (`event: scaling`, with an `id:` a reconnect resumes after), and notices
  (`event: policies`, `event: cluster`) when the rows or the cluster views changed.

`Console` is what the controller serves on its own HTTP endpoint (`autoscaler.controller.wiring`): its hub is
one of the controller's event sinks, so the controller's decisions reach the page with no polling, and its
rows follow the controller's ScalingPolicy informer and, for the chart, its last decisions sampled every
`sample_seconds`. `Standalone` is `tidescale console --kubeconfig K`: the same console with its own informer
on ScalingPolicies and its events read back from Kubernetes Events (a watch on the Events the controller
reports, `autoscaler.controller.sinks.kube_events.watch`), which needs nothing but the API server.

The GPU nodes and applications are `tidescale top node` and `top job` (`jobs.launcher.top`,
`jobs.launcher.views`), read at most every `cluster_seconds` while somebody looks; the queues are the
pending pods ordered by the scheduler's own queue policies (`autoscaler.console.model.queues`).
"""

from __future__ import annotations

import gzip
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from autoscaler.console import model
from autoscaler.console.hub import ConsoleHub, Subscription
from autoscaler.controller.kube import api as kube
from autoscaler.controller.sinks import kube_events
from autoscaler.core.decide import Decision
from jobs.launcher import top, views
from jobs.launcher.client import Kube, list_jobs
from kernel.clock import SYSTEM_CLOCK, Clock
from kernel.errors import TemporaryError
from kernel.http_endpoint import HttpEndpoint
from kernel.informer import Informer
from kernel.kubeclient import api_client

log = logging.getLogger(__name__)

PING_SECONDS = 15.0  # a comment line on an idle stream, so that proxies and the browser keep it open
GZIP_OVER = 1024


def page() -> bytes:
    return resources.files("autoscaler.console").joinpath("page.html").read_bytes()


class ClusterViews(Protocol):
    def read(self, force: bool = False) -> dict[str, Any]:
        """`{"nodes", "jobs", "queues", "problems"}`, the page's cluster views."""
        ...


class ClusterReader:
    """The GPU node, application and queue views, read from the API server (and DCGM's metrics from
    Prometheus when a URL is given) at most once per `ttl` seconds; a failed read keeps the last views and
    says why in `problems`."""

    def __init__(
        self, api: Any, prometheus_url: str | None = None, clock: Clock = SYSTEM_CLOCK, ttl: float = 5.0
    ) -> None:
        self.api, self.prometheus_url, self.clock, self.ttl = api, prometheus_url, clock, ttl
        self._lock = threading.Lock()
        self._at: float | None = None
        self._views: dict[str, Any] = {
            "nodes": model.nodes(views.ClusterView((), False)),
            "jobs": model.jobs([]),
            "queues": model.queues([], [], []),
            "problems": [],
        }
        self.reads = 0

    def read(self, force: bool = False) -> dict[str, Any]:
        with self._lock:
            now = self.clock.monotonic()
            if force or self._at is None or now - self._at >= self.ttl:
                self._views = self._read()
                self._at = now
                self.reads += 1
            return self._views

    def _read(self) -> dict[str, Any]:
        """1. nodes and live pods (two lists), 2. DCGM's samples (one query per metric), 3. the launcher's
        jobs, 4. PodGroups and Queues; then the pure views. What cannot be read (an RBAC that does not grant
        it, Prometheus down) costs its own view only, and `problems` says why."""
        problems: list[str] = []

        def attempt(what: str, read: Callable[[], Any], default: Any) -> Any:
            try:
                return read()
            except (TemporaryError, ApiException) as e:
                why = f"{e.status} {e.reason}" if isinstance(e, ApiException) else str(e)
                problems.append(f"cannot read {what}: {why}")
                return default

        got = attempt("the nodes and pods", lambda: top.read_cluster(self.api), None)
        if got is None:
            log.warning("console: %s", problems[-1])
            return {**self._views, "problems": problems}
        nodes, pods = got
        metrics = None
        if self.prometheus_url:
            try:
                metrics = top.query_metrics(self.prometheus_url)
            except top.MetricsUnavailable as e:
                problems.append(f"no GPU metrics: {e}")
        found = attempt("the launcher's jobs", lambda: list_jobs(self.api, None), [])
        kube_api = Kube(self.api)
        podgroups = attempt("PodGroups", lambda: kube_api.list("PodGroup", None), [])
        queues = attempt("Queues", lambda: kube_api.list("Queue", None), [])
        cluster = views.node_views(nodes, pods, metrics)
        return {
            "nodes": model.nodes(cluster),
            "jobs": model.jobs(views.job_tops(found, metrics)),
            "queues": model.queues(pods, podgroups, queues),
            "problems": problems + list(cluster.problems),
        }


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


class _BadRequest(ValueError):
    pass


def _int_param(params: Mapping[str, list[str]], name: str, default: int) -> int:
    raw = params.get(name, [str(default)])[-1]
    try:
        return int(raw)
    except ValueError:
        raise _BadRequest(f"{name}: not a whole number: {raw!r}") from None


class ConsoleRoutes:
    """The GET routes (see the module's docstring), as an `HttpEndpoint` GET handler."""

    def __init__(self, hub: ConsoleHub, reader: ClusterViews) -> None:
        self.hub, self.reader = hub, reader
        self._page = page()

    def handle(self, path: str, handler: BaseHTTPRequestHandler) -> bool:
        parts = urlsplit(path)
        params = parse_qs(parts.query)
        route = parts.path.rstrip("/") or "/"
        if route == "/api/events/stream":
            self._stream(handler, params)
            return True
        try:
            answer = self._answer(route, params)
        except _BadRequest as e:
            self._send(handler, 400, _json({"error": str(e)}))
            return True
        if answer is None:
            return False
        code, body, content_type = answer
        self._send(handler, code, body, content_type)
        return True

    def _answer(self, route: str, params: Mapping[str, list[str]]) -> tuple[int, bytes, str] | None:
        as_json = "application/json"
        if route in ("/", "/index.html"):
            return 200, self._page, "text/html; charset=utf-8"
        if route == "/api/policies":
            try:
                body = model.policies_page(
                    self.hub.rows(),
                    params.get("q", [""])[-1],
                    _int_param(params, "offset", 0),
                    _int_param(params, "limit", 50),
                    params.get("sort", ["name"])[-1],
                )
            except ValueError as e:
                raise _BadRequest(str(e)) from None
            return 200, _json(body), as_json
        if route == "/api/chart":
            key = params.get("policy", [""])[-1]
            chart = self.hub.chart(key)
            if chart is None:
                return 404, _json({"error": f"policy: no ScalingPolicy {key!r}"}), as_json
            return 200, _json(chart), as_json
        if route == "/api/events":
            return 200, _json({"events": self.hub.recent(_int_param(params, "limit", 50))}), as_json
        if route in ("/api/cluster", "/api/nodes", "/api/jobs", "/api/queues"):
            views_ = self.reader.read()
            what = route.rsplit("/", 1)[1]
            return 200, _json(views_ if what == "cluster" else views_[what]), as_json
        return None

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, code: int, body: bytes, content_type: str = "") -> None:
        encoding = None
        if len(body) > GZIP_OVER and "gzip" in (handler.headers.get("Accept-Encoding") or ""):
            body, encoding = gzip.compress(body, 6), "gzip"
        try:
            handler.send_response(code)
            handler.send_header("Content-Type", content_type or "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.send_header("Cache-Control", "no-cache")
            if encoding:
                handler.send_header("Content-Encoding", encoding)
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _stream(self, handler: BaseHTTPRequestHandler, params: Mapping[str, list[str]]) -> None:
        """Server-sent events until the client goes or the console closes."""
        raw = handler.headers.get("Last-Event-ID") or params.get("after", [""])[-1]
        after = int(raw) if raw.isdigit() else None
        sub, backlog = self.hub.subscribe(after)
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
            handler.send_header("Cache-Control", "no-cache")
            handler.send_header("X-Accel-Buffering", "no")
            handler.end_headers()
            handler.wfile.write(b"retry: 2000\n\n" + b"".join(backlog))
            self._pump(handler, sub)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        finally:
            self.hub.unsubscribe(sub)

    @staticmethod
    def _pump(handler: BaseHTTPRequestHandler, sub: Subscription) -> None:
        while True:
            try:
                data = sub.frames.get(timeout=PING_SECONDS)
            except queue.Empty:
                handler.wfile.write(b": ping\n\n")
                continue
            if data is None:
                return
            handler.wfile.write(data)


class Console:
    """The console's parts put together: the hub (an `EventSink` and an informer handler), the cluster
    reader, the routes (`handle`, an `HttpEndpoint` GET handler) and a ticker thread that samples the
    controller's last decisions, tells subscribers when rows changed (at most every `notice_seconds`) and,
    while anyone subscribes, re-reads the cluster every `cluster_seconds` and tells them when it changed."""

    def __init__(
        self,
        api: Any,
        prometheus_url: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        decisions: Callable[[], Iterable[Decision]] | None = None,
        sample_seconds: float = 10.0,
        cluster_seconds: float = 5.0,
        notice_seconds: float = 3.0,
    ) -> None:
        self.clock = clock
        self.hub = ConsoleHub(clock)
        self.reader = ClusterReader(api, prometheus_url, clock, ttl=cluster_seconds)
        self.routes = ConsoleRoutes(self.hub, self.reader)
        self.decisions = decisions
        self.sample_seconds, self.cluster_seconds = sample_seconds, cluster_seconds
        self.notice_seconds = notice_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cluster_digest = ""

    # the controller's hooks
    def emit(self, event: Any) -> None:
        self.hub.emit(event)

    def on_policy(self, kind: str, obj: dict[str, Any]) -> None:
        self.hub.on_policy(kind, obj)

    def handle(self, path: str, handler: BaseHTTPRequestHandler) -> bool:
        return self.routes.handle(path, handler)

    def metrics(self) -> bytes:
        """The console's own series (for a standalone console's /metrics)."""
        lines = [
            "# HELP tidescale_console_subscribers Event-stream clients connected now.",
            "# TYPE tidescale_console_subscribers gauge",
            f"tidescale_console_subscribers {self.hub.subscribers}",
            "# HELP tidescale_console_events_total Scaling events received.",
            "# TYPE tidescale_console_events_total counter",
            f"tidescale_console_events_total {self.hub.events_seen}",
        ]
        return ("\n".join(lines) + "\n").encode()

    def start(self) -> Console:
        self._thread = threading.Thread(target=self._tick, name="console", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.hub.close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _tick(self) -> None:
        last_sample = last_notice = last_cluster = float("-inf")
        while not self._stop.wait(0.5):
            now = self.clock.monotonic()
            try:
                if self.decisions is not None and now - last_sample >= self.sample_seconds:
                    last_sample = now
                    self.hub.observe(self.decisions())
                if self.hub.rows_changed.is_set() and now - last_notice >= self.notice_seconds:
                    last_notice = now
                    self.hub.rows_changed.clear()
                    self.hub.notify("policies", {"total": len(self.hub.rows())})
                if self.hub.subscribers and now - last_cluster >= self.cluster_seconds:
                    last_cluster = now
                    digest = json.dumps(self.reader.read(force=True), sort_keys=True)
                    if digest != self._cluster_digest:
                        self._cluster_digest = digest
                        self.hub.notify("cluster", {})
            except Exception:  # the console must not stop on a surprise; the controller goes on
                log.exception("console: tick failed")


class Standalone:
    """`tidescale console`: the console on its own, from the API server alone (policies from an informer,
    events from the Kubernetes Events the controller writes)."""

    def __init__(
        self,
        kubeconfig: str | None,
        host: str = "127.0.0.1",
        port: int = 0,
        prometheus_url: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.api = api_client(kubeconfig, pool=8)
        self.console = Console(self.api, prometheus_url, clock)
        custom = client.CustomObjectsApi(self.api)
        self.policies = Informer(
            "scalingpolicies",
            custom.list_cluster_custom_object,
            (kube.GROUP, kube.VERSION, kube.POLICIES),
            handlers=(self.console.on_policy,),
        )
        self.http = HttpEndpoint(host, port, self.console.metrics, get=self.console.handle)
        self._stop = threading.Event()
        self._events: threading.Thread | None = None
        self.events_ready = threading.Event()
        self.clock = clock

    def start(self, timeout: float = 30) -> Standalone:
        self.http.start()
        self.policies.start().wait_synced(timeout)
        self._events = threading.Thread(target=self._follow, name="console-events", daemon=True)
        self._events.start()
        self.console.start()
        return self

    def _follow(self) -> None:
        """Every scaling Event the controller reported (those already there first), until stopped."""
        first = True
        while not self._stop.is_set():
            try:
                for record in kube_events.watch(
                    self.api,
                    from_beginning=first,
                    on_ready=self.events_ready.set,
                    should_stop=self._stop.is_set,
                ):
                    self.console.hub.on_record(record)
            except TemporaryError as e:
                first = False
                log.warning("console: %s; watching again in 2 s", e)
                self._stop.wait(2.0)

    def stop(self) -> None:
        self._stop.set()
        self.policies.stop()
        self.console.stop()
        self.http.stop()
        if self._events is not None:
            self._events.join(timeout=10)
