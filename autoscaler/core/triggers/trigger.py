"""What a trigger is: the fields every trigger model has, the values that cross an evaluation (`Reading`,
`Observations`, `Context`, `Proposal`), the `TriggerType` that says everything about one YAML `type:` and the
`TriggerRegistry` of them.

A `TriggerType` holds its pydantic model, its evaluator, the source that reads it (`"prometheus"`, `"kafka"`,
or None when the evaluator needs nothing but `now`), whether its signal exists with zero pods (so that it can
wake a service from zero) and, for Prometheus-read types, the PromQL queries one request needs and how their
answers become a `Reading`. Each built-in type is one module beside this one; `autoscaler.core.triggers`
lists them once, in `BUILTIN_TYPES`.

Pure: no I/O, no clock (`now` is an argument).
"""

from __future__ import annotations

import builtins
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import Field

from autoscaler.api.base import Spec
from autoscaler.core.promql import Result

# The sources a trigger type can name (`TriggerType.source`).
PROMETHEUS = "prometheus"
KAFKA = "kafka"


class TriggerBase(Spec):
    """The fields every trigger has; each trigger type's model adds `type: Literal[…]` and its own."""

    if TYPE_CHECKING:  # every model declares it as a Literal (the union's discriminator); typed code reads it
        type: str
    name: str | None = Field(None, pattern=r"^[a-z][a-z0-9-]*$")
    # A sample older than this is treated as missing (stale series; gpu-metrics.md §1).
    max_sample_age_seconds: int = Field(120, ge=1)
    # How often the controller reads this trigger's source. Below the Prometheus scrape interval it needs
    # `endpoint` (the exporter's /metrics read directly, as Knative reads its queue-proxies).
    poll_seconds: int | None = Field(None, ge=1)
    endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """One trigger's observation. `at` is the sample time (epoch seconds); None means "as of now". `read_at`:
    when the shell read it (epoch seconds), so that a failure counts once per read of its trigger, not once
    per decision that sees it again; None counts it at every decision."""

    value: float | None = None
    per_gpu: tuple[float, ...] = ()
    series: Mapping[str, float] = field(default_factory=dict)
    at: float | None = None
    error: str | None = None
    read_at: float | None = None


@dataclass(frozen=True, slots=True)
class Observations:
    """What the decision sees: the target's `spec` and ready replicas, and one reading per trigger name."""

    replicas: int
    ready: int
    readings: Mapping[str, Reading] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Context:
    """What an evaluation needs from the policy: the tolerance around ratio 1.0 per direction and the lead
    time (model start) after which a replica added now serves."""

    up: float = 0.1
    down: float = 0.1
    lead_s: float = 60.0
    # the arrivals' index of dispersion measured over the policy's recent readings (`core.dispersion`), for an
    # SLO trigger that measures it; None: not measured (yet)
    arrival_variability: float | None = None

    def ok(self, ratio: float) -> bool:
        return 1.0 - self.down <= ratio <= 1.0 + self.up


# A queueing model's parameters: (mean service s, waiting budget s, quantile, variability, late requests a
# replica must save an hour or 0 for the quantile), as `slo.erlang_c_replicas` takes them.
Sizing = tuple[float, float, float, float, float]


class Proposal(NamedTuple):
    """One trigger's answer (a NamedTuple, like the other per-decision values: thousands a second)."""

    trigger: str
    replicas: int | None  # None: no opinion (the reading failed or is stale)
    active: bool = False
    # The sentence, formatted only when someone reads `reason` (decisions are made far more often than read).
    template: str = ""
    args: tuple[object, ...] = ()
    demand: float | None = None  # measured load in replicas' worth of work
    short_demand: float | None = None  # the same over the short (panic) window
    failed: bool = False
    floor: bool = False  # a schedule floor: not a metric, never part of "partial data"
    # The part of `replicas` that reflects lasting demand (stabilized before scale-down); the rest drains a
    # backlog and is dropped once it is gone. None: all of it.
    sustained: int | None = None
    # The queueing model behind a proposal sized by one (the SLO trigger's), so that forecasts are sized the
    # same way.
    sizing: Sizing | None = None

    @property
    def reason(self) -> str:
        return self.template.format(*self.args) if self.args else self.template


@dataclass(frozen=True, slots=True)
class Scope:
    """What a trigger's queries are about: the target's namespace and pods, and how often Prometheus scrapes
    (a rate window shorter than two scrapes has no two samples)."""

    namespace: str
    pods: frozenset[str] = frozenset()
    scrape_interval_s: float = 15.0


# (trigger model, trigger name, its reading or None, what the decision sees, the policy's context, now, now as
# epoch seconds) → the trigger's proposal. Both clocks are passed: cron windows need the datetime, staleness
# the seconds, and a decision computes them once for all of its triggers.
Evaluate = Callable[[Any, str, Reading | None, Observations, Context, datetime, float], Proposal]
# (trigger model, scope) → the PromQL expressions one request needs, by role ("value", "stamp", …), each
# stripped of surrounding blanks.
Queries = Callable[[Any, Scope], Mapping[str, str]]
# (trigger model, scope, its queries by role, the answers by expression) → the reading.
FormReading = Callable[[Any, Scope, Mapping[str, str], Mapping[str, Result]], Reading]


@dataclass(frozen=True)
class TriggerType:
    """Everything tidescale knows about one trigger `type:`."""

    type: str  # the YAML `type:`
    model: builtins.type[TriggerBase]
    evaluate: Evaluate
    source: str | None  # PROMETHEUS, KAFKA, …; None: the evaluator needs nothing but `now` (no reading)
    wakes_from_zero: bool  # its signal exists with zero pods, so it can activate a service scaled to zero
    queries: Queries | None = None  # source PROMETHEUS: the expressions a request needs
    reading: FormReading | None = None  # source PROMETHEUS: their answers as a reading
    needs_pods: bool = False  # its queries pick the target's pods' series (the shell lists the pods)
    # How often the controller reads it between sweeps when the trigger sets no `pollSeconds` (None: at the
    # sweep).
    poll_seconds: float | None = None

    def __post_init__(self) -> None:
        declared = typing.get_args(self.model.model_fields["type"].annotation)
        if declared != (self.type,):
            raise ValueError(f"trigger type {self.type!r}: its model declares type {declared!r}")
        if self.source == PROMETHEUS and (self.queries is None or self.reading is None):
            raise ValueError(
                f"trigger type {self.type!r} is read from Prometheus: it needs queries and reading"
            )


class TriggerRegistry:
    """Trigger types by their YAML `type:`, filled by `register_builtins()` where things are wired."""

    def __init__(self) -> None:
        self._by_type: dict[str, TriggerType] = {}

    def register(self, trigger_type: TriggerType) -> None:
        if trigger_type.type in self._by_type:
            raise ValueError(f"trigger type {trigger_type.type!r} registered twice")
        self._by_type[trigger_type.type] = trigger_type

    def known(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_type))

    def get(self, type_name: str) -> TriggerType:
        t = self._by_type.get(type_name)
        if t is None:
            raise KeyError(f"no trigger type {type_name!r} (known: {', '.join(self.known())})")
        return t

    def types(self) -> tuple[TriggerType, ...]:
        """Every registered type, in registration order."""
        return tuple(self._by_type.values())

    def read_by(self, source: str) -> frozenset[str]:
        """The types that source `source` reads."""
        return frozenset(t.type for t in self._by_type.values() if t.source == source)

    def sourceless(self) -> frozenset[str]:
        """The types no source reads (their evaluator needs nothing but `now`)."""
        return frozenset(t.type for t in self._by_type.values() if t.source is None)
