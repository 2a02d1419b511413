"""Trigger evaluators: one per YAML `type:`, each turning a trigger's reading into a replica proposal.

`Reading` is what the shell observed for one trigger (a value, per-GPU values, named series, or an error),
`Observations` everything the decision sees at one moment, `Proposal` one trigger's answer: the replicas it
wants, whether its signal is active (for scale to zero), how much demand it measured in replicas' worth of
work (for the panic mode and the forecast) and a sentence with numbers. Evaluators implement the
`TriggerEvaluator` protocol and live in a `TriggerRegistry` filled by `register_builtins()`.

Semantics follow HPA v2 where a trigger maps onto an HPA metric (tolerance, `Value` vs `AverageValue`,
../shared/reference/autoscaling.md §1.4/§1.9); the SLO trigger sizes replicas with an M/M/c (Erlang C)
model of the waiting time against the latency target.

Pure: no I/O, no clock (`now` is an argument).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from autoscaler.api.cron import in_window, parse_cron
from autoscaler.api.policy import (
    UTILIZATION_FIELDS,
    DCGMTrigger,
    GPUUtilizationTrigger,
    KafkaLagTrigger,
    PrometheusTrigger,
    QueueDepthTrigger,
    ScheduleTrigger,
    SLOTrigger,
)

MAX_REPLICAS = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Reading:
    """One trigger's observation. `at` is the sample time (epoch seconds); None means "as of now"."""

    value: float | None = None
    per_gpu: tuple[float, ...] = ()
    series: Mapping[str, float] = field(default_factory=dict)
    at: float | None = None
    error: str | None = None


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

    def ok(self, ratio: float) -> bool:
        return 1.0 - self.down <= ratio <= 1.0 + self.up


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
    # The queueing model behind an SLO proposal, (mean service s, waiting budget s), so that forecasts are
    # sized the same way.
    sizing: tuple[float, float] | None = None

    @property
    def reason(self) -> str:
        return self.template.format(*self.args) if self.args else self.template


class TriggerEvaluator(Protocol):
    def evaluate(
        self, spec: Any, name: str, reading: Reading | None, seen: Observations, ctx: Context, now: datetime
    ) -> Proposal:
        """The proposal of trigger `spec` named `name` for this reading."""
        ...


_LABELS = {"mean": "GPU", "max": "hottest GPU", "sum": "GPU total"}
_LAST_NOW: list[Any] = [None, 0.0]


def _epoch(now: datetime) -> float:
    """`now.timestamp()`, remembered for the last `now` seen: every trigger of a decision (and every policy of
    a controller tick) shares one `now`."""
    if _LAST_NOW[0] is not now:
        _LAST_NOW[0] = now
        _LAST_NOW[1] = now.timestamp()
    return float(_LAST_NOW[1])


def _failed(name: str, reading: Reading | None, max_age: int, now: datetime) -> str | None:
    """Why a reading cannot be used (missing, an error, stale), or None. Fast when it can."""
    if (
        reading is not None
        and not reading.error
        and (reading.at is None or _epoch(now) - reading.at <= max_age)
    ):
        return None
    if reading is None:
        return "no reading"
    if reading.error:
        return reading.error
    age = _epoch(now) - (reading.at or 0.0)
    return f"sample is {age:.0f}s old (max {max_age}s)"


def _fail(name: str, why: str) -> Proposal:
    return Proposal(name, None, template="{}: no usable sample ({})", args=(name, why), failed=True)


def _scalar(name: str, reading: Reading | None, max_age: int, now: datetime, empty: str) -> float | Proposal:
    """The reading's value, or the failed proposal that says why it cannot be used (`empty`: no value)."""
    why = _failed(name, reading, max_age, now)
    if why is None and reading is not None and reading.value is None:
        why = empty
    if why is not None or reading is None or reading.value is None:
        return _fail(name, why or "no reading")
    return reading.value


def _gpu_values(
    name: str, reading: Reading | None, max_age: int, now: datetime
) -> tuple[float, ...] | Proposal:
    """The per-GPU values of the target's pods (or the one aggregate), or the failed proposal."""
    why = _failed(name, reading, max_age, now)
    if why is None and reading is not None and not reading.per_gpu and reading.value is None:
        why = "no GPU series for the target's pods"
    if why is not None or reading is None:
        return _fail(name, why or "no reading")
    return reading.per_gpu or (float(reading.value or 0),)


