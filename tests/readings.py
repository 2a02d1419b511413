"""A metric reader whose readings the test sets: the controller's `ReadMetrics` port, for integration tests
that drive the real controller against the real control plane without a metrics pipeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from autoscaler.controller.ports import MetricRequest, ReadingKey
from autoscaler.core.triggers import Reading


@dataclass
class Load:
    """The reading of every policy's trigger, set by the test (`ReadMetrics`)."""

    values: dict[str, float] = field(default_factory=dict)  # policy key → value

    def __call__(self, requests: Sequence[MetricRequest], now: float) -> Mapping[ReadingKey, Reading]:
        return {
            (r.policy, r.trigger): Reading(value=self.values[r.policy], at=now)
            for r in requests
            if r.policy in self.values
        }
