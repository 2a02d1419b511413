"""The frontier sweep: each controller's main knob and its grid, the replay of one setting, and the report
that places the points on their frontiers (`autoscaler.replay.frontier`).

Every point replays the trace in the same simulator from the same start as the backtest, with everything but
the knob as in the policy; the service model — the SLO violations are counted against — is the policy's own
whatever the knob. The knobs:

- tidescale (`TIDESCALE_KNOBS`): by default the objective its SLO trigger sizes for,
  `latency.targetMilliseconds` (`slo-target`), when the policy has one — or, when that trigger spends its
  error budget by worth, `latency.lateRequestsPerReplicaHour` (`late-requests`) —, else the target of its
  first GPUUtilization, QueueDepth or Prometheus trigger (`trigger-target`); or, asked for, the capacity its
  forecast holds, `forecast.historyPercentile` (`history-percentile`);
- hpa: the target utilisation (%) of its GPU Pods metric when the policy has a GPU trigger, else its first
  metric's target;
- keda: the threshold of its first scaler (the queue depth's per-replica threshold in the examples);
- kpa: the target concurrency per pod (Knative's `target`: containerConcurrency × target utilisation).

Default grids, each with the policy's own value: that value times 1/4, 1/2, 1, 2, 4 and 8 for targets that
are amounts (a queue threshold), and times 1/4 to 64 (`SLO_FACTORS`) for tidescale's SLO objective; 30–90 %
for a GPU utilisation target; 50–95 for a history percentile; the replica's batch size times 0.3, 0.5, 0.7
(Knative's default), 0.85, 1 and 1.5 for Knative.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from autoscaler.api.policy import (
    UTILIZATION_FIELDS,
    GPUUtilizationTrigger,
    NodePool,
    PrometheusTrigger,
    QueueDepthTrigger,
    ScalingPolicy,
    SLOTrigger,
)
from autoscaler.core.triggers import TriggerRegistry
from autoscaler.replay import frontier
from autoscaler.replay.backtest import BASELINES, BaselineController
from autoscaler.replay.baselines import hpa, keda, kpa
from autoscaler.replay.ports import LoopController
from autoscaler.replay.service_model import ServiceModel
from autoscaler.replay.simulator import Controller, Result, replay
from autoscaler.replay.trace import Requests

CONTROLLERS = ("tidescale", *BASELINES)
TIDESCALE_KNOBS = ("slo-target", "late-requests", "trigger-target", "history-percentile")
AMOUNT_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
# An SLO objective moves tidescale less than a target moves a baseline (its other triggers and the capacity it
# holds stay), so its grid reaches further to cover the violations the baselines' grids cover.
SLO_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0, 16.0, 64.0)
# A replica's worth in late requests an hour: the fewer, the more replicas held
WORTH_FACTORS = (0.0625, 0.25, 0.5, 1.0, 2.0, 4.0, 16.0)
UTILIZATION_GRID = (30.0, 45.0, 60.0, 70.0, 80.0, 90.0)
PERCENTILE_GRID = (50.0, 60.0, 70.0, 80.0, 90.0, 95.0)
CONCURRENCY_FACTORS = (0.3, 0.5, 0.7, 0.85, 1.0, 1.5)


class NoKnob(ValueError):
    """The policy gives a controller nothing to sweep (or a grid value it cannot take)."""


@dataclass(frozen=True)
class Knob:
    controller: str
    setting: str  # what is swept, with its unit
    default: float  # the value the policy gives it
    grid: tuple[float, ...]
    integer: bool = False  # the field takes whole numbers
    kind: str = ""  # tidescale's: one of TIDESCALE_KNOBS

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"setting": self.setting, "policy_value": self.default, "grid": list(self.grid)}
        if self.kind:
            out["knob"] = self.kind
        return out


def _amounts(default: float, integer: bool, factors: tuple[float, ...] = AMOUNT_FACTORS) -> tuple[float, ...]:
    values = [default * f for f in factors]
    if integer:
        values = [float(max(1, round(v))) for v in values]
    return tuple(sorted(set(values)))


def _with(grid: tuple[float, ...], default: float) -> tuple[float, ...]:
    return tuple(sorted({*grid, default}))


def _tidescale_trigger(policy: ScalingPolicy, kind: str) -> tuple[int, str, float, bool]:
    """(trigger index, setting, value, integer) of the trigger tidescale's knob turns."""
    triggers = policy.spec.triggers
    for i, t in enumerate(triggers):
        if isinstance(t, SLOTrigger) and kind == "slo-target":
            ms = float(t.latency.target_milliseconds)
            return i, f"{t.name or 'SLO'} latency.targetMilliseconds", ms, True
        if isinstance(t, SLOTrigger) and kind == "late-requests" and t.latency.late_requests_per_replica_hour:
            worth = t.latency.late_requests_per_replica_hour
            return i, f"{t.name or 'SLO'} latency.lateRequestsPerReplicaHour", worth, False
    if kind == "slo-target":
        raise NoKnob("tidescale: slo-target needs an SLO trigger in the policy")
    if kind == "late-requests":
        raise NoKnob("tidescale: late-requests needs an SLO trigger with latency.lateRequestsPerReplicaHour")
    for i, t in enumerate(triggers):
        if isinstance(t, GPUUtilizationTrigger):
            return i, f"{t.name or 'gpu'} target (%)", float(t.target), True
        if isinstance(t, QueueDepthTrigger):
            return i, f"{t.name or 'queue'} targetPerReplica", float(t.target_per_replica), True
        if isinstance(t, PrometheusTrigger):
            return i, f"{t.name or 'prometheus'} target", float(t.target), False
    raise NoKnob(
        "tidescale: the policy has no SLO, GPUUtilization, QueueDepth or Prometheus trigger to sweep"
    )


