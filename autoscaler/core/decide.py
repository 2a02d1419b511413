"""The pure decision core: `decide(compiled, observations, state, now) → Decision`.

A policy is compiled once against the trigger registry its holder was given (`compile_policy`: trigger
names, types and evaluators, wake signals, behavior with defaults); one call is one reconcile of one
compiled ScalingPolicy, in numbered steps:

1. evaluate every trigger (`autoscaler.core.triggers`) into a proposal; count consecutive failures (a
   trigger that reads the target's pods' series has nothing to read while no replica is ready: no opinion,
   not a failure);
2. fallback: a metric failing more than `failureThreshold` times in a row proposes the fallback count, a floor
   under the healthy proposals (KEDA semantics: one more metric for the HPA, the max wins);
3. zero: from 0 replicas, activation when a zero-pod signal is active, else stay at 0;
4. the raw recommendation: the max over valid proposals; no scale-down on partial data (HPA semantics);
5. demand one lead time ahead: the forecast (Holt, or the seasonal ensemble of `core.forecast`; past samples
   only) and the level under which a percentile of the recent work arrived raise the recommendation;
6. panic: a recommendation ≥ threshold × ready replicas applies at once and blocks scale-down until the burst
   has been over for `stableSeconds`;
7. behavior: HPA stabilization windows and rate policies (`core.behavior`) on the sustained part of the
   recommendation; a transient part (a backlog to drain) applies at once within the scale-up policies;
8. scale to zero after the idle period with every activation signal quiet;
9. node pools: nodes to add for the lasting part of the recommendation (not for a burst or a backlog: a node
   takes minutes) that holds no node — or for what a seasonal forecast expects one node provisioning and one
   model start ahead, when that is more (pre-warmed nodes) —, idle nodes to remove.

The decision carries the desired replicas, the node-pool changes, a sentence with numbers, the rule that
limited it and the next state; `autoscaler.core.events` renders it as one JSON record.

Pure: no I/O, no clock (`now` is an argument), no network or Kubernetes client.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NamedTuple

from autoscaler.api.policy import NodePool, ScalingPolicy, trigger_name
from autoscaler.core import dispersion as dsp
from autoscaler.core import forecast as fc
from autoscaler.core.behavior import (
    History,
    ResolvedBehavior,
    describe,
    rate_limit,
    record,
    resolve,
    stabilize,
)
from autoscaler.core.nodepool import (
    NodePoolChange,
    PoolNode,
    below_threshold,
    consolidate,
    plan_node_pools,
    reopen,
    replica_pods,
    scale_down,
)
from autoscaler.core.triggers import (
    Context,
    Evaluate,
    Observations,
    Proposal,
    Reading,
    Sizing,
    TriggerRegistry,
    TriggerType,
    erlang_c_replicas,
)
from jobs.snapshot import ClusterState


class PolicyState(NamedTuple):
    """What one policy remembers between decisions (the controller keeps it per target, and on the policy's
    status: `autoscaler.controller.kube.persisted`)."""

    history: History = History()
    last_active: float | None = None
    failures: tuple[tuple[str, int], ...] = ()
    panic_over_at: float | None = None  # last time the recommendation was over the panic threshold
    holt: fc.Holt | None = None
    demand: fc.Recent = fc.Recent()  # recent demand over the forecast's history window
    level: float = 0.0  # its percentile, recomputed when a sample enters or leaves
    # per trigger, when the reading last counted as a failure was read (a failure counts once per read)
    failure_reads: tuple[float | None, ...] = ()
    seasonal: fc.Seasonal | None = None  # the seasonal forecast's state, when the policy asks for one
    # the arrivals' counts seen by the SLO trigger that measures their variability (`core.dispersion`)
    arrivals: dsp.Dispersion | None = None
    slope: fc.Slope | None = None  # the burst-robust trend's state, when the forecast asks for one


@dataclass(frozen=True)
class NodeView:
    """The node side, for node-pool plans: the pools, the nodes (ready and provisioning) as a scheduler
    snapshot, each pool node's use, and how many of the target's replicas hold a node."""

    pools: tuple[NodePool, ...]
    snapshot: ClusterState
    nodes: tuple[PoolNode, ...] = ()
    scheduled: int = 0  # the target's replicas that hold a node (running or starting)


class Text(NamedTuple):
    """A sentence formatted only when read: `str(text)`, also when nested in another Text's arguments."""

    template: str
    args: tuple[object, ...] = ()

    def __str__(self) -> str:
        return self.template.format(*self.args) if self.args else self.template

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class Decision(NamedTuple):
    """One reconcile's outcome (a NamedTuple: immutable and cheap to build on the hot path)."""

    policy: str
    target: str
    at: datetime
    current: int
    desired: int
    why: Text
    rule: str
    trigger: str | None
    proposals: tuple[Proposal, ...]
    state: PolicyState
    node_pools: tuple[NodePoolChange, ...] = ()
    panic: bool = False
    fallback: bool = False
    forecast: float | None = None  # demand expected one lead time ahead, in replicas of work
    floor: int = 0  # replicas the forecast and the recent demand asked to keep
    # replicas the seasonal forecast expects one node provisioning and one model start ahead: the node pools
    # hold nodes for them (pre-warmed) before the replicas are asked for
    node_floor: int = 0

    @property
    def reason(self) -> str:
        """The decision as a sentence with numbers, e.g. "GPU 140% of target 70%: 2 → 4 replicas"."""
        return str(self.why)

    @property
    def changed(self) -> bool:
        return self.desired != self.current or bool(self.node_pools)


