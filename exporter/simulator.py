"""The simulated GPUs as a metric source and a load target: the pure `model` behind a lock and a clock.

Thread-safe (the HTTP server and a cluster follower call it from their threads). Every load request is
also kept as a rule; when the device set is replaced (`replace_devices`: the cluster's GPUs or their
pods changed) the rules are replayed onto the new devices, so a load set for a Deployment reaches its
new pods. Reads time only through the injected `Clock`; does no other I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from exporter import model
from exporter.model import SimDevice, SimParams
from exporter.reading import Reading
from exporter.selector import LoadRequest, NoMatch, apply_rules, select, with_rule
from exporter.spec import ExporterSpec
from kernel.clock import Clock


class Simulator:
    """`keep_unmatched`: a request that matches no device now is kept as a rule and answered with no
    keys instead of `NoMatch` (following a cluster, the pods it names may come later)."""

    def __init__(
        self, devices: Sequence[SimDevice], params: SimParams, clock: Clock, *, keep_unmatched: bool = False
    ) -> None:
        self._devices = tuple(devices)
        self._params = params
        self._clock = clock
        self._keep_unmatched = keep_unmatched
        self._lock = threading.Lock()
        self._state = model.initial_state(self._devices)
        self._rules: tuple[LoadRequest, ...] = ()
        self._last = clock.monotonic()

    @classmethod
    def from_spec(cls, spec: ExporterSpec, clock: Clock) -> Simulator:
        return cls(model.devices_from_spec(spec), model.params_from_spec(spec), clock)

    @property
    def devices(self) -> tuple[SimDevice, ...]:
        return self._devices

    def collect(self) -> list[Reading]:
        """1. advance the fleet to now; 2. read every device."""
        with self._lock:
            self._advance_to_now()
            return model.read(self._devices, self._state, self._params)

    def set_load(self, request: LoadRequest) -> tuple[str, ...]:
        """Set the load on the devices the request selects (raises `selector.NoMatch` unless
        `keep_unmatched`); keep the request as a rule; return the keys it set now."""
        with self._lock:
            try:
                keys = select(self._devices, request)
            except NoMatch:
                if not self._keep_unmatched:
                    raise
                keys = ()
            # Integrate energy and temperature up to now at the old load before the load changes.
            self._advance_to_now()
            self._state = model.with_loads(self._state, keys, request.load)
            self._rules = with_rule(self._rules, request)
        return keys

    def replace_devices(self, devices: Sequence[SimDevice]) -> bool:
        """Make `devices` the fleet (atomically for readers and load requests): GPUs that remain keep
        their thermal and energy state, and every device's load is the load rules replayed onto it.
        Returns whether anything changed."""
        new = tuple(devices)
        with self._lock:
            if new == self._devices:
                return False
            self._advance_to_now()  # at the old devices and loads, up to the moment they change
            self._state = model.rebase(self._state, new, apply_rules(new, self._rules))
            self._devices = new
        return True

    def loads(self) -> dict[str, float]:
        with self._lock:
            return dict(self._state.loads)

    def _advance_to_now(self) -> None:
        now = self._clock.monotonic()
        self._state = model.advance(self._devices, self._state, now - self._last, self._params)
        self._last = now
