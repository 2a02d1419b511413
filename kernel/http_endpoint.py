"""A process's small HTTP endpoint: `GET /metrics` (Prometheus text), `/healthz` (200 while it serves),
`/readyz` (200 while `ready()` says so, e.g. while this replica leads), POSTs handed to one callable, and
other GETs offered to one callable that may answer them itself (the controller's web console, its event
stream).

Standard library `http.server`; binds only the host it is given, at construction (a taken port fails early,
as OSError); serves after `start()`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024

# (path, body) -> (status, JSON body)
PostHandler = Callable[[str, bytes], tuple[int, bytes]]
# (path with its query, the request handler) -> whether it answered; it writes the response itself
GetHandler = Callable[[str, BaseHTTPRequestHandler], bool]


class HttpEndpoint:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: Callable[[], bytes],
        ready: Callable[[], bool] = lambda: True,
        post: PostHandler | None = None,
        get: GetHandler | None = None,
    ) -> None:
        outer = self
        self.metrics, self.ready, self.post, self.get = metrics, ready, post, get

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
                elif outer.get is None or not outer.get(self.path, self):
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                if outer.post is None:
                    self._send(404, b'{"error": "not found"}')
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._send(413, b'{"error": "body too large"}')
                    return
                code, body = outer.post(self.path, self.rfile.read(length) if length else b"")
                self._send(code, body)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HttpEndpoint:
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