@dataclass(frozen=True)
class CompiledPolicy:
    """What a policy resolves to once, against a trigger registry: its triggers' names, types and
    evaluators, the wake signals, the behavior with defaults. Whoever holds the policy (the controller's
    entry, the replay, the benchmark) compiles it once, with `compile_policy`, and passes it to `decide`."""

    policy: ScalingPolicy
    names: tuple[str, ...]
    types: tuple[TriggerType, ...]
    evaluators: tuple[Evaluate, ...]
    wake: frozenset[str]
    behavior: ResolvedBehavior
    ctx: Context
    ident: str
    target: str
    triggers: tuple[Any, ...]
    lo: int  # the lowest non-zero replica count
    # the first trigger that measures the arrivals' variability (an SLO trigger's
    # arrivalVariabilityWindowSeconds), and over how many seconds; -1: none
    measures: int = -1
    memory_s: float = 0.0


def compile_policy(policy: ScalingPolicy, registry: TriggerRegistry) -> CompiledPolicy:
    """`policy` resolved against `registry`; KeyError naming the known types when a trigger's type is not in
    it."""
    spec = policy.spec
    names = tuple(trigger_name(t, i) for i, t in enumerate(spec.triggers))
    types = tuple(registry.get(t.type) for t in spec.triggers)
    listed = spec.scale_to_zero.activation_triggers if spec.scale_to_zero else None
    wake = frozenset(
        n for n, tt in zip(names, types, strict=True) if (n in listed if listed else tt.wakes_from_zero)
    )
    b = resolve(spec.behavior)
    memories = [float(getattr(t, "arrival_variability_window_seconds", 0)) for t in spec.triggers]
    measures = next((i for i, m in enumerate(memories) if m > 0), -1)
    memory = memories[measures] if measures >= 0 else 0.0
    return CompiledPolicy(
        policy,
        names,
        types,
        tuple(tt.evaluate for tt in types),
        wake,
        b,
        Context(b.up.tolerance, b.down.tolerance, float(spec.lead.model_start_seconds)),
        f"{policy.metadata.namespace}/{policy.metadata.name}",
        f"{spec.target_ref.kind}/{spec.target_ref.name}",
        tuple(spec.triggers),
        max(spec.min_replicas, 1),
        measures,
        memory,
    )


def _plural(n: int) -> str:
    return f"{n} replica" if n == 1 else f"{n} replicas"


