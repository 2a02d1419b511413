"""The node-pool provider registry: one `NodePoolProvider` per `NodePool.spec.provider.type` value.

Filled explicitly by `register_builtins` (KWOK, ClusterAPI) where the controller is wired — nothing registers
itself on import. Looking up a type nobody registered is a `PermanentError` naming the known ones.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubernetes import client

from autoscaler.api.policy import NodePool
from autoscaler.controller.pools.clusterapi import ClusterAPIPoolProvider
from autoscaler.controller.pools.kwok import KwokPoolProvider
from autoscaler.controller.ports import NodePoolProvider
from kernel.clock import SYSTEM_CLOCK, Clock
from kernel.errors import PermanentError


class NodePoolProviderRegistry:
    """Providers keyed by the YAML `provider.type` they serve."""

    def __init__(self) -> None:
        self._by_type: dict[str, NodePoolProvider] = {}

    def register(self, provider: NodePoolProvider) -> None:
        if provider.type in self._by_type:
            raise ValueError(f"a node-pool provider for type {provider.type!r} is already registered")
        self._by_type[provider.type] = provider

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_type))

    def get(self, type_: str) -> NodePoolProvider:
        try:
            return self._by_type[type_]
        except KeyError:
            known = ", ".join(self.types) or "none"
            raise PermanentError(f"no node-pool provider type {type_!r} (known: {known})") from None

    def for_pool(self, pool: NodePool) -> NodePoolProvider:
        """The provider of `pool`'s `spec.provider.type`."""
        return self.get(pool.spec.provider.type)

    def as_mapping(self) -> Mapping[str, NodePoolProvider]:
        return dict(self._by_type)


def register_builtins(
    registry: NodePoolProviderRegistry,
    api: client.ApiClient,
    clock: Clock = SYSTEM_CLOCK,
) -> NodePoolProviderRegistry:
    """Register the KWOK and Cluster API providers, talking to the cluster through `api`."""
    registry.register(KwokPoolProvider(api, clock))
    registry.register(ClusterAPIPoolProvider(api, clock))
    return registry
