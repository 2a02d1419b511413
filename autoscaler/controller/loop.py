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
decision's failed proposal (fallback, never a silent zero); a failed /scale patch is retried on the next step;
anything unexpected is logged with its traceback and the loop goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from autoscaler.api.policy import NodePool, ScalingPolicy, trigger_name
from autoscaler.controller.kube import conditions, persisted
from autoscaler.controller.kube.selectors import Selector, parse
from autoscaler.controller.pools.nodes_view import node_view
from autoscaler.controller.ports import (
    EventSink,
    MetricRequest,
    NodePoolProvider,
    ReadingKey,
    ReplicaTarget,
    ScaleView,
    ScalingEvent,
)
from autoscaler.core.decide import Decision, NodeView, PolicyState, decide
from autoscaler.core.events import record
from autoscaler.core.nodepool import PoolNode
from autoscaler.core.triggers import Observations, Reading
from kernel.clock import SYSTEM_CLOCK, Clock
from kernel.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

# Trigger kinds read by no metric source (the evaluator computes them from `now`).
_NO_SOURCE = frozenset({"Schedule"})
# Decisions worth an event even when nothing changed: refusals that explain why replicas did not move.
_REFUSALS = frozenset(
    {
        "TooManyReplicas",
        "TooFewReplicas",
        "ScaleUpLimit",
        "ScaleDownLimit",
        "ScaleUpStabilized",
        "ScaleDownStabilized",
        "Fallback",
        "MetricsUnavailable",
        "PartialMetrics",
    }
)


@dataclass(frozen=True)
class ControllerConfig:
    sync_seconds: float = 15.0  # the safety-net sweep over every policy (HPA's sync period)
    tick_seconds: float = 0.1  # how long the loop sleeps when nothing wakes it
    # Trigger kinds polled faster than the sweep when the trigger sets no pollSeconds: the lag watch.
    poll_seconds: Mapping[str, float] = field(default_factory=lambda: {"KafkaLag": 1.0})
    state_every_seconds: float = 15.0  # how often an unchanged decision still writes its state