def _change(current: int, desired: int) -> str:
    return f"keeping {_plural(current)}" if desired == current else f"{current} → {_plural(desired)}"


class _Change(NamedTuple):
    current: int
    desired: int

    def __format__(self, spec: str) -> str:
        return _change(self.current, self.desired)


class _Bound(NamedTuple):
    """What a limiting rule did, in words: what the metrics wanted, the rule's bound and why, and the result
    ("metrics want 2 replicas; the scale-down stabilization window (300 s) keeps the highest recommendation
    of the last 300 s, 20: keeping 20 replicas"). Formatted only when read."""

    rule: str
    raw: int  # the metrics' wish: the max over the proposals
    wanted: int  # after the stabilization windows (and a transient part on top)
    current: int
    desired: int
    b: ResolvedBehavior

    def __format__(self, spec: str) -> str:
        rule, b, desired = self.rule, self.b, self.desired
        wish = f"metrics want {_plural(self.raw)}"
        if self.wanted != self.raw and rule not in ("ScaleUpStabilized", "ScaleDownStabilized"):
            down = self.wanted > self.raw
            w = b.down.window_s if down else b.up.window_s
            wish += (
                f" ({self.wanted} after the scale-{'down' if down else 'up'} stabilization window of {w} s)"
            )
        if rule == "ScaleUpLimit":
            bound = f"the scale-up rate limit ({describe(b.up, True)}) allows at most {desired} now"
        elif rule == "ScaleDownLimit":
            bound = (
                f"the scale-down rate limit ({describe(b.down, False)}) allows no fewer than {desired} now"
            )
        elif rule == "TooManyReplicas":
            bound = f"maxReplicas is {desired}"
        elif rule == "TooFewReplicas":
            bound = f"minReplicas is {desired}"
        elif rule == "ScaleDownStabilized":
            w = b.down.window_s
            bound = (
                f"the scale-down stabilization window ({w} s) keeps the highest recommendation of the last "
                f"{w} s, {desired}"
            )
        elif rule == "ScaleUpStabilized":
            w = b.up.window_s
            bound = (
                f"the scale-up stabilization window ({w} s) keeps the lowest recommendation of the last "
                f"{w} s, {desired}"
            )
        else:
            bound = f"{rule} allows {desired}"
        return f"{wish}; {bound}: {_change(self.current, desired)}"


class _Step:
    """The working values of one decision; the next PolicyState is built once, in `done`."""

    __slots__ = (
        "arrivals",
        "c",
        "demand",
        "failure_reads",
        "failures",
        "history",
        "holt",
        "last_active",
        "level",
        "node_floor",
        "nodes",
        "now",
        "panic_over_at",
        "proposals",
        "seasonal",
        "seen",
        "slope",
        "t",
    )

    def __init__(
        self,
        c: CompiledPolicy,
        seen: Observations,
        state: PolicyState,
        now: datetime,
        t: float,
        nodes: NodeView | None,
    ) -> None:
        self.c = c
        self.seen = seen
        self.now = now
        self.t = t
        self.nodes = nodes
        self.proposals: tuple[Proposal, ...] = ()
        self.history = state.history
        self.last_active = state.last_active
        self.failures = state.failures
        self.failure_reads = state.failure_reads
        self.panic_over_at = state.panic_over_at
        self.holt = state.holt
        self.demand = state.demand
        self.level = state.level
        self.seasonal = state.seasonal
        self.arrivals = state.arrivals
        self.slope = state.slope
        self.node_floor = 0

    def done(
        self,
        desired: int,
        reason: str | Text,
        rule: str,
        trigger: str | None,
        *,
        nodes_for: int | None = None,
        panic: bool = False,
        fallback: bool = False,
        forecast: float | None = None,
        floor: int = 0,
    ) -> Decision:
        changes: tuple[NodePoolChange, ...] = ()
        if self.nodes is not None:
            # nodes take minutes: provision them for lasting demand, not for a burst or a backlog — and for
            # the demand the seasonal forecast expects once they would be ready
            want = desired if nodes_for is None else max(nodes_for, self.node_floor)
            changes = _node_changes(self.c.policy, self.nodes, want, self.t, desired)
        state = PolicyState(
            self.history,
            self.last_active,
            self.failures,
            self.panic_over_at,
            self.holt,
            self.demand,
            self.level,
            self.failure_reads,
            self.seasonal,
            self.arrivals,
            self.slope,
        )
        return Decision(
            self.c.ident,
            self.c.target,
            self.now,
            self.seen.replicas,
            desired,
            reason if isinstance(reason, Text) else Text(reason),
            rule,
            trigger,
            self.proposals,
            state,
            changes,
            panic,
            fallback,
            forecast,
            floor,
            self.node_floor,
        )


