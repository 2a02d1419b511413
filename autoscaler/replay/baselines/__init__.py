"""Faithful baselines — Kubernetes HPA v2, KEDA and Knative KPA, and the Cluster Autoscaler for their nodes —
as controllers the trace replay drives one tick at a time.

`ClusterView` is what a controller can observe at one moment (the simulator implements it: only what the real
controller could have seen then, through its own metric pipeline); `Baseline` is one replica controller,
`BaselineRegistry` builds them by name from a ScalingPolicy (the same targets, bounds and signals, mapped onto
each system's configuration) and is filled by `register_builtins()`.

Pure: no I/O, no clock; time comes from the view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from autoscaler.api.policy import ScalingPolicy


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


class Baseline(Protocol):
    name: str
    description: str

    def step(self, view: ClusterView) -> int | None:
        """The replicas to write to /scale now, or None for no write."""
        ...


Builder = Callable[[ScalingPolicy], Baseline]


class BaselineRegistry:
    """Baseline controllers by name (`hpa`, `keda`, `kpa`)."""

    def __init__(self) -> None:
        self._builders: dict[str, Builder] = {}

    def register(self, name: str, builder: Builder) -> None:
        if name in self._builders:
            raise ValueError(f"baseline {name!r} registered twice")
        self._builders[name] = builder

    def known(self) -> tuple[str, ...]:
        return tuple(self._builders)

    def build(self, name: str, policy: ScalingPolicy) -> Baseline:
        builder = self._builders.get(name)
        if builder is None:
            raise KeyError(f"no baseline {name!r} (known: {', '.join(self.known())})")
        return builder(policy)


def register_builtins(registry: BaselineRegistry) -> BaselineRegistry:
    """Fill `registry` with HPA, KEDA and KPA, built from a policy's targets and bounds."""
    from autoscaler.replay.baselines import hpa, keda, kpa

    registry.register("hpa", hpa.from_policy)
    registry.register("keda", keda.from_policy)
    registry.register("kpa", kpa.from_policy)
    return registry


def default_registry() -> BaselineRegistry:
    return register_builtins(BaselineRegistry())


__all__ = [
    "PROMETHEUS",
    "Baseline",
    "BaselineRegistry",
    "ClusterView",
    "Pipeline",
    "PodInfo",
    "Sample",
    "default_registry",
    "register_builtins",
]