def _default_kind(policy: ScalingPolicy) -> str:
    """tidescale's knob when none is asked for: its SLO trigger's error-budget setting (the worth of a replica
    when it states one, else the latency objective), else the target of its first other trigger."""
    slo = [t for t in policy.spec.triggers if isinstance(t, SLOTrigger)]
    if not slo:
        return "trigger-target"
    return "late-requests" if slo[0].latency.late_requests_per_replica_hour else "slo-target"


def knob(controller: str, policy: ScalingPolicy, model: ServiceModel, kind: str | None = None) -> Knob:
    """`controller`'s main knob for this policy, with its default grid; `kind` chooses tidescale's (one of
    `TIDESCALE_KNOBS`; default: slo-target with an SLO trigger, else trigger-target)."""
    if controller == "tidescale":
        kind = kind or _default_kind(policy)
        if kind not in TIDESCALE_KNOBS:
            raise NoKnob(f"tidescale: no knob {kind!r} (known: {', '.join(TIDESCALE_KNOBS)})")
        if kind == "history-percentile":
            f = policy.spec.forecast
            if f is None or not f.history_seconds:
                raise NoKnob("tidescale: history-percentile needs forecast.historySeconds in the policy")
            value = float(f.history_percentile)
            grid = _with(PERCENTILE_GRID, value)
            return Knob(controller, "forecast.historyPercentile", value, grid, True, kind)
        _, setting, value, integer = _tidescale_trigger(policy, kind)
        if "%" in setting:
            return Knob(controller, setting, value, _with(UTILIZATION_GRID, value), integer, kind)
        factors = {"slo-target": SLO_FACTORS, "late-requests": WORTH_FACTORS}.get(kind, AMOUNT_FACTORS)
        return Knob(controller, setting, value, _amounts(value, integer, factors), integer, kind)
    if controller == "hpa":
        metrics = hpa.metrics_of(policy)
        if not metrics:
            raise NoKnob("hpa: the policy has no GPU, queue or Prometheus signal an HPA can read")
        pods = next((m for m in metrics if isinstance(m, hpa.PodsMetric)), None)
        if pods is not None:
            pct = round(pods.target * UTILIZATION_FIELDS[pods.metric], 3)
            grid = _with(UTILIZATION_GRID, pct)
            return Knob(controller, f"{pods.name} target utilization (%)", pct, grid)
        m = metrics[0]
        kind = m.target_type if isinstance(m, hpa.ExternalMetric) else "AverageValue"
        return Knob(controller, f"{m.name} {kind} target", m.target, _amounts(m.target, False))
    if controller == "keda":
        scalers = keda.scalers_of(policy)
        if not scalers:
            raise NoKnob("keda: the policy has no queue, Prometheus or GPU signal a KEDA scaler can read")
        s = scalers[0]
        return Knob(controller, f"{s.name} threshold", s.threshold, _amounts(s.threshold, False))
    if controller == "kpa":
        batch = float(model.batch_size)
        grid = tuple(round(batch * f, 3) for f in CONCURRENCY_FACTORS)
        value = round(batch * kpa.TARGET_UTILIZATION, 3)
        return Knob(controller, "target concurrency per pod", value, _with(grid, value))
    raise NoKnob(f"no controller {controller!r} (known: {', '.join(CONTROLLERS)})")