def decide(
    c: CompiledPolicy,
    seen: Observations,
    state: PolicyState | None,
    now: datetime,
    *,
    nodes: NodeView | None = None,
) -> Decision:
    """One reconcile of the compiled policy `c`: the decision for what was observed at `now`, with the next
    state."""
    spec = c.policy.spec
    b = c.behavior
    t = now.timestamp()
    step = _Step(c, seen, state or PolicyState(last_active=t), now, t, nodes)
    current = seen.replicas
    lo = c.lo
    hi = spec.max_replicas
    reason: str | Text

    # 1. triggers, failure counts, activity (one pass: this is the hot path of every reconcile)
    readings = seen.readings
    wake = c.wake
    proposals: list[Proposal] = []
    counts: list[int] = []
    prior = step.failures if len(step.failures) == len(c.names) else ()
    prior_reads = step.failure_reads if len(step.failure_reads) == len(c.names) else ()
    reads: list[float | None] = []
    valid: list[Proposal] = []
    failed: list[Proposal] = []
    active = wake_failed = False
    n_metrics = 0
    driver: Proposal | None = None
    raw = sustained = 0
    evaluators = c.evaluators
    triggers = c.triggers
    ctx = c.ctx
    if c.measures >= 0:
        # the SLO trigger sizes for the arrivals' variability measured up to this reading (`_arrivals`)
        ctx = replace(ctx, arrival_variability=dsp.index(step.arrivals))
    for k, name in enumerate(c.names):
        reading = readings.get(name)
        p = evaluators[k](triggers[k], name, reading, seen, ctx, now, t)
        if p.failed and not seen.ready and c.types[k].needs_pods:
            # its series are the ready pods' (GPU series vanish with the pods and appear once a pod holds a
            # GPU): at zero replicas, or while every replica waits for a node, an empty read is expected —
            # counted as a failure it would wake an idle target through the fallback
            p = Proposal(name, None, template="{}: no replica is ready to read", args=(name,))
        proposals.append(p)
        read = reading.read_at if reading is not None else None
        reads.append(read)
        if p.failed:
            failed.append(p)
            before = prior[k][1] if prior else 0
            # a failure counts once per read of its trigger: a reading seen again by a later decision (the
            # policy was decided for another trigger's sake) is the same failure
            again = read is not None and bool(prior_reads) and prior_reads[k] == read
            counts.append(before if again else before + 1)
        else:
            counts.append(0)
        r = p.replicas
        if r is not None:
            valid.append(p)
            if driver is None or r > raw:
                driver, raw = p, r
            s = r if p.sustained is None else p.sustained
            if s > sustained:  # noqa: PLR1730 (the hot loop: a comparison beats a call)
                sustained = s
        if not p.floor:
            n_metrics += 1
        if name in wake:
            active = active or p.active
            wake_failed = wake_failed or p.failed
    step.proposals = tuple(proposals)
    if c.measures >= 0:
        _arrivals(step, readings.get(c.names[c.measures]))
    step.failures = tuple(zip(c.names, counts, strict=True)) if failed or prior else prior
    step.failure_reads = tuple(reads) if failed or prior_reads else prior_reads
    if active or step.last_active is None:
        step.last_active = t

    # 2. fallback: a metric failing more than failureThreshold times in a row proposes the fallback count in
    # its place — one more proposal, so a floor under the healthy ones and never a cap on them (KEDA serves it
    # to the HPA as that metric's value; the HPA takes the max over all metrics). It goes through the same
    # rules as any proposal below; failures still within the threshold keep blocking a scale-down.
    fb = spec.fallback
    fallback: int | None = None
    fallback_led = False
    if fb is not None and failed and max(counts) > fb.failure_threshold:
        r = {
            "static": fb.replicas,
            "currentReplicas": current,
            "currentReplicasIfHigher": max(current, fb.replicas),
            "currentReplicasIfLower": min(current, fb.replicas),
        }[fb.behavior]
        fallback = max(spec.min_replicas, min(hi, r))
        past = [p for p, k in zip(proposals, counts, strict=True) if p.failed and k > fb.failure_threshold]
        failed = [p for p, k in zip(proposals, counts, strict=True) if p.failed and k <= fb.failure_threshold]
        cause = Text(
            "{} failed more than {} times in a row ({})",
            (", ".join(p.trigger for p in past), fb.failure_threshold, past[0].reason),
        )
        if driver is None or fallback > raw:
            how: object = fb.behavior
            if driver is not None:
                how = Text("{} {}, above {} at {}", (fb.behavior, fallback, driver.trigger, raw))
            driver = Proposal(past[0].trigger, fallback, template="{}; fallback {}", args=(cause, how))
            raw, fallback_led = fallback, True
        else:
            below = (Text(driver.template, driver.args), cause, fb.behavior, fallback)
            driver = driver._replace(template="{}; {}, its fallback {} {} is lower", args=below)
        sustained = max(sustained, fallback)
        if current == 0:
            # from zero nothing is stabilized (as on activation below): the larger count applies at once
            desired = min(hi, raw)
            step.history = record(b, step.history, step.history.recs, current, desired, t)
            reason = Text("{}: {}", (Text(driver.template, driver.args), _Change(current, desired)))
            rule = "Fallback" if fallback_led else "Activation"
            return step.done(desired, reason, rule, driver.trigger, fallback=True)

    # 3. zero: activation from signals that exist without pods
    if current == 0:
        if spec.scale_to_zero is None:
            return step.done(
                0, "replicas are 0 and minReplicas is not: autoscaling is off", "ScalingDisabled", None
            )
        if not active:
            return step.done(0, "idle: no activation signal is active; staying at 0", "ScaledToZero", None)
        desired = min(hi, max([lo, *(p.replicas or 0 for p in valid)]))
        waker = next(p for p in proposals if p.trigger in c.wake and p.active)
        step.history = record(b, step.history, (((t, desired),), ((t, desired),)), 0, desired, t)
        reason = f"activation, {waker.reason}: 0 → {_plural(desired)}"
        return step.done(desired, reason, "Activation", waker.trigger)

    # 4. raw recommendation: max over valid proposals; never scale down on partial data
    if fallback is None and (
        not valid or (n_metrics and len(failed) == n_metrics and not any(p.replicas for p in valid))
    ):
        why = "; ".join(p.reason for p in failed) or "no trigger gave a proposal"
        reason = f"no metric is available ({why}): keeping {_plural(current)}"
        return step.done(current, reason, "MetricsUnavailable", None)
    assert driver is not None  # valid is not empty, or the fallback leads
    if failed and raw < current:
        why = ", ".join(p.trigger for p in failed)
        reason = (
            f"{why} failed and the rest want fewer: keeping {_plural(current)} "
            f"(no scale-down on partial data)"
        )
        return step.done(current, reason, "PartialMetrics", None, fallback=fallback is not None)
    driver_reason: Text = Text(driver.template, driver.args)

    # 5. demand one lead time ahead: forecast, and the level recent work arrived at
    floor, predicted, floor_args = _floor(step, hi)
    if floor > sustained:
        sustained = floor
        if floor > raw:
            raw = floor
            driver_reason = Text("{}; " + _FLOOR_REASON, (driver_reason, *floor_args))

    # 6. panic: scale at once, and not down while the burst lasts
    pspec = spec.panic
    if pspec is not None:
        ready = max(seen.ready, 1)
        over = raw > current and raw * 100 >= pspec.threshold_percent * ready
        over_at = t if over else step.panic_over_at
        panicking = over_at is not None and t - over_at <= pspec.stable_seconds
        step.panic_over_at = over_at if panicking else None
        if panicking:
            desired = max(current, min(hi, max(raw, lo)))
            lasting, _, recs = stabilize(b, step.history, sustained, current, t)
            step.history = record(b, step.history, recs, current, desired, t)
            held = "" if over else f"; holding for {pspec.stable_seconds} s after the burst"
            reason = Text(
                "{}: {} (panic: {} wanted ≥ {}% of {} ready{})",
                (driver_reason, _Change(current, desired), raw, pspec.threshold_percent, ready, held),
            )
            return step.done(
                desired,
                reason,
                "Panic",
                driver.trigger,
                panic=True,
                fallback=fallback is not None,
                forecast=predicted,
                floor=floor,
                nodes_for=max(min(lasting, desired), floor),
            )

    # 7. behavior: the sustained recommendation is stabilized; a transient one (a backlog to drain) applies at
    # once within the scale-up policies and is forgotten when the backlog is gone
    stabilized, why, recs = stabilize(b, step.history, sustained, current, t)
    wanted = max(stabilized, raw) if raw > sustained else stabilized
    desired, rule = rate_limit(b, step.history, wanted, current, lo, hi, t)
    # replicas outside [minReplicas, maxReplicas] (set by hand, or the bounds changed) go straight to the
    # bound, whatever the metrics and the rate policies say, as the HPA's reconcile does before its metrics
    if 0 < current < spec.min_replicas and desired < spec.min_replicas:
        desired, rule = spec.min_replicas, "TooFewReplicas"
    elif current > hi:
        desired, rule = hi, "TooManyReplicas"
    # a window limited the step only when the metrics did not get what they wanted (a transient part on top
    # of the sustained one may ask for exactly what the window keeps)
    if rule == "DesiredWithinRange" and wanted == stabilized and stabilized not in (sustained, raw):
        rule = why
    step.history = record(b, step.history, recs, current, desired, t)

    # 8. scale to zero after the idle period, never on a failed activation signal nor under a fallback
    stz = spec.scale_to_zero
    last_active = step.last_active if step.last_active is not None else t
    if (
        stz is not None
        and not active
        and not wake_failed
        and fallback is None
        and t - last_active >= stz.idle_seconds
    ):
        step.history = record(b, step.history, step.history.recs, current, 0, t)
        quiet = ", ".join(sorted(c.wake))
        reason = (
            f"idle for {t - last_active:.0f} s ≥ {stz.idle_seconds} s ({quiet} quiet): {current} → 0 replicas"
        )
        return step.done(0, reason, "ScaleToZero", None, forecast=predicted)

    # 9. the decision (node-pool changes are planned in `done`); "Fallback" when nothing but the fallback
    # count limited it
    if fallback_led and raw == fallback and rule in ("DesiredWithinRange", "ReadyForNewScale"):
        rule = "Fallback"
    if rule in ("DesiredWithinRange", "ReadyForNewScale", "Fallback"):
        reason = Text("{}: {}", (driver_reason, _Change(current, desired)))
    else:
        reason = Text("{}: {}", (driver_reason, _Bound(rule, raw, wanted, current, desired, b)))
    # nodes for what lasts: the stabilized recommendation, but never fewer than minReplicas hold
    lasting = max(min(max(stabilized, spec.min_replicas), desired), floor)
    return step.done(
        desired,
        reason,
        rule,
        driver.trigger,
        fallback=fallback is not None,
        forecast=predicted,
        floor=floor,
        nodes_for=lasting,
    )