def _ceil(x: float) -> int:
    # 1e-9 keeps float noise (3.0000000001) from adding a replica; conditionals beat min/max on the hot path
    v = math.ceil(x - 1e-9)
    return 0 if v < 0 else (MAX_REPLICAS if v > MAX_REPLICAS else v)


def _per_replica_value(name: str, value: float, target: float, base: int, ctx: Context) -> tuple[int, float]:
    """HPA Value semantics: `ratio = value / target`, tolerance → `base`, else `ceil(ratio × base)`."""
    ratio = value / target
    if base == 0:
        return _ceil(ratio), ratio  # the scale-from-zero path
    if ctx.ok(ratio):
        return base, ratio
    return _ceil(ratio * base), ratio


def _total_value(value: float, target: float, status: int, ctx: Context) -> tuple[int, float]:
    """HPA AverageValue semantics for a total: `ratio = value / (target × status)`, else
    `ceil(value / target)`."""
    if status > 0:
        ratio = value / (target * status)
        if ctx.ok(ratio):
            return status, ratio
    else:
        ratio = math.inf if value > 0 else 0.0
    return _ceil(value / target), ratio


def _aggregate(values: tuple[float, ...], how: str) -> float:
    if how == "max":
        return max(values)
    if how == "sum":
        return sum(values)
    return sum(values) / len(values)


class GPUUtilization:
    """Per-GPU utilisation aggregated over the target's GPUs (mean, max or sum) against a percent target.

    Per-GPU semantics: one value per physical GPU (or MIG instance), never per pod (the DCGM exporter repeats
    a shared GPU's series for each pod). `mean` and `max` compare with a per-GPU target and scale the ready
    replicas by the ratio (HPA `Value`); `sum` is the total over GPUs against a per-replica target
    (HPA `AverageValue`). PROF fields (ratios 0–1) are read as percents.
    """

    def evaluate(
        self, spec: Any, name: str, reading: Reading | None, seen: Observations, ctx: Context, now: datetime
    ) -> Proposal:
        t: GPUUtilizationTrigger = spec
        values = _gpu_values(name, reading, t.max_sample_age_seconds, now)
        if isinstance(values, Proposal):
            return values
        pct = _aggregate(values, t.aggregation) * UTILIZATION_FIELDS[t.metric]
        if t.aggregation == "sum":
            want, ratio = _total_value(pct, t.target, seen.ready, ctx)
        else:
            want, ratio = _per_replica_value(name, pct, t.target, seen.ready, ctx)
        label = _LABELS[t.aggregation]
        return Proposal(
            name,
            want,
            active=pct > 0,
            template="{} {:.0f}% of target {}%",
            args=(label, pct, t.target),
            demand=ratio * max(seen.ready, 1) if t.aggregation != "sum" else pct / 100.0,
        )


class DCGMGauge:
    """Any DCGM gauge in its own unit, with the same aggregation semantics as GPUUtilization."""

    def evaluate(
        self, spec: Any, name: str, reading: Reading | None, seen: Observations, ctx: Context, now: datetime
    ) -> Proposal:
        t: DCGMTrigger = spec
        values = _gpu_values(name, reading, t.max_sample_age_seconds, now)
        if isinstance(values, Proposal):
            return values
        v = _aggregate(values, t.aggregation)
        if t.aggregation == "sum":
            want, _ = _total_value(v, t.target, seen.ready, ctx)
        else:
            want, _ = _per_replica_value(name, v, t.target, seen.ready, ctx)
        return Proposal(
            name, want, active=v > 0, template="{} {:g} of target {:g}", args=(t.metric, v, t.target)
        )


class Prometheus:
    """A PromQL value: `AverageValue` is a total divided among replicas, `Value` is already per replica."""

    def evaluate(
        self, spec: Any, name: str, reading: Reading | None, seen: Observations, ctx: Context, now: datetime
    ) -> Proposal:
        t: PrometheusTrigger = spec
        v = _scalar(name, reading, t.max_sample_age_seconds, now, "empty result")
        if isinstance(v, Proposal):
            return v
        if not math.isfinite(v):
            return _fail(name, f"value {v}")
        if t.target_type == "AverageValue":
            want, _ = _total_value(v, t.target, seen.replicas, ctx)
        else:
            want, _ = _per_replica_value(name, v, t.target, seen.ready, ctx)
        return Proposal(
            name,
            want,
            active=v > t.activation_threshold,
            template="{} {:g} against {:g} ({})",
            args=(name, v, t.target, t.target_type),
        )


