"""The controller's HTTP endpoint: the Alertmanager webhook that wakes policies, `/metrics`, `/healthz`.

- `POST /alerts` — Alertmanager's webhook payload (version 4: `{"alerts": [{"status": "firing", "labels":
  {...}}, ...]}`). Each firing alert wakes the policies its labels point at (`scalingpolicy` and
  `namespace`, or `namespace` and the target's name as `deployment`/`statefulset`/`target`); answers 200
  `{"woken": ["ns/name", ...]}`, 400 for a body that is not such a payload.
- `GET /metrics` — the controller's Prometheus metrics (text exposition).
- `GET /healthz` — 200 `ok`; `GET /readyz` — 200 when this replica leads (or runs without election), else 503.

Standard library `http.server`; binds only the host it is given.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024

Find = Callable[[Mapping[str, str]], list[str]]
Wake = Callable[[list[str], str], None]


class ControllerHTTP:
    """Binds at construction (a taken port fails early, as OSError); serves after `start()`."""

    def __init__(
        self,
        host: str,
        port: int,
        find: Find,
        wake: Wake,
        metrics: Callable[[], bytes],
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        outer = self
        self.find, self.wake, self.metrics, self.ready = find, wake, metrics, ready
        self.alerts_received = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

            def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, outer.metrics(), "text/plain; version=0.0.4; charset=utf-8")
                elif self.path == "/healthz":
                    self._send(200, b"ok", "text/plain")
                elif self.path == "/readyz":
                    ok = outer.ready()
                    self._send(200 if ok else 503, b"ok" if ok else b"not leading", "text/plain")
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                if self.path not in ("/alerts", "/api/v2/alerts"):
                    self._send(404, b'{"error": "not found"}')
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._send(413, b'{"error": "body too large"}')
                    return
                try:
                    payload = json.loads(self.rfile.read(length) or b"{}")
                    woken = outer.handle_alerts(payload)
                except (ValueError, TypeError, AttributeError) as e:
                    body = json.dumps({"error": f"not an Alertmanager webhook payload: {e}"}).encode()
                    self._send(HTTPStatus.BAD_REQUEST, body)
                    return
                self._send(200, json.dumps({"woken": woken}).encode())

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def handle_alerts(self, payload: Any) -> list[str]:
        alerts = payload["alerts"] if isinstance(payload, dict) else payload
        if not isinstance(alerts, list):
            raise ValueError("'alerts' is not a list")
        woken: list[str] = []
        for alert in alerts:
            if alert.get("status", "firing") != "firing":
                continue
            labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
            keys = self.find(labels)
            if keys:
                name = labels.get("alertname", "alert")
                self.wake(keys, f"Alertmanager alert {name}")
                woken.extend(k for k in keys if k not in woken)
        self.alerts_received += 1
        return woken

    def start(self) -> ControllerHTTP:
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
