"""The scheduler's Prometheus metrics and its HTTP endpoint: `GET /metrics`, `/healthz` (200 while the
process serves), `/readyz` (200 while this replica leads, or runs without election). Standard library
`http.server`; binds only the host it is given.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class SchedulerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.cycles = Counter("tidescale_scheduler_cycles", "Scheduling cycles run", registry=r)
        self.bound = Counter("tidescale_scheduler_pods_bound", "Pods bound", registry=r)
        self.bind_errors = Counter(
            "tidescale_scheduler_bind_errors", "Bindings that failed (pod requeued)", ["reason"], registry=r
        )
        self.unschedulable = Counter(
            "tidescale_scheduler_unschedulable", "Pods found unschedulable by a cycle", registry=r
        )
        self.reclaims = Counter(
            "tidescale_scheduler_reclaim_evictions", "Pods evicted to reclaim", registry=r
        )
        self.cycle_seconds = Histogram(
            "tidescale_scheduler_cycle_seconds", "Duration of one cycle", buckets=_LATENCY, registry=r
        )
        self.bind_seconds = Histogram(
            "tidescale_scheduler_bind_seconds",
            "From a cycle's decision to the bind's return",
            buckets=_LATENCY,
            registry=r,
        )
        self.pending = Gauge(
            "tidescale_scheduler_pending_pods", "Pods waiting, per queue", ["queue"], registry=r
        )
        self.leader = Gauge("tidescale_scheduler_leader", "1 while this replica binds", registry=r)
        self.double_booked = Gauge(
            "tidescale_scheduler_double_booked_annotations",
            "Pods whose device annotations would book a device twice (refused)",
            registry=r,
        )

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class MetricsServer:
    """Binds at construction (a taken port fails early, as OSError); serves after `start()`."""

    def __init__(self, host: str, port: int, metrics: Callable[[], bytes], ready: Callable[[], bool]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

            def _send(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
                elif self.path == "/healthz":
                    self._send(200, b"ok")
                elif self.path == "/readyz":
                    ok = ready()
                    self._send(200 if ok else 503, b"ok" if ok else b"not leading")
                else:
                    self._send(404, b"not found")

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> MetricsServer:
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
