"""Faithful baselines — Kubernetes HPA v2, KEDA and Knative KPA, and the Cluster Autoscaler for their nodes —
as controllers the trace replay drives one tick at a time.

They observe the replay through `environment.ClusterView`; `Baseline` is one replica controller,
`BaselineRegistry` builds them by name from a ScalingPolicy (the same targets, bounds and signals, mapped onto
each system's configuration) and the replay's service model (what one replica serves at once, for Knative's
containerConcurrency), and is filled by `register_builtins()`.

Pure: no I/O, no clock; time comes from the view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from autoscaler.api.policy import ScalingPolicy
from autoscaler.replay.environment import ClusterView
from autoscaler.replay.service_model import ServiceModel


class Baseline(Protocol):
    name: str
    description: str

    def step(self, view: ClusterView) -> int | None:
        """The replicas to write to /scale now, or None for no write."""
        ...


Builder = Callable[[ScalingPolicy, ServiceModel], Baseline]


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

    def build(self, name: str, policy: ScalingPolicy, model: ServiceModel | None = None) -> Baseline:
        builder = self._builders.get(name)
        if builder is None:
            raise KeyError(f"no baseline {name!r} (known: {', '.join(self.known())})")
        return builder(policy, model or ServiceModel())


def register_builtins(registry: BaselineRegistry) -> BaselineRegistry:
    """Fill `registry` with HPA, KEDA and KPA, built from a policy's targets and bounds."""
    from autoscaler.replay.baselines import hpa, keda, kpa

    registry.register("hpa", hpa.from_policy)
    registry.register("keda", keda.from_policy)
    registry.register("kpa", kpa.from_policy)
    return registry


def default_registry() -> BaselineRegistry:
    return register_builtins(BaselineRegistry())


__all__ = ["Baseline", "BaselineRegistry", "default_registry", "register_builtins"]