def _arrivals(step: _Step, reading: Reading | None) -> None:
    """The short and long rate windows that `reading` shows, added to the arrivals' moments (once per sample:
    a reading seen again, or an older one, changes nothing)."""
    if reading is None or reading.value is None or reading.error is not None:
        return
    series = reading.series
    short, short_s, long_s = (
        series.get(k) for k in ("requestsPerSecondShort", "shortWindowSeconds", "windowSeconds")
    )
    if short is None or short_s is None or long_s is None:
        return
    at = reading.at if reading.at is not None else step.t
    step.arrivals = dsp.observe(step.arrivals, short, reading.value, short_s, long_s, at, step.c.memory_s)


def _followed(step: _Step) -> tuple[Proposal | None, Sizing | None]:
    """The proposal the forecast follows (the first sized by a queueing model — an SLO trigger's —, else the
    one with the largest demand) and, for the former, its queueing model (`Sizing`) that sizes demand into
    replicas (otherwise one replica per replica of work)."""
    for p in step.proposals:
        if p.sizing is not None and not p.failed:
            return p, p.sizing
    best = None
    for p in step.proposals:
        if p.demand is not None and not p.failed and (best is None or p.demand > (best.demand or 0.0)):
            best = p
    return best, None


def _ceil(x: float) -> int:
    return max(0, math.ceil(x - 1e-9))