class KafkaLag:
    """Consumer-group lag over `lagPerReplica`, capped at the partition count (KEDA's Kafka semantics)."""

    def evaluate(
        self, spec: Any, name: str, reading: Reading | None, seen: Observations, ctx: Context, now: datetime
    ) -> Proposal:
        t: KafkaLagTrigger = spec
        value = _scalar(name, reading, t.max_sample_age_seconds, now, "no lag reported")
        if isinstance(value, Proposal):
            return value
        lag = max(0.0, value)
        partitions = int(reading.series.get("partitions", 0)) if reading is not None else 0
        capped = ""
        if partitions and not t.allow_idle_consumers and lag // t.lag_per_replica > partitions:
            lag_for_scaling = float(partitions * t.lag_per_replica)
            capped = f", capped at {partitions} partitions"
        else:
            lag_for_scaling = lag
        want, _ = _total_value(lag_for_scaling, t.lag_per_replica, seen.replicas, ctx)
        return Proposal(
            name,
            want,
            active=lag > t.activation_lag,
            template="lag {:.0f} on {} for {}/replica{}",
            args=(lag, t.topic, t.lag_per_replica, capped),
            demand=lag / t.lag_per_replica,
        )


class QueueDepth:
    """Requests waiting at the gateway: `ceil(depth / targetPerReplica)` (AverageValue); active above the
    activation threshold."""

    def evaluate(
        self, spec: Any, name: str, reading: Reading | None, seen: Observations, ctx: Context, now: datetime
    ) -> Proposal:
        t: QueueDepthTrigger = spec
        value = _scalar(name, reading, t.max_sample_age_seconds, now, "empty result")
        if isinstance(value, Proposal):
            return value
        depth = max(0.0, value)
        want, _ = _total_value(depth, t.target_per_replica, seen.replicas, ctx)
        return Proposal(
            name,
            want,
            active=depth > t.activation_threshold,
            template="queue {:.0f} for {}/replica",
            args=(depth, t.target_per_replica),
        )


class Schedule:
    """A replica floor while `now` is inside one of the cron windows (UTC); no opinion outside them."""

    def evaluate(
        self, spec: Any, name: str, reading: Reading | None, seen: Observations, ctx: Context, now: datetime
    ) -> Proposal:
        t: ScheduleTrigger = spec
        floor = None
        for w in t.windows:
            if in_window(parse_cron(w.cron), w.duration_seconds, now):
                floor = max(floor or 0, w.replicas)
        if floor is None:
            return Proposal(name, None, template="{}: outside every window", args=(name,), floor=True)
        return Proposal(
            name, floor, active=floor > 0, template="schedule window floor {}", args=(floor,), floor=True
        )


def erlang_c_replicas(load: float, service_s: float, budget_s: float, quantile: float, limit: int) -> int:
    """The fewest servers c with P(wait > budget) ≤ 1 − quantile in an M/M/c queue with offered load `load`.

    P(wait > t) = C(c, a) · exp(−(c − a)·t / s), C the Erlang C probability; Erlang B is iterated upwards
    so the search costs O(c).
    """
    if load <= 0:
        return 0
    tail = max(1e-6, 1.0 - quantile)
    b = 1.0  # Erlang B for 0 servers
    c = 0
    while c < limit:
        c += 1
        b = load * b / (c + load * b)
        if c <= load:
            continue
        erlang_c = c * b / (c - load * (1.0 - b))
        if erlang_c * math.exp(-(c - load) * budget_s / service_s) <= tail:
            return c
    return limit


class Demand(NamedTuple):
    """Offered load in replicas' worth of work (Erlangs) and the mean service time behind it."""

    load: float
    short_load: float
    service_s: float
    prefill_s: float
    waiting: float


def slo_demand(t: SLOTrigger, reading: Reading) -> Demand:
    """The load an SLO trigger's reading describes, from request and token rates and the capacity profile."""
    cap = t.capacity
    rate = reading.value or 0.0
    rate = rate if rate > 0.0 else 0.0
    s = reading.series
    short_rate = s.get("requestsPerSecondShort", rate)
    short_rate = short_rate if short_rate > 0.0 else 0.0
    prompt = s.get("promptTokensPerSecond")
    generated = s.get("generatedTokensPerSecond")
    if prompt is not None and generated is not None and rate > 0:
        prompt_per_req = prompt / rate
        gen_per_req = generated / rate
    else:
        prompt_per_req = float(cap.mean_prompt_tokens)
        gen_per_req = float(cap.mean_generated_tokens)
    prefill_s = prompt_per_req / cap.prefill_tokens_per_second
    service_s = prefill_s + gen_per_req / cap.decode_tokens_per_second
    service_s = service_s if service_s > 1e-3 else 1e-3
    waiting = s.get("waiting", 0.0)
    return Demand(
        rate * service_s, short_rate * service_s, service_s, prefill_s, waiting if waiting > 0.0 else 0.0
    )


