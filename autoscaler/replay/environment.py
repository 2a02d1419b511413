"""What a controller in the replay can observe: the environment contract the simulator implements (only what
the real controller could have seen at that moment, through its own metric pipeline) and every replayed
controller — the baselines and the tidescale loop's simulated ports — reads.

Pure: no I/O, no clock; time comes from the view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PodInfo:
    name: str
    phase: str  # "Pending" (no node yet) | "Running"
    ready: bool
    bound_at: float | None  # when it got its node (and GPUs)


@dataclass(frozen=True, slots=True)
class Sample:
    value: float
    at: float


@dataclass(frozen=True, slots=True)
class Pipeline:
    """How a signal reaches a controller: through Prometheus (scrape interval + delay) or read directly."""

    direct_poll_s: float | None = None  # None: Prometheus

    @property
    def label(self) -> str:
        return "prometheus" if self.direct_poll_s is None else f"direct/{self.direct_poll_s:g}s"


PROMETHEUS = Pipeline()


class ClusterView(Protocol):
    """One moment of the replayed cluster, as a controller could observe it."""

    @property
    def now(self) -> float: ...

    def spec_replicas(self) -> int: ...

    def status_replicas(self) -> int: ...

    def ready_replicas(self) -> int: ...

    def pods(self) -> Sequence[PodInfo]: ...

    def pod_gpu_metric(self, metric: str, pipeline: Pipeline) -> tuple[dict[str, float], float] | None:
        """Per-pod mean over the pod's GPUs (in the field's own unit) and the sample time; None before any."""
        ...

    def gpu_values(self, metric: str, pipeline: Pipeline) -> tuple[tuple[float, ...], float] | None:
        """One value per GPU of the target's pods (in the field's own unit) and the sample time."""
        ...

    def query(self, promql: str, pipeline: Pipeline) -> Sample | None:
        """An instant query's single value and its sample time; None when the result is empty."""
        ...

    def concurrency(self, window_s: float) -> float:
        """Average in-flight requests over the last `window_s` seconds (Knative's 1 s buckets)."""
        ...