def _replicas_for(load: float, model: Sizing | None, max_replicas: int) -> int:
    """Replicas for `load` replicas of work: by the proposal's queueing model when it has one."""
    if model is not None:
        return erlang_c_replicas(load, model[0], model[1], model[2], max_replicas, model[3], model[4])
    return _ceil(load)


def _floor(step: _Step, hi: int) -> tuple[int, float | None, tuple[object, ...]]:
    """Replicas for the demand forecast one lead time ahead (Holt, or the seasonal forecast) and for the level
    under which `historyPercentile` % of the recent work arrived; updates the forecast state. A seasonal
    forecast also sets `step.node_floor`, the replicas it expects one node provisioning later. The reason
    comes back as `_FLOOR_REASON` arguments, formatted only if it is the one reported."""
    spec = step.c.policy.spec
    fspec = spec.forecast
    if fspec is None or fspec.seasonality == "none":
        step.seasonal = None  # a seasonal state the spec no longer asks for is not carried (nor stored)
        if fspec is None:
            return 0, None, ()
    p, model = _followed(step)
    if p is None:
        return 0, None, ()
    demand = p.demand or 0.0
    peak = max(demand, p.short_demand or 0.0)
    t = step.t
    horizon = fspec.horizon_seconds if fspec.horizon_seconds is not None else spec.lead.model_start_seconds
    seasonality = fspec.seasonality
    window = fspec.trend_window_seconds if seasonality == "none" else None
    if window is None:
        step.slope = None  # a robust trend the spec no longer asks for is not carried (nor stored)
    if seasonality == "none":
        alpha = fspec.level_smoothing_percent / 100.0
        if window is None:
            step.holt = fc.update(step.holt, demand, t, alpha, fspec.trend_smoothing_percent / 100.0)
            predicted = fc.predict(step.holt, horizon, fspec.band_sigmas_percent / 100.0)
            how = ""
        else:
            # Holt keeps the level (and its error band); the trend is the window's Theil–Sen slope
            step.holt = fc.update(step.holt, demand, t, alpha, 0.0)
            step.slope = fc.slope_update(step.slope, demand, t, window / fc.TREND_BLOCKS)
            predicted = fc.predict(step.holt, horizon, fspec.band_sigmas_percent / 100.0, step.slope.trend)
            how = f" (trend over {window} s)"
    else:
        s = step.seasonal
        if s is None or not fc.seasonal_fits(s, seasonality):  # none yet, or the spec changed its seasons
            s = fc.seasonal_start(seasonality)
        step.seasonal = s = fc.observe(s, demand, t)
        q = fspec.headroom_percentile
        predicted = fc.seasonal_predict(s, t, horizon, q)
        how = f" ({seasonality} seasonality)"
        nodes = step.nodes
        if nodes is not None and nodes.pools:
            # nodes are ready one provisioning after they are asked for, and their replicas one model start
            # later: ask for them for the demand then
            provisioning = max(
                (
                    x.spec.provisioning_seconds
                    for x in nodes.pools
                    if spec.node_pool in (None, x.metadata.name)
                ),
                default=0,
            )
            ahead = fc.seasonal_predict(s, t, horizon + provisioning, q)
            step.node_floor = min(hi, _replicas_for(ahead, model, spec.max_replicas))
    if fspec.history_seconds:
        before = step.demand
        step.demand = fc.add(before, peak, t, float(fspec.history_seconds))
        if step.demand.ranked is not before.ranked:  # the percentile only moves with the values
            step.level = fc.level(step.demand, fspec.history_percentile)
    floor = _ceil(step.level)
    if predicted > demand:  # at or below today's demand the trigger's own proposal already covers it
        floor = max(floor, _replicas_for(predicted, model, spec.max_replicas))
    recent: object = ""
    if fspec.history_seconds:
        recent = Text(_RECENT_REASON, (fspec.history_percentile, fspec.history_seconds, step.level))
    return min(hi, floor), predicted, (predicted, horizon, how, recent)


