"""The simulated GPUs as a metric source and a load target: the pure `model` behind a lock and a clock.

Thread-safe (the HTTP server calls it from many threads). Reads time only through the injected `Clock`;
does no other I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from autoscaler.exporter import model
from autoscaler.exporter.model import SimDevice, SimParams
from autoscaler.exporter.reading import Reading
from autoscaler.exporter.selector import LoadRequest, select
from autoscaler.exporter.spec import ExporterSpec
from kernel.clock import Clock


class Simulator:
    def __init__(self, devices: Sequence[SimDevice], params: SimParams, clock: Clock) -> None:
        self.devices = tuple(devices)
        self._params = params
        self._clock = clock
        self._lock = threading.Lock()
        self._state = model.initial_state(self.devices)
        self._last = clock.monotonic()

    @classmethod
    def from_spec(cls, spec: ExporterSpec, clock: Clock) -> Simulator:
        return cls(model.devices_from_spec(spec), model.params_from_spec(spec), clock)

    def collect(self) -> list[Reading]:
        """1. advance the fleet to now; 2. read every device."""
        with self._lock:
            self._advance_to_now()
            return model.read(self.devices, self._state, self._params)

    def set_load(self, request: LoadRequest) -> tuple[str, ...]:
        """Set the load on the devices the request selects (raises `selector.NoMatch`); returns their keys."""
        keys = select(self.devices, request)
        with self._lock:
            # Integrate energy and temperature up to now at the old load before the load changes.
            self._advance_to_now()
            self._state = model.with_loads(self._state, keys, request.load)
        return keys

    def loads(self) -> dict[str, float]:
        with self._lock:
            return dict(self._state.loads)

    def _advance_to_now(self) -> None:
        now = self._clock.monotonic()
        self._state = model.advance(self.devices, self._state, now - self._last, self._params)
        self._last = now