def with_grid(k: Knob, values: Sequence[float]) -> Knob:
    """`k` over these values (the ones given on the command line)."""
    top = 100 if k.kind == "history-percentile" else math.inf
    bad = [v for v in values if v <= 0 or v > top or (k.integer and v != round(v))]
    if bad or not values:
        want = "whole numbers ≥ 1" if k.integer else "numbers > 0"
        want += " up to 100" if top <= 100 else ""
        raise NoKnob(f"--grid {k.controller}: {k.setting} takes {want}, got {', '.join(map(str, values))}")
    return replace(k, grid=tuple(sorted(set(values))))


def tidescale_policy(policy: ScalingPolicy, value: float, kind: str = "") -> ScalingPolicy:
    """The policy with tidescale's knob (`kind`, default as `knob` chooses) set to `value`."""
    spec = policy.spec
    if kind == "history-percentile":
        if spec.forecast is None:
            raise NoKnob("tidescale: history-percentile needs a forecast in the policy")
        forecast = spec.forecast.model_copy(update={"history_percentile": round(value)})
        return policy.model_copy(update={"spec": spec.model_copy(update={"forecast": forecast})})
    kind = kind or _default_kind(policy)
    i, _, _, integer = _tidescale_trigger(policy, kind)
    t = policy.spec.triggers[i]
    v: float | int = round(value) if integer else value
    if isinstance(t, SLOTrigger):
        field = "late_requests_per_replica_hour" if kind == "late-requests" else "target_milliseconds"
        t2: Any = t.model_copy(update={"latency": t.latency.model_copy(update={field: v})})
    elif isinstance(t, GPUUtilizationTrigger | PrometheusTrigger):
        t2 = t.model_copy(update={"target": v})
    else:
        t2 = t.model_copy(update={"target_per_replica": v})
    triggers = [*policy.spec.triggers[:i], t2, *policy.spec.triggers[i + 1 :]]
    return policy.model_copy(update={"spec": policy.spec.model_copy(update={"triggers": triggers})})


def controller_at(
    name: str,
    value: float,
    policy: ScalingPolicy,
    pool: NodePool,
    model: ServiceModel,
    triggers: TriggerRegistry,
    kind: str = "",
) -> Controller:
    """The replayed controller `name` with its knob (tidescale's: `kind`) at `value`, everything else as in
    the policy."""
    if name == "tidescale":
        return LoopController(tidescale_policy(policy, value, kind), pool, triggers)
    baseline: Any
    if name == "hpa":
        base = hpa.from_policy(policy, model)
        metrics = list(base.spec.metrics)
        i = next((j for j, m in enumerate(metrics) if isinstance(m, hpa.PodsMetric)), 0)
        m = metrics[i]
        target = value / UTILIZATION_FIELDS[m.metric] if isinstance(m, hpa.PodsMetric) else value
        metrics[i] = replace(m, target=target)
        baseline = hpa.Hpa(replace(base.spec, metrics=tuple(metrics)))
    elif name == "keda":
        scalers = list(keda.scalers_of(policy))
        scalers[0] = replace(scalers[0], threshold=value)
        baseline = keda.ScaledObject(tuple(scalers), policy.spec.min_replicas, policy.spec.max_replicas)
    elif name == "kpa":
        batch = float(model.batch_size)
        baseline = kpa.Kpa(
            policy.spec.min_replicas,
            policy.spec.max_replicas,
            container_concurrency=batch,
            target_utilization=value / batch,
        )
    else:
        raise NoKnob(f"no controller {name!r} (known: {', '.join(CONTROLLERS)})")
    return BaselineController(baseline, pool, policy)


def replay_point(
    name: str,
    value: float,
    requests: Requests,
    policy: ScalingPolicy,
    pool: NodePool,
    model: ServiceModel,
    triggers: TriggerRegistry,
    kind: str = "",
    measure_from: float = 0.0,
    baseline_policy: ScalingPolicy | None = None,
) -> Result:
    """One point of the sweep: the trace replayed under `name` with its knob (tidescale's: `kind`) at
    `value`, counted from `measure_from` (`simulator.replay`); a baseline reads its signals from
    `baseline_policy` when given (the policy before a change, say), else from `policy`."""
    source = policy if name == "tidescale" or baseline_policy is None else baseline_policy
    controller = controller_at(name, value, source, pool, model, triggers, kind)
    return replay(requests, model, controller, measure_from=measure_from)


# --- the report -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One replayed point: the controller, its knob's value and what the replay measured."""

    controller: str
    value: float
    row: Mapping[str, Any]  # `Result.row()`
    config: str = ""

    @property
    def point(self) -> frontier.Point:
        return frontier.Point(self.value, float(self.row["gpu_hours"]), float(self.row["slo_violations"]))