_FLOOR_REASON = "{:.1f} replicas of work forecast in {} s{}{}"
_RECENT_REASON = ", p{} of the last {} s at {:.1f}"


def _node_changes(
    policy: ScalingPolicy, nodes: NodeView, want: int, now: float, desired: int | None = None
) -> tuple[NodePoolChange, ...]:
    """Nodes for `want` replicas: reopen cordoned nodes, then add nodes for replicas that fit no node; or,
    with room to spare, remove idle empty nodes and cordon under-used ones. Nodes added for more than the
    `desired` replicas are pre-warmed for a forecast, and their reason says so."""
    spec = policy.spec
    pools = tuple(p for p in nodes.pools if spec.node_pool is None or p.metadata.name == spec.node_pool)
    if not pools:
        return ()
    per = max(1, spec.gpus_per_replica)
    pending = want - nodes.scheduled
    if pending > 0:
        free = sum(n.gpus - n.gpus_requested for n in nodes.nodes if not n.cordoned)
        short = pending * per - free
        if short > 0:
            opened = [c for c in (reopen(pool, nodes.nodes, short) for pool in pools) if c is not None]
            if opened:
                return tuple(opened)
        group = replica_pods(f"{policy.metadata.name}-pending", spec.pod_requests, pending)
        counts: dict[str, int] = {}
        for n in nodes.nodes:
            counts[n.pool] = counts.get(n.pool, 0) + 1
        plan = plan_node_pools([group], pools, nodes.snapshot, counts, spec.lead.model_start_seconds)
        if desired is not None and want > desired:
            ahead = f"the forecast expects {_plural(want)} by the time new nodes are ready ({desired} now): "
            return tuple(replace(c, reason=ahead + c.reason) for c in plan.changes)
        return plan.changes
    changes = [c for c in (scale_down(pool, nodes.nodes, now) for pool in pools) if c is not None]
    removed = {n for c in changes for n in c.remove}
    rest = [n for n in nodes.nodes if n.name not in removed]
    for pool in pools:
        c = consolidate(pool, rest, want * per)
        if c is not None:
            changes.append(c)
    return tuple(changes)


def pool_nodes(
    pool: NodePool,
    rows: Sequence[tuple[str, int, int, bool, bool]],
    previous: Mapping[str, PoolNode],
    now: float,
) -> tuple[PoolNode, ...]:
    """PoolNodes from (name, GPUs, GPUs requested, ready, cordoned) rows, carrying `below_since` over from
    `previous`; a node's idle clock starts once it is ready."""
    out = []
    for name, gpus, requested, ready, cordoned in rows:
        since: float | None = None
        if ready and below_threshold(pool, requested, gpus):
            old = previous.get(name)
            since = old.below_since if old is not None and old.below_since is not None else now
        out.append(PoolNode(name, pool.metadata.name, gpus, requested, since, cordoned, ready))
    return tuple(out)
