"""The exporter's HTTP server: `/metrics`, `/healthz`, and (simulation only) the load signal `/load` and the
simulated gateway's traffic `/traffic`.

A collector thread reads the source (and the gateway, first: its traffic sets GPU loads) every `interval`
seconds and publishes the rendered text; scrapes serve the latest text. A load or traffic change re-collects
at once, so the next scrape shows it. Binds only the host it is given. Standard library `http.server`
(ThreadingHTTPServer); the clock is injected.

Endpoints:
- `GET /metrics` → 200, Prometheus text 0.0.4.
- `GET /healthz` → 200 `ok`.
- `GET /load` → 200 `{"loads": {"<GPU- or MIG- UUID>": 0.8, …}}`.
- `PUT /load` with `{"load": 0.8[, "node"|"uuid"|"namespace"[, "pod"|"deployment"]]}` → 200
  `{"load": 0.8, "uuids": [...]}`; 400 `{"error": …}` for a bad body; 404 `{"error": …}` when the
  selector matches no GPU. Without a load target (`--nvml`), `/load` answers 404.
- `GET /traffic` → 200 `{"services": [{"service": …, "requestsPerSecond": …, "replicas": 2, "queue": 0,
  "load": 0.6, …}, …]}`.
- `PUT /traffic` with `{"service": "vllm-code", "namespace": "ml", "deployment": "vllm-code",
  "requestsPerSecond": 40[, "promptTokens": 2048, "generatedTokens": 64, "prefillTokensPerSecond": 8000,
  "decodeTokensPerSecond": 1500, "replicaRequestsPerSecond": …, "maxQueue": 10000]}` → 200, the service as
  `GET` lists it; 400 `{"error": …}` for a bad body. `requestsPerSecond: 0` stops the arrivals (the queue
  still drains, the series stay). From then on `/metrics` also serves the gateway's series for the service
  (`gateway_requests_total`, `gateway_prompt_tokens_total`, `gateway_generated_tokens_total` counters and the
  `gateway_queue_depth` gauge, label `service`), and while its requests arrive or wait the GPU load of the
  Deployment's pods follows them, overriding `PUT /load` for that Deployment (`exporter.gateway`,
  `exporter.traffic`). Without a traffic target (`--nvml`), `/traffic` answers 404.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from exporter.gateway import BadTrafficRequest, TrafficRequest, parse_traffic_request
from exporter.reading import Reading
from exporter.render import CONTENT_TYPE, HostnameLabel, render
from exporter.selector import BadLoadRequest, LoadRequest, NoMatch, parse_load_request
from kernel.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
JOIN_TIMEOUT_S = 5.0
# How often serve_forever looks for a shutdown request: the bound on how long stop() waits for it.
SHUTDOWN_POLL_S = 0.1


class MetricSource(Protocol):
    def collect(self) -> Sequence[Reading]: ...


class LoadTarget(Protocol):
    def set_load(self, request: LoadRequest) -> tuple[str, ...]: ...
    def loads(self) -> Mapping[str, float]: ...


class TrafficTarget(Protocol):
    def set_traffic(self, request: TrafficRequest) -> None: ...
    def traffic(self) -> Sequence[Mapping[str, Any]]: ...
    def collect_text(self) -> str: ...


class ExporterServer:
    """Binds at construction (so a taken port fails early, as `OSError`); serves after `start()`."""

    def __init__(
        self,
        source: MetricSource,
        *,
        load_target: LoadTarget | None = None,
        traffic_target: TrafficTarget | None = None,
        host: str = "127.0.0.1",
        port: int = 9400,
        interval_s: float = 1.0,
        hostname_label: HostnameLabel = "hostname",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._source = source
        self._load_target = load_target
        self._traffic_target = traffic_target
        self._interval_s = interval_s
        self._hostname_label = hostname_label
        self._clock = clock
        self._collect_lock = threading.Lock()
        self._stop = threading.Event()
        self._text = b""
        self._threads: list[threading.Thread] = []
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.exporter = self

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def collect_now(self) -> None:
        """Read the source and publish the rendered text; serialised, so publications stay in order."""
        with self._collect_lock:
            # the gateway first: its traffic sets the GPU loads the source then reads
            traffic = self._traffic_target.collect_text() if self._traffic_target is not None else ""
            readings = self._source.collect()
            collected_at = self._clock.now().timestamp()
            text = render(readings, hostname_label=self._hostname_label, collected_at=collected_at)
            self._text = (text + traffic).encode()

    def start(self) -> None:
        self.collect_now()
        self._threads = [
            threading.Thread(
                target=self._httpd.serve_forever, args=(SHUTDOWN_POLL_S,), name="exporter-http", daemon=True
            ),
            threading.Thread(target=self._collect_loop, name="exporter-collector", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._threads:
            self._httpd.shutdown()  # returns once serve_forever has left its loop
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT_S)

    def __enter__(self) -> ExporterServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _collect_loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.collect_now()
            except Exception:  # unexpected: keep serving the last good text, keep collecting
                log.exception("collection failed; serving the previous values")

    # request handling, called from the handler threads
    def handle(self, method: str, path: str, body: bytes | None) -> tuple[HTTPStatus, str, bytes]:
        if path == "/metrics":
            if method != "GET":
                return _json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET /metrics"})
            return HTTPStatus.OK, CONTENT_TYPE, self._text
        if path == "/healthz":
            return HTTPStatus.OK, "text/plain; charset=utf-8", b"ok\n"
        if path == "/load":
            return self._load(method, body)
        if path == "/traffic":
            return self._traffic(method, body)
        return _json(
            HTTPStatus.NOT_FOUND,
            {"error": f"no endpoint {path} (known: /metrics, /healthz, /load, /traffic)"},
        )

    def _load(self, method: str, body: bytes | None) -> tuple[HTTPStatus, str, bytes]:
        target = self._load_target
        if target is None:
            return _json(HTTPStatus.NOT_FOUND, {"error": "no load signal: this exporter reads real GPUs"})
        if method == "GET":
            return _json(HTTPStatus.OK, {"loads": dict(target.loads())})
        if method != "PUT":
            return _json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET or PUT /load"})
        try:
            request = parse_load_request(body or b"")
            uuids = target.set_load(request)
        except BadLoadRequest as e:
            return _json(HTTPStatus.BAD_REQUEST, {"error": f"bad load request: {e}"})
        except NoMatch as e:
            return _json(HTTPStatus.NOT_FOUND, {"error": str(e)})
        try:
            self.collect_now()
        except Exception:
            log.exception("collection after a load change failed; the collector will retry")
        return _json(HTTPStatus.OK, {"load": request.load, "uuids": list(uuids)})

    def _traffic(self, method: str, body: bytes | None) -> tuple[HTTPStatus, str, bytes]:
        target = self._traffic_target
        if target is None:
            why = "no simulated gateway: this exporter reads real GPUs"
            return _json(HTTPStatus.NOT_FOUND, {"error": why})
        if method == "GET":
            return _json(HTTPStatus.OK, {"services": [dict(s) for s in target.traffic()]})
        if method != "PUT":
            return _json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET or PUT /traffic"})
        try:
            request = parse_traffic_request(body or b"")
        except BadTrafficRequest as e:
            return _json(HTTPStatus.BAD_REQUEST, {"error": f"bad traffic request: {e}"})
        target.set_traffic(request)
        try:
            self.collect_now()
        except Exception:
            log.exception("collection after a traffic change failed; the collector will retry")
        current = {s["service"]: s for s in target.traffic()}
        return _json(HTTPStatus.OK, dict(current[request.service]))


def _json(status: HTTPStatus, body: Mapping[str, Any]) -> tuple[HTTPStatus, str, bytes]:
    return status, "application/json", (json.dumps(body) + "\n").encode()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    exporter: ExporterServer


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "tidescale-exporter"

    def do_GET(self) -> None:
        self._dispatch("GET", read_body=False)

    def do_PUT(self) -> None:
        self._dispatch("PUT", read_body=True)

    def do_POST(self) -> None:
        self._dispatch("POST", read_body=True)

    def do_DELETE(self) -> None:
        self._dispatch("DELETE", read_body=False)

    def _dispatch(self, method: str, *, read_body: bool) -> None:
        body: bytes | None = None
        if read_body:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self._send(
                    *_json(HTTPStatus.BAD_REQUEST, {"error": f"body must be 0..{MAX_BODY_BYTES} bytes"})
                )
                return
            body = self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        try:
            self._send(*self.server.exporter.handle(method, path, body))
        except Exception:
            log.exception("%s %s failed", method, path)
            self._send(
                *_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error; see the exporter's log"})
            )

    def _send(self, status: HTTPStatus, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)
