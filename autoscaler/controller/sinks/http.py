"""The controller's HTTP endpoint: the Alertmanager webhook that wakes policies, `/metrics`, `/healthz`.

- `POST /alerts` — Alertmanager's webhook payload (version 4: `{"alerts": [{"status": "firing", "labels":
  {...}}, ...]}`). Each firing alert wakes the policies its labels point at (`scalingpolicy` and
  `namespace`, or `namespace` and the target's name as `deployment`/`statefulset`/`target`); answers 200
  `{"woken": ["ns/name", ...]}`, 400 for a body that is not such a payload.
- `GET /metrics` — the controller's Prometheus metrics (text exposition).
- `GET /healthz` — 200 `ok`; `GET /readyz` — 200 when this replica leads (or runs without election), else 503.
- any other `GET` — offered to `get` when given: the web console (`autoscaler.console.server`), its page, API
  and event stream, on the same endpoint.

Standard library `http.server`; binds only the host it is given.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from kernel.http_endpoint import GetHandler, HttpEndpoint

Find = Callable[[Mapping[str, str]], list[str]]
Wake = Callable[[list[str], str], None]


class ControllerHTTP(HttpEndpoint):
    """Binds at construction (a taken port fails early, as OSError); serves after `start()`."""

    def __init__(
        self,
        host: str,
        port: int,
        find: Find,
        wake: Wake,
        metrics: Callable[[], bytes],
        ready: Callable[[], bool] = lambda: True,
        get: GetHandler | None = None,
    ) -> None:
        self.find, self.wake = find, wake
        self.alerts_received = 0
        super().__init__(host, port, metrics, ready, self._post, get)

    def _post(self, path: str, raw: bytes) -> tuple[int, bytes]:
        if path not in ("/alerts", "/api/v2/alerts"):
            return 404, b'{"error": "not found"}'
        try:
            woken = self.handle_alerts(json.loads(raw or b"{}"))
        except (ValueError, TypeError, AttributeError) as e:
            body = json.dumps({"error": f"not an Alertmanager webhook payload: {e}"}).encode()
            return HTTPStatus.BAD_REQUEST, body
        return 200, json.dumps({"woken": woken}).encode()

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
