"""The metric sources by trigger `type:`, and one read of every trigger of every policy through them.

`MetricSourceRegistry.read_all` groups the requests by the source that serves their kind and calls each source
once with all of its requests (the sources batch further: one PromQL query per kind, a few admin requests per
Kafka cluster). Kinds that need no source (`TriggerType.source` None: Schedule, whose evaluator reads the
cron) are skipped. A kind no source serves, or a source that raises, gives `Reading(error=…)` for its
requests: a read never raises and every request (but sourceless ones) gets a reading.

`register_builtins` fills a registry with the Prometheus and Kafka lag sources; whoever composes the
controller calls it once, with the trigger registry it composes the decision core with.

No I/O of its own (the sources do theirs).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from autoscaler.controller.ports import MetricRequest, MetricSource, ReadingKey
from autoscaler.core.triggers import Reading, TriggerRegistry

log = logging.getLogger(__name__)


class MetricSourceRegistry:
    """Metric sources by the trigger kinds they serve, for the trigger types of `triggers`."""

    def __init__(self, triggers: TriggerRegistry) -> None:
        self.triggers = triggers
        self._sourceless = triggers.sourceless()
        self._by_kind: dict[str, MetricSource] = {}

    def register(self, source: MetricSource) -> None:
        taken = sorted(k for k in source.kinds if k in self._by_kind)
        if taken:
            raise ValueError(f"trigger type(s) {', '.join(taken)} already have a metric source")
        for kind in source.kinds:
            self._by_kind[kind] = source

    def known(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_kind))

    def source(self, kind: str) -> MetricSource | None:
        return self._by_kind.get(kind)

    def sources(self) -> tuple[MetricSource, ...]:
        """Each registered source once, in registration order."""
        return tuple({id(s): s for s in self._by_kind.values()}.values())

    def close(self) -> None:
        """Close every source that holds connections (those with a `close()`)."""
        for s in self.sources():
            close = getattr(s, "close", None)
            if callable(close):
                close()

    def read_all(self, requests: Sequence[MetricRequest], now: float) -> dict[ReadingKey, Reading]:
        """A reading for every request but those of sourceless kinds, each source called once."""
        groups: dict[int, list[MetricRequest]] = defaultdict(list)
        out: dict[ReadingKey, Reading] = {}
        for r in requests:
            kind = str(getattr(r.spec, "type", ""))
            if kind in self._sourceless:
                continue
            source = self._by_kind.get(kind)
            if source is None:
                out[(r.policy, r.trigger)] = Reading(
                    error=f"no metric source for trigger type {kind!r} (known: {', '.join(self.known())})"
                )
                continue
            groups[id(source)].append(r)
        for group in groups.values():
            source = self._by_kind[str(group[0].spec.type)]
            try:
                got = source.read(group, now)
            except Exception as e:  # a source must not raise; if one does, only its requests suffer
                log.exception("metric source %s failed", type(source).__name__)
                why = f"{type(source).__name__} failed: {type(e).__name__}: {e}"
                got = {(r.policy, r.trigger): Reading(error=why) for r in group}
            for r in group:
                key = (r.policy, r.trigger)
                out[key] = got.get(key) or Reading(error=f"{type(source).__name__} returned no reading")
        return out


def register_builtins(
    registry: MetricSourceRegistry,
    *,
    prometheus_url: str | None,
    kafka_bootstrap: str | None,
    timeout_s: float = 5.0,
    scrape_interval_s: float = 15.0,
) -> MetricSourceRegistry:
    """The Prometheus source (every trigger type whose source is "prometheus") and the Kafka lag source, for
    the endpoints given (a missing one leaves its kinds without a source: their triggers read as errors)."""
    from autoscaler.controller.sources.kafka_lag import KafkaLagSource
    from autoscaler.controller.sources.prometheus import PrometheusSource

    if prometheus_url:
        registry.register(
            PrometheusSource(
                prometheus_url, registry.triggers, timeout_s=timeout_s, scrape_interval_s=scrape_interval_s
            )
        )
    if kafka_bootstrap:
        registry.register(KafkaLagSource(kafka_bootstrap, timeout_s=min(timeout_s, 3.0)))
    return registry
