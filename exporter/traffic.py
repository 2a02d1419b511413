"""The simulated gateway as the exporter's traffic target: the pure `gateway` behind a lock and a clock, its
replicas counted from the simulator's devices, and its Deployments' GPU loads set on the simulator.

Each collection (`collect_text`) 1. counts each service's replicas: the pods of its Deployment that hold a
simulated GPU; 2. advances the gateway by the time since the last collection; 3. sets the GPU load of each
busy service's Deployment (requests arrive or wait) on the simulator, and 0 once when a service stops being
busy; 4. renders the gateway's series.

Precedence with `PUT /load`: while a service is busy its load wins — a `PUT /load` for its Deployment is
overridden by the collection that follows it, at once; once the service is idle (its load set to 0) the
gateway leaves the Deployment's load alone, and `PUT /load` sets it again.

Thread-safe (the HTTP server calls it from its threads). Reads time only through the injected `Clock`; does
no other I/O.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Protocol

from exporter import gateway
from exporter.gateway import GatewayState, TrafficRequest
from exporter.model import SimDevice
from exporter.selector import LoadRequest, NoMatch, deployment_pods
from kernel.clock import Clock


class Devices(Protocol):
    """The part of `exporter.simulator.Simulator` the gateway uses."""

    @property
    def devices(self) -> tuple[SimDevice, ...]: ...
    def set_load(self, request: LoadRequest) -> tuple[str, ...]: ...


class GatewaySimulator:
    def __init__(self, simulator: Devices, clock: Clock) -> None:
        self._simulator = simulator
        self._clock = clock
        self._lock = threading.Lock()
        self._state: GatewayState = {}
        self._driving: set[str] = set()  # services whose Deployment's load the gateway set last
        self._last = clock.monotonic()

    def set_traffic(self, request: TrafficRequest) -> None:
        """Set one service's traffic (counted up to now at the old rate first)."""
        with self._lock:
            self._advance_to_now()
            self._state = gateway.with_traffic(self._state, request)

    def traffic(self) -> list[dict[str, Any]]:
        with self._lock:
            return [gateway.describe(self._state[name]) for name in sorted(self._state)]

    def collect_text(self) -> str:
        """Advance to now, set the busy Deployments' GPU loads, and render the gateway's series."""
        with self._lock:
            self._advance_to_now()
            self._drive_loads()
            return gateway.render(self._state)

    def _advance_to_now(self) -> None:
        # 1. replicas: the pods of each service's Deployment that hold a GPU now
        devices = self._simulator.devices
        replicas = {
            name: len(deployment_pods(devices, s.traffic.namespace, s.traffic.deployment))
            for name, s in self._state.items()
        }
        # 2. the gateway, the time since the last collection later
        now = self._clock.monotonic()
        self._state = gateway.advance(self._state, replicas, now - self._last)
        self._last = now

    def _drive_loads(self) -> None:
        # 3. busy services set their Deployment's load each time; one that went idle sets 0 once
        for name, s in self._state.items():
            if not s.busy and name not in self._driving:
                continue
            load = s.load if s.busy else 0.0
            request = LoadRequest(load=load, namespace=s.traffic.namespace, deployment=s.traffic.deployment)
            with contextlib.suppress(NoMatch):  # a static spec with no such pods: nothing to load
                self._simulator.set_load(request)
            if s.busy:
                self._driving.add(name)
            else:
                self._driving.discard(name)
