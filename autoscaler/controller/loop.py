"""The reconcile loop: observe, decide, act, record — for every ScalingPolicy, woken by events and swept
periodically as the safety net.

`Controller.reconcile_once(now)` is one step: (1) choose the policies to reconcile — woken ones (policy
change, Kafka lag jump, Alertmanager alert, pending GPU pod), those with a trigger due for polling, and all of
them when the sweep period has passed; (2) read their due triggers in batches (one query per trigger kind,
`sources`); (3) decide each with the pure core (`autoscaler.core.decide`); (4) act: patch /scale, change node
pools; (5) record: events to the sinks, conditions and state to the status (written off the loop's thread).
`run()` repeats it until stopped. Tests and benchmarks drive `reconcile_once` directly.

Errors are sorted once: a policy that does not validate is `Ready=False` with the reason and is skipped until
its spec changes; a target that cannot be read is `Ready=False` until it can; a failed metric becomes the
decision's failed proposal (fallback, never a silent zero). The act step returns an `ActResult`, and the
decision's state (the behaviour history: recommendations, scale times) is kept only when the act step did
what the decision asked, so the history never shows a scale that did not happen. A failed /scale patch is
sorted by its `kernel.errors` type: a target that is gone (`NotFound`) is `Ready=False` TargetNotFound, with
a Warning Event once, and is not patched again until the view shows it back; a refusal (`PermanentError`:
403, 422) is `Ready=False` ScaleFailed with a Warning Event and is retried once per sync period; a conflict
or an API server that failed or did not answer (`TemporaryError`) is retried with backoff (`retry_seconds`
doubling up to the sync period; the policy is neither read nor decided before its retry time) and reported
the same way once `act_retries` retries have failed. Anything unexpected is logged with its traceback and the
loop goes on. Failures are counted by kind in `CycleReport.failures`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from autoscaler.api.policy import NodePool, ScalingPolicy
from autoscaler.controller import problems
from autoscaler.controller.kube import conditions, persisted
from autoscaler.controller.kube.selectors import Selector, parse
from autoscaler.controller.pools.nodes_view import node_view
from autoscaler.controller.ports import (
    ActFailure,
    EventSink,
    MetricRequest,
    NodePoolProvider,
    PoolChangeResult,
    ReadingKey,
    ReplicaTarget,
    ScaleView,
    ScalingEvent,
)
from autoscaler.controller.problems import Problem
from autoscaler.core.decide import (
    CompiledPolicy,
    Decision,
    NodeView,
    PolicyState,
    Text,
    compile_policy,
    decide,
)
from autoscaler.core.deletion_cost import PlacedPod, deletion_costs
from autoscaler.core.events import record
from autoscaler.core.nodepool import PoolNode
from autoscaler.core.triggers import Observations, Reading, TriggerRegistry
from kernel.clock import SYSTEM_CLOCK, Clock
from kernel.errors import Conflict, NotFound, PermanentError, TemporaryError

log = logging.getLogger(__name__)

# Decisions worth an event even when nothing changed: refusals that explain why replicas did not move. (No
# metric at all is told by the misconfiguration tracker, once, on the policy: `problems`.)
_REFUSALS = frozenset(
    {
        "TooManyReplicas",
        "TooFewReplicas",
        "ScaleUpLimit",
        "ScaleDownLimit",
        "ScaleUpStabilized",
        "ScaleDownStabilized",
        "Fallback",
        "PartialMetrics",
    }
)

# the reason a failure told in an Event clears as, told in a Normal Event
_RECOVERED = {"TargetNotFound": ("TargetFound", "the target exists again")}


@dataclass(frozen=True)
class ControllerConfig:
    sync_seconds: float = 15.0  # the safety-net sweep over every policy (HPA's sync period)
    tick_seconds: float = 0.1  # how long the loop sleeps when nothing wakes it
    # How often triggers of a kind are polled when they set no pollSeconds, over the kind's own default
    # (`TriggerType.poll_seconds`: every second for KafkaLag, the lag watch) and then the sweep.
    poll_seconds: Mapping[str, float] = field(default_factory=dict)
    state_every_seconds: float = 15.0  # how often an unchanged decision still writes its state
    # a failed /scale patch that may pass next time (conflict, server error, no answer) is retried after
    # `retry_seconds`, doubling up to the sync period; once `act_retries` retries failed, it is reported
    retry_seconds: float = 1.0
    act_retries: int = 3
    # replicas of a policy with a nodePool that hold no node this long, with no node being added, are
    # reported (condition PodsScheduled=False); shorter waits are the scheduler's and the provisioner's
    pending_seconds: float = 30.0


class StatusSink(Protocol):
    def write(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...


class Targets(Protocol):
    """The /scale view of a target (from an informer where one exists), its pods, and their deletion cost."""

    def view(self, namespace: str, api_version: str, kind: str, name: str) -> ScaleView: ...

    def pods(self, namespace: str, selector: Selector, fresh: bool = False) -> list[PlacedPod]:
        """The live pods the selector matches, with their node and deletion cost; `fresh`: as the API server
        has them now, not as a watch last told."""
        ...

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        """Set the pod's `controller.kubernetes.io/pod-deletion-cost`. Raises `NotFound` when the pod is gone,
        a `TemporaryError` when the API server failed or did not answer, `PermanentError` when it refused."""
        ...


ReadMetrics = Callable[[Sequence[MetricRequest], float], Mapping[ReadingKey, Reading]]


@dataclass
class Entry:
    """One ScalingPolicy as the controller holds it."""

    key: str
    namespace: str
    name: str
    generation: int
    policy: ScalingPolicy | None = None
    compiled: CompiledPolicy | None = None  # the policy compiled against the controller's trigger registry
    error: str | None = None
    state: PolicyState | None = None
    readings: dict[str, Reading] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)  # trigger name → next poll time
    last: Decision | None = None
    status_conditions: list[dict[str, object]] = field(default_factory=list)
    state_written_at: float = 0.0
    last_scale_time: str | None = None
    pool_nodes: dict[str, PoolNode] = field(default_factory=dict)
    announced: tuple[str, int] | None = None  # the last refusal sent to the sinks (rule, desired)
    act_failures: int = 0  # failed act steps in a row
    retry_at: float | None = None  # after a failed act step: not read nor decided before this time
    reported: str | None = None  # the failure reason in the status and told in an Event, until it clears
    gone: str | None = None  # the resourceVersion of the view whose patch found the target gone


@dataclass(frozen=True)
class CycleReport:
    at: float
    reconciled: int
    decided: int
    scaled: int
    requests: int
    seconds: float
    errors: int = 0  # unexpected exceptions (logged with their traceback)
    # failed act steps and unexpected exceptions by kind: NotFound, Conflict, Temporary, Permanent, Unexpected
    # (and DeletionCost: pod-deletion-cost annotations not set before a scale-down, which went ahead)
    failures: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ActResult:
    """What the act step did: the /scale patch, the node-pool changes, or why it could not act (then nothing
    was changed)."""

    scaled: bool = False  # the /scale patch was made
    acted: bool = False  # the patch or a node-pool change was made
    pools: tuple[PoolChangeResult, ...] = ()
    failure: ActFailure | None = None
    # before a scale-down of a target whose nodes the controller plans: pod-deletion-cost annotations set,
    # and those that failed ("pod: why"; the scale-down went ahead without them)
    deletion_costs: int = 0
    deletion_cost_failures: tuple[str, ...] = ()


class Controller:
    """The loop's state and steps. Thread-safe entry points: `upsert`, `remove`, `wake`, `upsert_pool`."""

    def __init__(
        self,
        targets: Targets,
        scaler: ReplicaTarget,
        read_metrics: ReadMetrics,
        sinks: Sequence[EventSink] = (),
        status: StatusSink | None = None,
        providers: Mapping[str, NodePoolProvider] | None = None,
        config: ControllerConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
        on_cycle: Callable[[CycleReport, bool], None] | None = None,
        *,
        registry: TriggerRegistry,
    ) -> None:
        self.registry = registry  # the trigger types policies are compiled against
        self.on_cycle = on_cycle  # (report, whether it was a sweep over every policy)
        self.targets = targets
        self.scaler = scaler
        self.read_metrics = read_metrics
        self.sinks = list(sinks)
        self.status = status
        self.providers = dict(providers or {})
        self.config = config or ControllerConfig()
        self.clock = clock
        self.entries: dict[str, Entry] = {}
        self.pools: dict[str, NodePool] = {}
        self.problems = problems.Tracker()  # misconfigurations: told when they start and when they clear
        self._lock = threading.Lock()
        self._woken: dict[str, str] = {}  # key → why
        self._woken_at: dict[str, float] = {}  # key → monotonic time of the first unserved wake
        self._wake_event = threading.Event()
        self._last_sweep = 0.0
        self._status_queue: dict[tuple[str, str], dict[str, Any]] = {}
        self._status_lock = threading.Lock()
        self._status_event = threading.Event()
        self.last_cycle: CycleReport | None = None
        self.cycle_seconds: list[float] = []  # full sweeps only

    # --- inputs from the watches and the webhook ------------------------------------------------------

    def upsert(self, obj: Mapping[str, Any]) -> Entry:
        """A ScalingPolicy object was added or changed: validate it and wake it."""
        meta = obj.get("metadata", {})
        ns, name = str(meta.get("namespace", "default")), str(meta.get("name", ""))
        key = f"{ns}/{name}"
        generation = int(meta.get("generation") or 0)
        with self._lock:
            entry = self.entries.get(key)
            if entry is not None and entry.generation == generation and entry.policy is not None:
                return entry  # a status write or a no-op update
            fresh = Entry(key, ns, name, generation)
            if entry is not None:  # keep what the controller learnt about this target
                fresh.state, fresh.readings, fresh.last = entry.state, entry.readings, entry.last
                fresh.status_conditions, fresh.last_scale_time = (
                    entry.status_conditions,
                    entry.last_scale_time,
                )
                fresh.pool_nodes = entry.pool_nodes
                fresh.reported, fresh.gone = entry.reported, entry.gone  # a new spec does not bring it back
            else:
                fresh.status_conditions = list((obj.get("status") or {}).get("conditions") or [])
                fresh.last_scale_time = (obj.get("status") or {}).get("lastScaleTime")
            doc = {k: obj[k] for k in ("apiVersion", "kind", "spec") if k in obj}
            doc["metadata"] = {"name": name, "namespace": ns, "labels": meta.get("labels") or {}}
            try:
                fresh.policy = ScalingPolicy.model_validate(doc)
                fresh.compiled = compile_policy(fresh.policy, self.registry)
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                fresh.error = f"{key}: {where}: {first['msg']}" + (
                    f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
                )
            except KeyError as e:  # a trigger type this controller was not given
                fresh.policy, fresh.error = None, f"{key}: spec.triggers: {e.args[0]}"
            if fresh.policy is not None and fresh.state is None:
                restored, why = persisted.load((obj.get("status") or {}).get("state"))
                if restored is not None:
                    spec = fresh.policy.spec
                    pct = spec.forecast.history_percentile if spec.forecast else None
                    fresh.state = persisted.restore_level(restored, pct)
                log.debug("%s: state %s", key, why)
            self.entries[key] = fresh
        if fresh.error is not None:
            log.warning("invalid ScalingPolicy %s", fresh.error)
            self._queue_status(fresh, conditions.invalid("InvalidSpec", fresh.error), {})
        self.wake([key], "policy changed")
        return fresh

    def remove(self, key: str) -> None:
        with self._lock:
            self.entries.pop(key, None)
            self._woken.pop(key, None)
        self.problems.forget(key)

    def upsert_pool(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata", {})
        doc = {k: obj[k] for k in ("apiVersion", "kind", "spec") if k in obj}
        doc["metadata"] = {"name": meta.get("name"), "namespace": meta.get("namespace") or "default"}
        try:
            pool = NodePool.model_validate(doc)
        except ValidationError as e:
            log.warning("invalid NodePool %s: %s", meta.get("name"), e.errors()[0]["msg"])
            return
        with self._lock:
            self.pools[pool.metadata.name] = pool
        self.wake(self.policies_of_pool(pool.metadata.name), "node pool changed")

    def remove_pool(self, name: str) -> None:
        with self._lock:
            self.pools.pop(name, None)

    def policies_of_pool(self, pool: str) -> list[str]:
        with self._lock:
            return [
                k for k, e in self.entries.items() if e.policy is not None and e.policy.spec.node_pool == pool
            ]

    def wake(self, keys: Iterable[str], why: str) -> None:
        """Reconcile these policies at the next step (at once when the loop is idle)."""
        at = self.clock.monotonic()
        with self._lock:
            for k in keys:
                self._woken.setdefault(k, why)
                self._woken_at.setdefault(k, at)
        self._wake_event.set()

    def find(self, labels: Mapping[str, str]) -> list[str]:
        """Policies an alert's labels point at: `scalingpolicy` (+`namespace`), or `namespace` + the target's
        name as `deployment`/`statefulset`/`target`."""
        ns = labels.get("namespace")
        name = labels.get("scalingpolicy") or labels.get("scaling_policy")
        target = labels.get("deployment") or labels.get("statefulset") or labels.get("target")
        with self._lock:
            out = []
            for k, e in self.entries.items():
                if ns and e.namespace != ns:
                    continue
                by_name = bool(name) and e.name == name
                by_target = bool(target) and e.policy is not None and e.policy.spec.target_ref.name == target
                if by_name or by_target:
                    out.append(k)
            return out

    # --- one step ---------------------------------------------------------------------------------------

    def reconcile_once(self, now: datetime | None = None, full: bool | None = None) -> CycleReport:
        moment = now or self.clock.now()
        t = moment.timestamp()
        start = self.clock.monotonic()
        sweep = full if full is not None else t - self._last_sweep >= self.config.sync_seconds
        # 1. choose: woken, due for polling, or all of them on a sweep
        with self._lock:
            woken, self._woken = self._woken, {}
            woken_at, self._woken_at = self._woken_at, {}
            entries = [e for e in self.entries.values() if e.policy is not None]
        if sweep:
            self._last_sweep = t
        chosen: list[tuple[Entry, list[str]]] = []  # entry, trigger names to read now
        retrying: set[str] = set()
        for e in entries:
            assert e.policy is not None
            if e.retry_at is not None:
                if t < e.retry_at:
                    continue  # backing off after a failed act step: a wake or a sweep waits for it too
                retrying.add(e.key)
                e.retry_at = None  # set again if this try fails too
            everything = sweep or e.key in woken or e.key in retrying
            names = self._due(e, t, everything=everything)
            if names or everything:
                chosen.append((e, names))
        # 2. read the due triggers of every chosen policy, in batches
        views: dict[str, ScaleView | Exception] = {}
        requests: list[MetricRequest] = []
        for e, names in chosen:
            view = self._view(e)
            views[e.key] = view
            if names:
                requests.extend(self._requests(e, names, view, t))
        readings = self.read_metrics(requests, t) if requests else {}
        fresh: set[str] = set()
        for (policy_key, trigger), reading in readings.items():
            entry = self.entries.get(policy_key)
            if entry is not None:
                entry.readings[trigger] = replace(reading, read_at=t)  # failures count per read
                fresh.add(policy_key)
        # 3–5. decide, act, record
        decided = scaled = errors = 0
        failures: dict[str, int] = {}
        for e, _ in chosen:
            if not (sweep or e.key in woken or e.key in fresh or e.key in retrying):
                continue
            try:
                d, act = self._reconcile(e, views[e.key], moment, t, woken_at.get(e.key))
            except Exception:  # one policy's surprise must not stop the others
                errors += 1
                failures["Unexpected"] = failures.get("Unexpected", 0) + 1
                log.exception("reconciling %s", e.key)
                continue
            if act.failure is not None:
                failures[act.failure.kind] = failures.get(act.failure.kind, 0) + 1
            if act.deletion_cost_failures:
                failures["DeletionCost"] = failures.get("DeletionCost", 0) + len(act.deletion_cost_failures)
            if d is not None:
                decided += 1
                scaled += act.acted
        report = CycleReport(
            t, len(chosen), decided, scaled, len(requests), self.clock.monotonic() - start, errors, failures
        )
        self.last_cycle = report
        if sweep:
            self.cycle_seconds.append(report.seconds)
            del self.cycle_seconds[:-1000]
        if self.on_cycle is not None and (sweep or decided or failures):
            self.on_cycle(report, sweep)
        return report

    def _due(self, e: Entry, t: float, everything: bool) -> list[str]:
        c = e.compiled
        assert c is not None
        names = []
        for trig, name, kind in zip(c.triggers, c.names, c.types, strict=True):
            if kind.source is None:  # computed from `now` alone
                continue
            every = (
                trig.poll_seconds
                or self.config.poll_seconds.get(kind.type)
                or kind.poll_seconds
                or self.config.sync_seconds
            )
            if everything or t >= e.due.get(name, 0.0):
                names.append(name)
                e.due[name] = t + every
        return names

    def _view(self, e: Entry) -> ScaleView | Exception:
        assert e.policy is not None
        ref = e.policy.spec.target_ref
        try:
            return self.targets.view(e.namespace, ref.api_version, ref.kind, ref.name)
        except (TemporaryError, PermanentError) as err:
            return err

    def _requests(
        self, e: Entry, names: list[str], view: ScaleView | Exception, t: float
    ) -> list[MetricRequest]:
        c = e.compiled
        assert c is not None
        pods: frozenset[str] = frozenset()
        wanted = set(names)
        out = []
        for trig, name, kind in zip(c.triggers, c.names, c.types, strict=True):
            if name not in wanted:
                continue
            if kind.needs_pods and not pods and isinstance(view, ScaleView):
                try:
                    pods = frozenset(p.name for p in self.targets.pods(e.namespace, parse(view.selector)))
                except PermanentError as err:
                    e.readings[name] = Reading(error=str(err), read_at=t)
                    continue
            out.append(MetricRequest(e.key, name, trig, e.namespace, pods))
        return out

    def _reconcile(
        self, e: Entry, view: ScaleView | Exception, moment: datetime, t: float, woken_at: float | None = None
    ) -> tuple[Decision | None, ActResult]:
        policy = e.policy
        assert policy is not None
        if isinstance(view, NotFound):
            self._target_gone(e, moment, str(view))
            return None, ActResult()
        if isinstance(view, Exception):
            self._queue_status(e, conditions.invalid("TargetUnreadable", str(view)), {})
            return None, ActResult()
        if e.gone is not None:
            if view.resource_version == e.gone:  # the informer has not seen the deletion the patch found
                return None, ActResult()
            e.gone = None  # the target is back
        nodes, booting, placed = self._nodes(e, policy, view, t)
        seen = Observations(view.replicas, view.ready, dict(e.readings))
        assert e.compiled is not None
        d = decide(e.compiled, seen, e.state, moment, nodes=nodes)
        found = {
            problems.NODE_POOL: self._pool_problem(policy),
            problems.METRICS: _metrics_problem(d),
            problems.PODS: self._pods_problem(e, policy, d, placed, booting, t),
        }
        self._track(e, d, found)
        # 4. act; the decision's state is committed only when the act step did what the decision asked
        act = self._act(e, policy, view, d)
        if act.failure is not None:
            self._act_failed(e, view, d, act.failure, t)
            return d, act
        e.state = d.state
        recovered = e.reported is not None
        if e.reported in _RECOVERED:
            reason, message = _RECOVERED[e.reported]
            log.info("%s: %s (%s cleared)", e.key, message, e.reported, extra=_fields(e.key, reason))
            self._tell(e, d, None, ActFailure(reason, f"{message} ({e.reported} cleared)", "Recovered"))
        e.act_failures, e.retry_at, e.reported = 0, None, None
        if act.scaled:
            e.last_scale_time = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        acted, results = act.acted, act.pools
        if acted:  # one line per decision that changes something
            log.info("%s: %s", e.key, d.reason, extra=_fields(e.key, d.rule))
        # 5. record
        previous = e.last
        e.last = d
        refusal = (d.rule, d.desired) if d.rule in _REFUSALS else None
        if d.changed or (refusal is not None and refusal != e.announced):
            rec = dict(record(d))
            rec["acted"] = acted
            if act.deletion_costs or act.deletion_cost_failures:
                rec["deletionCosts"] = {"set": act.deletion_costs, "failed": list(act.deletion_cost_failures)}
            if results:
                rec["nodePoolResults"] = [
                    {
                        "pool": r.pool,
                        "added": list(r.added),
                        "removed": list(r.removed),
                        "blocked": list(r.blocked),
                    }
                    for r in results
                ]
            ref = policy.spec.target_ref
            timing: dict[str, str] = {}
            if acted and woken_at is not None:  # from the wake (alert, pending pod, spec change) to the patch
                timing["reactionSeconds"] = f"{self.clock.monotonic() - woken_at:.3f}"
            event = ScalingEvent(d, rec, acted, (ref.api_version, ref.kind, e.namespace, ref.name), timing)
            for sink in self.sinks:
                sink.emit(event)
        e.announced = refusal
        conds = conditions.from_decision(d)
        changed = (
            previous is None or d.desired != previous.desired or d.rule != previous.rule or acted or recovered
        )
        if changed or t - e.state_written_at >= self.config.state_every_seconds:
            e.state_written_at = t
            extra: dict[str, Any] = {
                "currentReplicas": view.replicas,
                "desiredReplicas": d.desired,
                "lastDecision": d.reason,
                "state": persisted.dump(d.state),
            }
            if e.last_scale_time:
                extra["lastScaleTime"] = e.last_scale_time
            self._queue_status(e, conds, extra)
        return d, act

    def _act(self, e: Entry, policy: ScalingPolicy, view: ScaleView, d: Decision) -> ActResult:
        """Patch /scale when the decision changes the replicas, then change the node pools (not after a
        failed patch: nodes for replicas that were not made would only cost). A scale-down of a target whose
        nodes the controller plans first sets the pods' deletion costs, so that the emptiest nodes empty. A
        failed patch is returned, not raised."""
        scaled = False
        costs = 0
        cost_failures: tuple[str, ...] = ()
        if d.desired < view.replicas and self._plans_nodes(policy):
            costs, cost_failures = self._set_deletion_costs(e, view)
        if d.desired != view.replicas:
            try:
                self.scaler.scale(view, d.desired)
            except (TemporaryError, PermanentError) as err:
                return ActResult(
                    failure=_sort(err), deletion_costs=costs, deletion_cost_failures=cost_failures
                )
            scaled = True
        acted = scaled
        results: list[PoolChangeResult] = []
        for change in d.node_pools:
            pool = self.pools.get(change.pool)
            provider = self.providers.get(pool.spec.provider.type) if pool is not None else None
            if pool is None or provider is None:
                continue
            if change.add:
                results.append(provider.add(pool, change.add))
            if change.uncordon:
                results.append(provider.cordon(pool, change.uncordon, False))
            if change.cordon:
                results.append(provider.cordon(pool, change.cordon, True))
            if change.remove:
                results.append(provider.remove(pool, change.remove))
            acted = True
        return ActResult(scaled, acted, tuple(results), None, costs, cost_failures)

    def _plans_nodes(self, policy: ScalingPolicy) -> bool:
        """The policy names a node pool this controller knows and has a provider for."""
        pool = self.pools.get(policy.spec.node_pool) if policy.spec.node_pool is not None else None
        return pool is not None and pool.spec.provider.type in self.providers

    def _set_deletion_costs(self, e: Entry, view: ScaleView) -> tuple[int, tuple[str, ...]]:
        """Annotate each bound pod whose cost changes with the number of the target's pods on its node (one
        patch per changed pod, none when nothing changes): (patches made, "pod: why" for each that failed).
        Failures are logged and returned, never raised: the scale-down goes ahead without them."""
        try:
            changed = deletion_costs(self.targets.pods(e.namespace, parse(view.selector)))
        except (TemporaryError, PermanentError) as err:
            log.warning("%s: scaling down without deletion costs (listing its pods failed: %s)", e.key, err)
            return 0, (f"*: {err}",)
        made, failed = 0, []
        for pod, cost in sorted(changed.items()):
            try:
                self.targets.set_deletion_cost(e.namespace, pod, cost)
            except NotFound:
                continue  # gone already: nothing left to rank
            except (TemporaryError, PermanentError) as err:
                failed.append(f"{pod}: {err}")
                continue
            made += 1
        if failed:
            log.warning(
                "%s: %d of %d pod deletion cost(s) not set, scaling down anyway: %s",
                e.key,
                len(failed),
                len(changed),
                "; ".join(failed),
                extra=_fields(e.key, "DeletionCostFailed"),
            )
        return made, tuple(failed)

    def _act_failed(self, e: Entry, view: ScaleView, d: Decision, failure: ActFailure, t: float) -> None:
        """The decision was not applied: keep the previous state, back off, and once the failure is worth
        reporting (at once unless it may pass by itself) set `Ready=False` and tell the sinks, once."""
        e.act_failures += 1
        e.last = d
        cap = self.config.sync_seconds
        temporary = failure.kind in ("Conflict", "Temporary")
        if temporary:
            delay = min(cap, self.config.retry_seconds * 2 ** (e.act_failures - 1))
        elif failure.kind == "NotFound" and view.resource_version:
            delay = 0.0  # not patched again while the view shows the object the patch found gone
            e.gone = view.resource_version
        else:
            delay = cap  # a refusal: tried once per sync period (RBAC may be fixed without a spec change)
        e.retry_at = t + delay if delay else None
        retry = f"the next try in {delay:g} s" if delay else "no retry until the target is back"
        if temporary and e.act_failures <= self.config.act_retries:
            log.info("%s: %s (attempt %d; %s)", e.key, failure.message, e.act_failures, retry)
            return
        log.warning("%s: %s (attempt %d; %s)", e.key, failure.message, e.act_failures, retry)
        if temporary:
            failure = ActFailure(
                failure.reason, f"{failure.message}; {e.act_failures} attempts failed, {retry}", failure.kind
            )
        extra = {"currentReplicas": view.replicas, "desiredReplicas": d.desired, "lastDecision": d.reason}
        self._queue_status(e, conditions.invalid(failure.reason, failure.message), extra)
        self._announce(e, d, failure)

    def _target_gone(self, e: Entry, moment: datetime, message: str) -> None:
        """The view says the target does not exist: `Ready=False` TargetNotFound, an Event the first time."""
        assert e.policy is not None
        if e.reported != "TargetNotFound":
            log.warning("%s: %s", e.key, message, extra=_fields(e.key, "TargetNotFound"))
        self._queue_status(e, conditions.invalid("TargetNotFound", message), {})
        ref = e.policy.spec.target_ref
        # no decision was made: the event carries a hold at zero (what a missing workload runs) naming why
        hold = Decision(
            e.key,
            f"{ref.kind}/{ref.name}",
            moment,
            0,
            0,
            Text(message),
            "TargetNotFound",
            None,
            (),
            e.state or PolicyState(),
        )
        self._announce(e, hold, ActFailure("TargetNotFound", message, "NotFound"))

    def _announce(self, e: Entry, d: Decision, failure: ActFailure) -> None:
        """Tell the sinks about a failure once per transition (not on every retry)."""
        if e.reported == failure.reason:
            return
        e.reported = failure.reason
        assert e.policy is not None
        ref = e.policy.spec.target_ref
        rec = dict(record(d))
        rec["acted"] = False
        rec["failure"] = {"reason": failure.reason, "kind": failure.kind, "message": failure.message}
        involved = (ref.api_version, ref.kind, e.namespace, ref.name)
        if failure.reason == "TargetNotFound":  # told on the policy: the target does not exist
            involved = (e.policy.api_version, "ScalingPolicy", e.namespace, e.name)
        event = ScalingEvent(d, rec, False, involved, failure=failure)
        for sink in self.sinks:
            sink.emit(event)

    # --- misconfigurations: told when they start and when they clear (`problems`) -------------------------

    def _track(self, e: Entry, d: Decision, found: Mapping[str, Problem | None]) -> None:
        for change in self.problems.update(e.key, found):
            present = change.started is not None
            reason, message = change.reason, change.message
            if present:
                log.warning("%s: %s", e.key, message, extra=_fields(e.key, reason))
            else:
                log.info("%s: %s", e.key, message, extra=_fields(e.key, reason))
            self._queue_status(e, conditions.problem(change.condition, reason, message, present), {})
            told = ActFailure(reason, message, "Misconfigured" if present else "Recovered")
            self._tell(e, d, told if present else None, None if present else told, change.condition)

    def _tell(
        self,
        e: Entry,
        d: Decision,
        failure: ActFailure | None,
        recovery: ActFailure | None,
        condition: str | None = None,
    ) -> None:
        """An Event on the ScalingPolicy: a misconfiguration that started (`failure`) or a problem that
        cleared (`recovery`); its record says so in place of the decision's sentence, and names the
        `condition` a misconfiguration holds False (the metrics sink keeps one series per condition)."""
        assert e.policy is not None
        told = failure or recovery
        assert told is not None
        # not a decision: the record holds the replicas where they are, so no reader takes it for a scale
        d = d._replace(desired=d.current, node_pools=())
        rec = dict(record(d))
        rec.update(kind="ScalingProblem", acted=False, reason=told.message, rule=told.reason)
        rec["failure" if failure is not None else "recovery"] = {
            "reason": told.reason,
            "message": told.message,
        }
        if condition is not None:
            rec["condition"] = condition
        involved = (e.policy.api_version, "ScalingPolicy", e.namespace, e.name)
        event = ScalingEvent(d, rec, False, involved, failure=failure, recovery=recovery)
        for sink in self.sinks:
            sink.emit(event)

    def _pool_problem(self, policy: ScalingPolicy) -> Problem | None:
        name = policy.spec.node_pool
        if name is None:
            return None
        pool = self.pools.get(name)
        if pool is None:
            known = ", ".join(sorted(self.pools)) or "none"
            message = f"nodePool {name!r} names no NodePool (known: {known}): no node will be added"
            return Problem(problems.NODE_POOL, "NodePoolNotFound", message)
        kind = pool.spec.provider.type
        if kind not in self.providers:
            known = ", ".join(sorted(self.providers)) or "none"
            message = f"NodePool {name}'s provider {kind} is not run by this controller (known: {known})"
            return Problem(problems.NODE_POOL, "NodePoolProviderNotFound", message)
        return None

    def _pods_problem(
        self,
        e: Entry,
        policy: ScalingPolicy,
        d: Decision,
        placed: tuple[int, int] | None,
        booting: int,
        t: float,
    ) -> Problem | None:
        """Replicas that have held no node for `pending_seconds` while no node is being added for them."""
        name = policy.spec.node_pool
        if name is None or placed is None:
            return None
        live, scheduled = placed
        pending = live - scheduled
        # nodes asked for and not Ready yet are being added (a Cluster API machine booting, a node whose
        # kubelet has not reported): their pods wait for them, which is not a misconfiguration
        adding = (
            booting > 0
            or any(not n.ready for n in e.pool_nodes.values())
            or any(c.add or c.uncordon for c in d.node_pools)
        )
        waited = self.problems.waiting(e.key, pending > 0 and not adding, t)
        if pending <= 0 or adding or waited < self.config.pending_seconds:
            return None
        pool = self.pools.get(name)
        reason = "PodsPending"
        if pool is None:
            why = f"nodePool {name!r} does not exist"
        elif pool.spec.provider.type not in self.providers:
            why = f"no provider runs NodePool {name} ({pool.spec.provider.type})"
        elif len(e.pool_nodes) >= pool.spec.max_nodes:
            reason, why = "NodePoolAtMax", f"NodePool {name} is at maxNodes {pool.spec.max_nodes}"
        else:
            why = f"NodePool {name} plans no node for them no node for them (see the last decision)"
        ref = policy.spec.target_ref
        message = (
            f"{pending} of {live} replicas of {ref.kind}/{ref.name} have held no node for over "
            f"{self.config.pending_seconds:g} s and none is being added: {why}"
        )
        return Problem(problems.PODS, reason, message)

    def _placed(self, e: Entry, policy: ScalingPolicy, view: ScaleView) -> tuple[int, int] | None:
        """(live pods, pods holding a node) of a policy with a nodePool; None without one."""
        if policy.spec.node_pool is None:
            return None
        selector = parse(view.selector)
        try:
            pods = self.targets.pods(e.namespace, selector)
        except PermanentError:
            return None
        if any(p.node is None for p in pods):
            # The pod watch can lag the nodes just listed from the API: a pod bound since its last event
            # would count both as GPUs used on its node and as pending, and ask for a node nobody needs.
            # Pods that look unbound are confirmed from the API (one list, only while some look so).
            try:
                pods = self.targets.pods(e.namespace, selector, fresh=True)
            except (TemporaryError, PermanentError) as err:
                log.warning("%s: pods as the watch has them (listing them failed: %s)", e.key, err)
        return len(pods), sum(1 for p in pods if p.node is not None)

    def _nodes(
        self, e: Entry, policy: ScalingPolicy, view: ScaleView, t: float
    ) -> tuple[NodeView | None, int, tuple[int, int] | None]:
        """The node side of the decision, how many of the pool's machines are still booting, and the
        target's (live pods, pods holding a node) when the policy names a pool."""
        pool_name = policy.spec.node_pool
        if pool_name is None:
            return None, 0, None
        pool = self.pools.get(pool_name)
        provider = self.providers.get(pool.spec.provider.type) if pool is not None else None
        if pool is None or provider is None:
            return None, 0, self._placed(e, policy, view)
        current = provider.nodes(pool, t, e.pool_nodes)
        e.pool_nodes = {n.name: n for n in current}
        # machines still booting have no Node yet: count them as empty nodes of the pool's shape, so that
        # the plan does not ask for them again on every reconcile (they are never idle, never removed)
        gpus = pool.spec.node.gpus
        booting = provider.provisioning(pool)
        current = current + tuple(
            PoolNode(f"{pool.metadata.name}-provisioning-{i}", pool.metadata.name, gpus, 0, ready=False)
            for i in range(booting)
        )
        # the pods after the nodes: a pod bound since the nodes were listed must not count as pending on a
        # node that already shows it (that would ask for a node it does not need)
        placed = self._placed(e, policy, view)
        scheduled = placed[1] if placed is not None else view.ready
        return node_view(pool, current, policy.spec.pod_requests, scheduled), booting, placed

    # --- status, written off the loop's thread ----------------------------------------------------------

    def _queue_status(
        self, e: Entry, conds: Sequence[conditions.Condition], extra: Mapping[str, Any]
    ) -> None:
        if self.status is None:
            return
        now = self.clock.now()
        merged = conditions.merge(e.status_conditions, conds, now, e.generation)
        if not extra and conditions.same(e.status_conditions, merged):
            return
        e.status_conditions = merged
        body = {"observedGeneration": e.generation, "conditions": merged, **extra}
        with self._status_lock:
            self._status_queue[(e.namespace, e.name)] = body  # a newer status replaces an unwritten one
        self._status_event.set()

    def flush_status(self) -> int:
        """Write every queued status now; returns how many were written."""
        with self._status_lock:
            batch, self._status_queue = self._status_queue, {}
        written = 0
        for (ns, name), body in batch.items():
            try:
                assert self.status is not None
                self.status.write(ns, name, body)
                written += 1
            except (TemporaryError, PermanentError) as err:
                log.warning("status of %s/%s not written: %s", ns, name, err)
        return written

    # --- running ------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Reconcile until `stop` is set: at once when woken, else every tick (due polls, the sweep)."""
        writer = threading.Thread(target=self._status_writer, args=(stop,), name="status-writer", daemon=True)
        writer.start()
        while not stop.is_set():
            try:
                self.reconcile_once()
            except Exception:
                log.exception("reconcile step failed")
            self._wake_event.wait(self.config.tick_seconds)
            self._wake_event.clear()
        self._status_event.set()
        writer.join(timeout=10)
        self.flush_status()

    def _status_writer(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._status_event.wait(1.0)
            self._status_event.clear()
            self.flush_status()


FLUSH_EVERY_S = 5.0


class QueuedSink:
    """Delivers events to slower sinks (Kubernetes API, Kafka) on its own thread, so that recording never
    delays the next /scale patch. A full queue drops the oldest event and counts it."""

    def __init__(self, sinks: Sequence[EventSink], capacity: int = 10000) -> None:
        self._sinks = list(sinks)
        self._queue: queue.Queue[ScalingEvent | None] = queue.Queue(capacity)
        self.dropped = 0
        self._thread = threading.Thread(target=self._deliver, name="event-sinks", daemon=True)
        self._thread.start()

    def emit(self, event: ScalingEvent) -> None:
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _deliver(self) -> None:
        while True:
            try:
                event = self._queue.get(timeout=FLUSH_EVERY_S)
            except queue.Empty:
                self._flush()  # e.g. the Kubernetes sink's pending series counts
                continue
            if event is None:
                self._flush()
                return
            for sink in self._sinks:
                try:
                    sink.emit(event)
                except Exception:
                    log.exception("event sink %s failed", type(sink).__name__)

    def _flush(self) -> None:
        for sink in self._sinks:
            flush = getattr(sink, "flush", None)
            if flush is not None:
                try:
                    flush()
                except Exception:
                    log.exception("event sink %s failed to flush", type(sink).__name__)

    def close(self, timeout: float = 10) -> None:
        self._queue.put(None)
        self._thread.join(timeout)


def _fields(policy: str, reason: str) -> dict[str, str]:
    """The extra fields of a log line about a policy (`kernel.logs`: JSON keys, `key=value` in text)."""
    return {"policy": policy, "reason": reason}


def _metrics_problem(d: Decision) -> Problem | None:
    """A metric trigger without a reading: its source is down, or its query returns nothing."""
    failed = [p for p in d.proposals if p.failed]
    if not failed:
        return None
    # a failed proposal's reason starts with its trigger's name ("gpu: no usable sample (…)")
    why = "; ".join(
        p.reason if p.reason.startswith(f"{p.trigger}:") else f"{p.trigger}: {p.reason}" for p in failed
    )
    of = f"{len(failed)} of {len(d.proposals)} triggers"
    return Problem(problems.METRICS, "MetricsUnavailable", f"{of} have no reading ({why})")


def utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def _sort(err: TemporaryError | PermanentError) -> ActFailure:
    """A failed /scale patch by its kind: the target is gone, or the patch failed (kind says whether it may
    pass by itself)."""
    if isinstance(err, NotFound):
        return ActFailure("TargetNotFound", str(err), "NotFound")
    if isinstance(err, Conflict):
        return ActFailure("ScaleFailed", str(err), "Conflict")
    if isinstance(err, TemporaryError):
        return ActFailure("ScaleFailed", str(err), "Temporary")
    return ActFailure("ScaleFailed", str(err), "Permanent")
