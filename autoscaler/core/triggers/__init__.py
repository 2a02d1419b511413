"""Trigger types: one module per YAML `type:`, each holding everything about it — its pydantic model, its
evaluator (a reading → a replica proposal), the source that reads it, whether it can wake a service from
zero and, for Prometheus-read types, the PromQL it needs and how the answers become a `Reading`.

`BUILTIN_TYPES` lists the built-in types once; the policy's discriminated union (`autoscaler.api.policy`) is
derived from it, and `register_builtins()` puts them in a `TriggerRegistry`, which whoever wires the decision
core (the controller, the CLI commands, the replay) builds once and passes down. Adding a trigger type is one
new module here and one line in `BUILTIN_TYPES`.

Semantics follow HPA v2 where a trigger maps onto an HPA metric (tolerance, `Value` vs `AverageValue`,
../shared/reference/autoscaling.md §1.4/§1.9); the SLO trigger sizes replicas with an M/M/c (Erlang C)
model of the waiting time against the latency target.

Pure: no I/O, no clock (`now` is an argument).
"""

from __future__ import annotations

from autoscaler.core.triggers import dcgm, gpu_utilization, kafka_lag, prometheus, queue_depth, schedule, slo
from autoscaler.core.triggers.evaluation import MAX_REPLICAS
from autoscaler.core.triggers.slo import erlang_c_replicas
from autoscaler.core.triggers.trigger import (
    KAFKA,
    PROMETHEUS,
    Context,
    Evaluate,
    FormReading,
    Observations,
    Proposal,
    Queries,
    Reading,
    Scope,
    Sizing,
    TriggerBase,
    TriggerRegistry,
    TriggerType,
)

# The built-in trigger types, in the order documents and error messages list them.
BUILTIN_TYPES: tuple[TriggerType, ...] = (
    gpu_utilization.TYPE,
    dcgm.TYPE,
    prometheus.TYPE,
    kafka_lag.TYPE,
    queue_depth.TYPE,
    schedule.TYPE,
    slo.TYPE,
)


def register_builtins(registry: TriggerRegistry) -> TriggerRegistry:
    """Fill `registry` with the built-in trigger types; called once by whoever wires the decision core."""
    for trigger_type in BUILTIN_TYPES:
        registry.register(trigger_type)
    return registry


def default_registry() -> TriggerRegistry:
    """A new registry holding the built-in types."""
    return register_builtins(TriggerRegistry())


__all__ = [
    "BUILTIN_TYPES",
    "KAFKA",
    "MAX_REPLICAS",
    "PROMETHEUS",
    "Context",
    "Evaluate",
    "FormReading",
    "Observations",
    "Proposal",
    "Queries",
    "Reading",
    "Scope",
    "Sizing",
    "TriggerBase",
    "TriggerRegistry",
    "TriggerType",
    "default_registry",
    "erlang_c_replicas",
    "register_builtins",
]