@dataclass(frozen=True)
class Report:
    trace: str
    requests: int
    policy: str
    model: ServiceModel
    knobs: Mapping[str, Knob]
    runs: Mapping[str, tuple[Run, ...]]  # by controller, in grid order
    frontiers: Mapping[str, frontier.Frontier]
    savings: Mapping[str, frontier.Saving]  # by baseline, and "best" (the lowest of them at each level)
    notes: tuple[str, ...] = ()
    measured_from_s: float = 0.0  # GPU-hours and violations count from here (`replay_point`)

    def render_json(self) -> dict[str, Any]:
        points: dict[str, list[dict[str, Any]]] = {}
        for name, runs in self.runs.items():
            on = set(self.frontiers.get(name, ()))
            points[name] = [
                {"value": r.value, **r.row, "frontier": r.point in on, "config": r.config} for r in runs
            ]
        return {
            "trace": self.trace,
            "requests": self.requests,
            "trace_notes": list(self.notes),
            "measured_from_s": self.measured_from_s,
            "policy": self.policy,
            "service_model": self.model.render(),
            "knobs": {name: k.render() for name, k in self.knobs.items()},
            "points": points,
            "frontiers": {
                name: [[p.violations, round(p.gpu_hours, 3)] for p in f] for name, f in self.frontiers.items()
            },
            "savings": {name: s.render() for name, s in self.savings.items()},
        }


def report(
    trace: str,
    requests: int,
    policy: str,
    model: ServiceModel,
    knobs: Mapping[str, Knob],
    runs: Sequence[Run],
    notes: Sequence[str] = (),
    samples: int = frontier.SAMPLES,
    measured_from_s: float = 0.0,
) -> Report:
    """Every run placed: each controller's lower frontier and tidescale's saving against each baseline's."""
    by: dict[str, list[Run]] = {name: [] for name in knobs}
    for r in runs:
        by.setdefault(r.controller, []).append(r)
    ordered = {name: tuple(sorted(rs, key=lambda r: r.value)) for name, rs in by.items()}
    fronts = {name: frontier.lower_frontier([r.point for r in rs]) for name, rs in ordered.items()}
    ours = fronts.get("tidescale", ())
    others = [name for name in fronts if name != "tidescale"]
    savings = {name: frontier.saving(ours, [fronts[name]], samples) for name in others}
    if len(others) > 1:
        savings["best"] = frontier.saving(ours, [fronts[name] for name in others], samples)
    return Report(
        trace, requests, policy, model, knobs, ordered, fronts, savings, tuple(notes), measured_from_s
    )


def format_report(rep: Report) -> str:
    lines = [
        f"trace: {rep.trace} ({rep.requests:,} requests); policy {rep.policy}",
        *(f"  {n}" for n in rep.notes),
        *(
            [f"  counted from {rep.measured_from_s:g} s: the start-up before it is left out"]
            if rep.measured_from_s
            else []
        ),
        *(f"  {d}" for d in rep.model.describe()),
        "",
    ]
    for name, runs in rep.runs.items():
        k = rep.knobs.get(name)
        on = set(rep.frontiers.get(name, ()))
        lines.append(f"{name}: {k.setting} (policy: {k.default:g})" if k else name)
        lines.append(
            f"  {'value':>10} {'GPU-h':>9} {'node GPU-h':>10} {'SLO viol.':>10} {'p99 s':>8}  frontier"
        )
        for r in runs:
            p99 = r.row.get("p99_latency_s")
            lines.append(
                f"  {r.value:>10g} {r.row['gpu_hours']:>9.2f} {r.row['node_gpu_hours']:>10.2f} "
                f"{r.row['slo_violations']:>10,} {'-' if p99 is None else f'{p99:.1f}':>8}  "
                f"{'*' if r.point in on else ''}"
            )
        lines.append("")
    lines.append("tidescale's GPU-hour saving at equal violations (1 − ours ÷ theirs, along both frontiers):")
    for name, s in rep.savings.items():
        if s.median is None:
            lines.append(f"  vs {name:<5} -  ({s.reason})")
            continue
        if s.bound:
            lines.append(
                f"  vs {name:<5} {s.bound} median {s.median:+.1%}, min {s.min:+.1%}, max {s.max:+.1%} "
                f"({s.reason})"
            )
            continue
        lines.append(
            f"  vs {name:<5} median {s.median:+.1%}, min {s.min:+.1%}, max {s.max:+.1%} "
            f"over {s.low:,.0f}–{s.high:,.0f} violations ({s.samples} levels)"
        )
    return "\n".join(lines)