class SLO:
    """Replicas that keep the latency percentile under target for the observed demand (M/M/c, Erlang C).

    Demand = request rate × mean service time (prompt and generated tokens over the replica's prefill and
    decode rates) over the long rate window; a higher load over the short window (a burst seen first) adds a
    transient proposal that lapses with the burst. The waiting budget is the latency target less twice the
    mean prefill time (the latency is time to first token). A backlog counts only for what the replicas
    already asked for will not have drained when added ones start (one lead time at the long-window load),
    and adds the replicas that drain that rest within `drainSeconds`.
    """

    def evaluate(
        self, spec: Any, name: str, reading: Reading | None, seen: Observations, ctx: Context, now: datetime
    ) -> Proposal:
        t: SLOTrigger = spec
        why = _failed(name, reading, t.max_sample_age_seconds, now)
        if why is None and reading is not None and reading.value is None:
            why = "empty result"
        if why is not None or reading is None:
            return _fail(name, why or "no reading")
        d = slo_demand(t, reading)
        target_s = t.latency.target_milliseconds / 1000.0
        budget = max(0.25 * target_s, target_s - 2.0 * d.prefill_s)
        q = t.latency.percentile / 100.0
        want = steady = erlang_c_replicas(d.load, d.service_s, budget, q, MAX_REPLICAS)
        if d.short_load > d.load:
            # the short window sees a burst first; sizing for it is transient (dropped when the burst is)
            want = max(want, erlang_c_replicas(d.short_load, d.service_s, budget, q, MAX_REPLICAS))
        backlog = ""
        if d.waiting > 0:
            # Replicas added now serve after the lead time; until then the ready ones drain the backlog (or it
            # grows). Size for what is left then, drained within drainSeconds.
            ahead = d.load
            left = d.waiting * d.service_s + (ahead - seen.replicas) * ctx.lead_s
            if left > 0:
                need = _ceil(ahead + left / t.drain_seconds)
                if need > want:
                    want = need
                    backlog = (
                        f", {d.waiting:.0f} waiting ({left:.0f} replica-s left after {ctx.lead_s:.0f} s)"
                    )
        rate = reading.value or 0.0
        active = rate > t.activation_threshold or d.waiting > 0
        return Proposal(
            name,
            want,
            active=active,
            sustained=steady,
            template="{:.1f} req/s × {:.0f} ms = {:.1f} replicas of work{}, p{} ≤ {} ms",
            args=(
                rate,
                d.service_s * 1000,
                d.load,
                backlog,
                t.latency.percentile,
                t.latency.target_milliseconds,
            ),
            demand=d.load,
            short_demand=d.short_load,
            sizing=(d.service_s, budget),
        )


class TriggerRegistry:
    """Trigger evaluators by their YAML `type:`."""

    def __init__(self) -> None:
        self._by_type: dict[str, TriggerEvaluator] = {}

    def register(self, type_name: str, evaluator: TriggerEvaluator) -> None:
        if type_name in self._by_type:
            raise ValueError(f"trigger type {type_name!r} registered twice")
        self._by_type[type_name] = evaluator

    def known(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_type))

    def get(self, type_name: str) -> TriggerEvaluator:
        ev = self._by_type.get(type_name)
        if ev is None:
            raise KeyError(f"no trigger type {type_name!r} (known: {', '.join(self.known())})")
        return ev


def register_builtins(registry: TriggerRegistry) -> TriggerRegistry:
    """Fill `registry` with the built-in evaluators; called once by whoever composes the decision core."""
    builders: dict[str, Callable[[], TriggerEvaluator]] = {
        "GPUUtilization": GPUUtilization,
        "DCGM": DCGMGauge,
        "Prometheus": Prometheus,
        "KafkaLag": KafkaLag,
        "QueueDepth": QueueDepth,
        "Schedule": Schedule,
        "SLO": SLO,
    }
    for name, make in builders.items():
        registry.register(name, make())
    return registry


def default_registry() -> TriggerRegistry:
    return register_builtins(TriggerRegistry())