class StatusSink(Protocol):
    def write(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...


class Targets(Protocol):
    """The /scale view of a target (from an informer where one exists) and its pods' names."""

    def view(self, namespace: str, api_version: str, kind: str, name: str) -> ScaleView: ...

    def pods(self, namespace: str, selector: Selector) -> tuple[list[str], int]:
        """(names of the live pods the selector matches, how many of them hold a node)."""
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


@dataclass(frozen=True)
class CycleReport:
    at: float
    reconciled: int
    decided: int
    scaled: int
    requests: int
    seconds: float
    errors: int = 0


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
    ) -> None:
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
            else:
                fresh.status_conditions = list((obj.get("status") or {}).get("conditions") or [])
                fresh.last_scale_time = (obj.get("status") or {}).get("lastScaleTime")
            doc = {k: obj[k] for k in ("apiVersion", "kind", "spec") if k in obj}
            doc["metadata"] = {"name": name, "namespace": ns, "labels": meta.get("labels") or {}}
            try:
                fresh.policy = ScalingPolicy.model_validate(doc)
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                fresh.error = f"{key}: {where}: {first['msg']}" + (
                    f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
                )
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
        for e in entries:
            assert e.policy is not None
            names = self._due(e, t, everything=sweep or e.key in woken)
            if names or sweep or e.key in woken:
                chosen.append((e, names))
        # 2. read the due triggers of every chosen policy, in batches
        views: dict[str, ScaleView | Exception] = {}
        requests: list[MetricRequest] = []
        for e, names in chosen:
            view = self._view(e)
            views[e.key] = view
            if names:
                requests.extend(self._requests(e, names, view))
        readings = self.read_metrics(requests, t) if requests else {}
        fresh: set[str] = set()
        for (policy_key, trigger), reading in readings.items():
            entry = self.entries.get(policy_key)
            if entry is not None:
                entry.readings[trigger] = reading
                fresh.add(policy_key)
        # 3–5. decide, act, record
        decided = scaled = errors = 0
        for e, _ in chosen:
            if not (sweep or e.key in woken or e.key in fresh):
                continue
            try:
                d, acted = self._reconcile(e, views[e.key], moment, t, woken_at.get(e.key))
            except Exception:  # one policy's surprise must not stop the others
                errors += 1
                log.exception("reconciling %s", e.key)
                continue
            if d is not None:
                decided += 1
                scaled += acted
        report = CycleReport(
            t, len(chosen), decided, scaled, len(requests), self.clock.monotonic() - start, errors
        )
        self.last_cycle = report
        if sweep:
            self.cycle_seconds.append(report.seconds)
            del self.cycle_seconds[:-1000]
        if self.on_cycle is not None and (sweep or decided):
            self.on_cycle(report, sweep)
        return report

    def _due(self, e: Entry, t: float, everything: bool) -> list[str]:
        assert e.policy is not None
        names = []
        for i, trig in enumerate(e.policy.spec.triggers):
            if trig.type in _NO_SOURCE:
                continue
            name = trigger_name(trig, i)
            every = trig.poll_seconds or self.config.poll_seconds.get(trig.type, self.config.sync_seconds)
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

    def _requests(self, e: Entry, names: list[str], view: ScaleView | Exception) -> list[MetricRequest]:
        assert e.policy is not None
        pods: frozenset[str] = frozenset()
        wanted = set(names)
        out = []
        for i, trig in enumerate(e.policy.spec.triggers):
            name = trigger_name(trig, i)
            if name not in wanted:
                continue
            if trig.type in ("GPUUtilization", "DCGM") and not pods and isinstance(view, ScaleView):
                try:
                    pods = frozenset(self.targets.pods(e.namespace, parse(view.selector))[0])
                except PermanentError as err:
                    e.readings[name] = Reading(error=str(err))
                    continue
            out.append(MetricRequest(e.key, name, trig, e.namespace, pods))
        return out

    def _reconcile(
        self, e: Entry, view: ScaleView | Exception, moment: datetime, t: float, woken_at: float | None = None
    ) -> tuple[Decision | None, bool]:
        policy = e.policy
        assert policy is not None
        if isinstance(view, Exception):
            reason = "TargetNotFound" if "404" in str(view) else "TargetUnreadable"
            self._queue_status(e, conditions.invalid(reason, str(view)), {})
            return None, False
        nodes = self._nodes(e, policy, view, t)
        seen = Observations(view.replicas, view.ready, dict(e.readings))
        d = decide(policy, seen, e.state, moment, nodes=nodes)
        e.state = d.state
        acted = False
        # 4. act
        if d.desired != view.replicas:
            self.scaler.scale(view, d.desired)
            acted = True
            e.last_scale_time = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        results = []
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
        # 5. record
        previous = e.last
        e.last = d
        refusal = (d.rule, d.desired) if d.rule in _REFUSALS else None
        if d.changed or (refusal is not None and refusal != e.announced):
            rec = dict(record(d))
            rec["acted"] = acted
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
        changed = previous is None or d.desired != previous.desired or d.rule != previous.rule or acted
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
        return d, acted

    def _nodes(self, e: Entry, policy: ScalingPolicy, view: ScaleView, t: float) -> NodeView | None:
        pool_name = policy.spec.node_pool
        if pool_name is None:
            return None
        pool = self.pools.get(pool_name)
        provider = self.providers.get(pool.spec.provider.type) if pool is not None else None
        if pool is None or provider is None:
            return None
        current = provider.nodes(pool, t, e.pool_nodes)
        e.pool_nodes = {n.name: n for n in current}
        # machines still booting have no Node yet: count them as empty nodes of the pool's shape, so that
        # the plan does not ask for them again on every reconcile (they are never idle, never removed)
        gpus = pool.spec.node.gpus
        booting = provider.provisioning(pool)
        current = current + tuple(
            PoolNode(f"{pool.metadata.name}-provisioning-{i}", pool.metadata.name, gpus, 0)
            for i in range(booting)
        )
        try:
            _, scheduled = self.targets.pods(e.namespace, parse(view.selector))
        except PermanentError:
            scheduled = view.ready
        return node_view(pool, current, policy.spec.pod_requests, scheduled)

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


def utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)
