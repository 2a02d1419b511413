"""The `SLO` trigger: a latency objective and a per-replica capacity profile → the replicas that keep the
latency percentile under target for the observed demand, with an M/M/c (Erlang C) model of the waiting time,
corrected for arrivals and service times more variable than Poisson's and the exponential's (G/G/c, the
Allen–Cunneen approximation: the wait scaled by (ca² + cs²) / 2, `arrivalVariability` and
`capacity.serviceVariability`). With `latency.lateRequestsPerReplicaHour` the percentile is not met at every
instant: the error budget is spent where a replica saves the fewest late requests (`erlang_c_replicas`).

Queries (all of them in the kind's one batch): the request rate over `windowSeconds` (`value`) and over a
short window — a tenth of it, at least two scrape intervals so that `rate` has two samples — as
`requestsPerSecondShort`; the prompt and generated token rates over `windowSeconds`
(`promptTokensPerSecond`, `generatedTokensPerSecond`, both or neither) and the queue (`waiting`) when the
trigger names them. Reading: the long-window rate's one series is the value (none → an error); each other
role that answered with one finite series is a named series, the short rate defaulting to the long one.
Gateway series exist with zero pods: the trigger wakes a service from zero.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import Field

from autoscaler.api.base import Spec
from autoscaler.core.promql import Result, single, windowed
from autoscaler.core.triggers.evaluation import MAX_REPLICAS, ceil, fail, unusable
from autoscaler.core.triggers.trigger import (
    PROMETHEUS,
    Context,
    Observations,
    Proposal,
    Reading,
    Scope,
    TriggerBase,
    TriggerType,
)


class Latency(Spec):
    percentile: int = Field(99, ge=50, le=100)
    target_milliseconds: int = Field(ge=1)
    # > 0: spend the error budget where it is cheapest instead of meeting the percentile at every instant —
    # hold a replica only while it keeps at least this many requests an hour from waiting past the target
    # (its marginal worth in the queueing model; the percentile is then not used). Few requests arrive at
    # low load, so a replica saves few there, and fewer are held; at high load more are. Where the model's
    # rates hold (smooth daily traffic) that is fewer GPU-hours for the same late requests; bursty traffic
    # needs the percentile's margin at low load (docs/benchmarks.md, stop 31).
    late_requests_per_replica_hour: float = Field(0.0, ge=0)


class CapacityProfile(Spec):
    """What one replica sustains, measured by a load test: prefill and decode tokens per second."""

    prefill_tokens_per_second: float = Field(gt=0)
    decode_tokens_per_second: float = Field(gt=0)
    # Used before token rates have been observed (and when the token series are not provided).
    mean_prompt_tokens: int = Field(1024, ge=0)
    mean_generated_tokens: int = Field(128, ge=0)
    # cs², the squared coefficient of variation of one request's service time (variance ÷ mean²): 1 for
    # exponential service times (M/M/c), 0 for constant ones; from the load test's per-request times.
    service_variability: float = Field(1.0, ge=0, le=1000)


class SLOTrigger(TriggerBase):
    """A latency objective and a per-replica capacity profile → the replicas that meet it (queueing model)."""

    type: Literal["SLO"]
    latency: Latency
    capacity: CapacityProfile
    request_rate_query: str = Field(min_length=1)
    prompt_token_rate_query: str | None = None
    generated_token_rate_query: str | None = None
    queue_query: str | None = None
    # Rate windows: a long one for steady sizing and a short one (a tenth of it) that catches bursts.
    window_seconds: int = Field(60, ge=5)
    # A backlog is sized to drain within this time; replicas added for it serve only after their model start.
    drain_seconds: int = Field(60, ge=1)
    activation_threshold: float = Field(0, ge=0)
    # ca², how bursty the arrivals are: the index of dispersion of request counts (variance ÷ mean) over the
    # seconds a burst lasts; 1 for Poisson arrivals (M/M/c). `tidescale policy backtest` prints the trace's.
    arrival_variability: float = Field(1.0, ge=0, le=1000)
    # > 0: measure ca² instead, as the index of dispersion of the counts in the short rate window over about
    # this many seconds of readings (`core.dispersion`); the stated value holds until half of it is seen
    arrival_variability_window_seconds: int = Field(0, ge=0, le=86400)

    def variability(self, measured: float | None = None) -> float:
        """The Allen–Cunneen factor (ca² + cs²) / 2 that scales the M/M/c wait (1 for M/M/c), with the
        measured ca² when the trigger measures it and a measurement exists, else the stated one."""
        ca2 = self.arrival_variability
        if measured is not None and self.arrival_variability_window_seconds:
            ca2 = min(measured, 1000.0)
        return (ca2 + self.capacity.service_variability) / 2.0


# --- queries and reading ----------------------------------------------------------------------------------


def short_window(spec: SLOTrigger, scrape_interval_s: float) -> int:
    """The burst window: a tenth of `windowSeconds`, but at least two scrapes (a rate needs two samples)."""
    return max(math.ceil(2 * scrape_interval_s), spec.window_seconds // 10)


def queries(spec: SLOTrigger, scope: Scope) -> dict[str, str]:
    long_w = spec.window_seconds
    short_w = short_window(spec, scope.scrape_interval_s)
    out = {
        "value": windowed(spec.request_rate_query, long_w).strip(),
        "requestsPerSecondShort": windowed(spec.request_rate_query, short_w).strip(),
    }
    if spec.prompt_token_rate_query and spec.generated_token_rate_query:
        out["promptTokensPerSecond"] = windowed(spec.prompt_token_rate_query, long_w).strip()
        out["generatedTokensPerSecond"] = windowed(spec.generated_token_rate_query, long_w).strip()
    if spec.queue_query:
        out["waiting"] = spec.queue_query.strip()
    return out


def reading(spec: Any, scope: Scope, queries: Mapping[str, str], results: Mapping[str, Result]) -> Reading:
    rate = single(queries["value"], results.get(queries["value"]))
    if isinstance(rate, str):
        return Reading(error=rate)
    got: dict[str, float] = {}
    for role, expr in queries.items():
        if role == "value":
            continue
        s = single(expr, results.get(expr))
        if not isinstance(s, str):
            got[role] = s.value
    series = {"requestsPerSecondShort": got.get("requestsPerSecondShort", rate.value)}
    if "promptTokensPerSecond" in got and "generatedTokensPerSecond" in got:
        series["promptTokensPerSecond"] = got["promptTokensPerSecond"]
        series["generatedTokensPerSecond"] = got["generatedTokensPerSecond"]
    if "waiting" in got:
        series["waiting"] = got["waiting"]
    if spec.arrival_variability_window_seconds:
        # the windows' lengths, so that the rates can be read as counts (`core.dispersion`)
        series["shortWindowSeconds"] = float(short_window(spec, scope.scrape_interval_s))
        series["windowSeconds"] = float(spec.window_seconds)
    return Reading(value=rate.value, series=series, at=rate.at)


# --- the queueing model -----------------------------------------------------------------------------------


def erlang_c_replicas(
    load: float,
    service_s: float,
    budget_s: float,
    quantile: float,
    limit: int,
    variability: float = 1.0,
    worth_per_hour: float = 0.0,
) -> int:
    """The fewest servers c with P(wait > budget) ≤ 1 − quantile in an M/M/c queue with offered load `load`,
    its wait scaled by `variability` for a G/G/c one; or, with `worth_per_hour` > 0, the most servers each of
    which keeps at least that many requests an hour from waiting past the budget.

    P(wait > t) = C(c, a) · exp(−(c − a)·t / (k·s)), C the Erlang C probability and k the variability: the
    M/M/c tail for k = 1; for k = (ca² + cs²) / 2 a G/G/c queue whose waits are k times longer
    (Allen–Cunneen's approximation of the mean, with the tail kept exponential). Erlang B is iterated upwards
    so the search costs O(c).

    The marginal rule: the c-th server is worth λ · 3600 · (P(c − 1) − P(c)) late requests an hour saved
    (λ = a / s the arrival rate, P = 1 while c ≤ a: every request waits without bound). The tail falls
    convexly once c > a, so the first server worth less than `worth_per_hour` ends the search: c minimises
    c + λ · P(c) · 3600 / worth, the Lagrangian whose minimum over a day is the fewest GPU-hours for its late
    requests (a replica-hour priced at `worth_per_hour` late requests).
    """
    if load <= 0:
        return 0
    per_hour = 3600.0 * load / max(service_s, 1e-9)  # arrivals an hour
    service_s *= max(variability, 1e-6)  # k → 0: no wait once c > a (constant arrivals and service)
    tail = max(1e-6, 1.0 - quantile)
    b = 1.0  # Erlang B for 0 servers
    c = 0
    late = 1.0  # P(wait > budget) with c servers
    while c < limit:
        c += 1
        b = load * b / (c + load * b)
        if c <= load:
            continue
        erlang_c = c * b / (c - load * (1.0 - b))
        p = erlang_c * math.exp(-(c - load) * budget_s / service_s)
        if worth_per_hour > 0.0:
            if per_hour * (late - p) < worth_per_hour:
                return c - 1 if c - 1 > load else c  # never fewer than the load needs to be stable
            late = p
        elif p <= tail:
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


def evaluate(
    spec: SLOTrigger,
    name: str,
    reading: Reading | None,
    seen: Observations,
    ctx: Context,
    now: datetime,
    t: float,
) -> Proposal:
    """Replicas that keep the latency percentile under target for the observed demand (M/M/c, Erlang C).

    Demand = request rate × mean service time (prompt and generated tokens over the replica's prefill and
    decode rates) over the long rate window; a higher load over the short window (a burst seen first) adds a
    transient proposal that lapses with the burst. The waiting budget is the latency target less twice the
    mean prefill time (the latency is time to first token). A backlog counts only for what the replicas
    already asked for will not have drained when added ones start (one lead time at the long-window load),
    and adds the replicas that drain that rest within `drainSeconds`.
    """
    why = unusable(reading, spec.max_sample_age_seconds, t)
    if why is None and reading is not None and reading.value is None:
        why = "empty result"
    if why is not None or reading is None:
        return fail(name, why or "no reading")
    d = slo_demand(spec, reading)
    target_s = spec.latency.target_milliseconds / 1000.0
    budget = max(0.25 * target_s, target_s - 2.0 * d.prefill_s)
    q = spec.latency.percentile / 100.0
    k = spec.variability(ctx.arrival_variability)
    worth = spec.latency.late_requests_per_replica_hour
    want = steady = erlang_c_replicas(d.load, d.service_s, budget, q, MAX_REPLICAS, k, worth)
    if d.short_load > d.load:
        # the short window sees a burst first; sizing for it is transient (dropped when the burst is)
        want = max(want, erlang_c_replicas(d.short_load, d.service_s, budget, q, MAX_REPLICAS, k, worth))
    backlog = ""
    if d.waiting > 0:
        # Replicas added now serve after the lead time; until then the ready ones drain the backlog (or it
        # grows). Size for what is left then, drained within drainSeconds.
        ahead = d.load
        left = d.waiting * d.service_s + (ahead - seen.replicas) * ctx.lead_s
        if left > 0:
            need = ceil(ahead + left / spec.drain_seconds)
            if need > want:
                want = need
                backlog = f", {d.waiting:.0f} waiting ({left:.0f} replica-s left after {ctx.lead_s:.0f} s)"
    rate = reading.value or 0.0
    active = rate > spec.activation_threshold or d.waiting > 0
    return Proposal(
        name,
        want,
        active=active,
        sustained=steady,
        template=_BY_WORTH if worth else _BY_PERCENTILE,
        args=(
            rate,
            d.service_s * 1000,
            d.load,
            backlog,
            worth if worth else spec.latency.percentile,
            spec.latency.target_milliseconds,
            _variability_note(spec, k, ctx.arrival_variability),
        ),
        demand=d.load,
        short_demand=d.short_load,
        sizing=(d.service_s, budget, q, k, worth),
    )


_BY_PERCENTILE = "{:.1f} req/s × {:.0f} ms = {:.1f} replicas of work{}, p{} ≤ {} ms{}"
_BY_WORTH = (
    "{:.1f} req/s × {:.0f} ms = {:.1f} replicas of work{}, each replica keeping ≥ {:g} requests an hour "
    "under {} ms{}"
)


def _variability_note(spec: SLOTrigger, k: float, measured: float | None) -> str:
    if k == 1.0:
        return ""
    if measured is not None and spec.arrival_variability_window_seconds:
        return f" (waits ×{k:.3g} for variability, ca² measured {round(measured, 2):.3g})"
    return f" (waits ×{k:.3g} for variability)"


TYPE = TriggerType(
    "SLO",
    SLOTrigger,
    evaluate,
    source=PROMETHEUS,
    wakes_from_zero=True,
    queries=queries,
    reading=reading,
)
