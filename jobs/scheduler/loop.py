"""The scheduler's loop: numbered cycles of the pure `schedule_cycle`, run whenever something changed.

`run_cycle()` is one step, in order:

1. observe — one consistent input from the cache (nodes, bound and assumed pods, PodGroups, Queues);
2. offer — pending pods become the core's entries (gangs held until all their members exist);
3. decide — `schedule_cycle` against the snapshot (queues, quota, gang, placement, devices);
4. act — every admitted pod is assumed at once, then bound asynchronously by the binder pool with its
   device annotations; a failed bind forgets the assumption and wakes the loop (the pod is requeued);
5. record — PodScheduled=False + FailedScheduling for every "no", PodGroup and Queue status, reclaim
   evictions through the Eviction API, metrics.

Nothing runs on a fixed tick: informer handlers call `wake()` when a change can alter a decision.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobs.cycle import ADMITTED, OVER_QUOTA, CycleResult, Decision, QueueState, running_from, schedule_cycle
from jobs.device_annotations import assignment_annotations
from jobs.placement import PlacementRegistry, Unschedulable, default_registry
from jobs.queues import GPU, Entry, QueuePolicy, QueueRegistry
from jobs.queues import default_registry as default_queue_registry
from jobs.resources import CPU, MEMORY, Resources, format_quantity
from jobs.scheduler.cache import CycleInput, SchedulerCache
from jobs.scheduler.config import SchedulerConfig
from jobs.scheduler.groups import Held, Offer, PendingPod, build_offer, entry_uid
from jobs.scheduler.kube import ClusterWriter, Gone
from jobs.scheduler.metrics import SchedulerMetrics
from jobs.scheduler.objects import group_key, meta, pod_queue
from jobs.scheduler.status import (
    INQUEUE,
    PENDING,
    RUNNING,
    GroupStatus,
    QueueCounts,
    nodes_message,
    pod_scheduled_false,
)
from jobs.snapshot import BoundPod
from kernel.clock import SYSTEM_CLOCK, Clock
from kernel.errors import TidescaleError
from kernel.kube_events import EventRecorder, ObjectRef

log = logging.getLogger(__name__)

BIND_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class CycleReport:
    number: int
    offered: int
    admitted: int
    unschedulable: int
    held: int
    seconds: float
    reclaims: int = 0
    more: bool = False  # entries were left for the next cycle (batch size)


@dataclass
class _Reported:
    message: str
    at: float


@dataclass
class _Backoff:
    failures: int
    until: float


@dataclass
class _CycleFacts:
    """What step 5 needs of steps 1-3."""

    inp: CycleInput
    offer: Offer
    result: CycleResult
    admitted_by_group: dict[str, int] = field(default_factory=dict)


class Scheduler:
    def __init__(
        self,
        cache: SchedulerCache,
        writer: ClusterWriter,
        events: EventRecorder,
        config: SchedulerConfig,
        metrics: SchedulerMetrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
        placements: PlacementRegistry | None = None,
        queue_policies: QueueRegistry | None = None,
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.cache = cache
        self.writer = writer
        self.events = events
        self.config = config
        self.metrics = metrics or SchedulerMetrics()
        self.clock = clock
        self.placements = placements or default_registry()
        self.queue_policies = queue_policies or default_queue_registry()
        self.is_leader = is_leader
        self.cycle_no = 0
        self._wake = threading.Event()
        self._binder = ThreadPoolExecutor(max_workers=config.bind_workers, thread_name_prefix="bind")
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._reported: dict[str, _Reported] = {}
        self._backoff: dict[str, _Backoff] = {}
        self._evicted: set[str] = set()
        # pods a cycle found unschedulable -> the cache's `freed` count then: they are offered again only
        # after something could make them fit (kube-scheduler's unschedulable queue)
        self._parked: dict[str, int] = {}
        self._status_writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="status")  # in order
        self._queue_warned: dict[str, str] = {}

    # -- driving -------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def on_change(self, changed: bool) -> None:
        if changed:
            self._wake.set()

    def run(self, stop: threading.Event, flush_seconds: float = 5.0) -> None:
        """Cycle whenever woken, while this replica leads. The only timers: a pod in bind backoff is
        retried when its backoff ends, and Event series counts are flushed every `flush_seconds`."""
        last_flush = self.clock.monotonic()
        while not stop.is_set():
            woke = self._wake.wait(timeout=self._next_backoff(flush_seconds) or flush_seconds)
            if stop.is_set():
                break
            if self.clock.monotonic() - last_flush >= flush_seconds:
                self.events.flush()
                last_flush = self.clock.monotonic()
            if not self.is_leader():
                stop.wait(0.5)
                continue
            if not woke and not self._backoff_due():
                continue
            self._wake.clear()
            try:
                report = self.run_cycle()
                if report.more:
                    self._wake.set()
            except Exception:  # a bug in one cycle must not stop scheduling
                log.exception("scheduler: cycle %d failed", self.cycle_no)
                stop.wait(1.0)
                self._wake.set()

    def close(self) -> None:
        self._binder.shutdown(wait=True, cancel_futures=False)
        self._status_writes.shutdown(wait=True, cancel_futures=True)
        self.events.close()

    def idle(self) -> bool:
        """No bind in flight (tests and the benchmark wait on it)."""
        with self._inflight_lock:
            return self._inflight == 0

    def _next_backoff(self, cap: float) -> float | None:
        if not self._backoff:
            return None
        now = self.clock.monotonic()
        return max(0.01, min(cap, min(b.until for b in self._backoff.values()) - now))

    def _backoff_due(self) -> bool:
        now = self.clock.monotonic()
        return any(b.until <= now for b in self._backoff.values())

    # -- one cycle -----------------------------------------------------------------------------

    def run_cycle(self) -> CycleReport:
        self.cycle_no += 1
        started = self.clock.monotonic()
        # 1. observe
        inp = self.cache.build()
        live = {p.uid for p in inp.pending}
        for memo in (self._backoff, self._reported, self._parked):
            for uid in [u for u in list(memo) if u not in live]:
                memo.pop(uid, None)
        now_mono = self.clock.monotonic()
        waiting = [
            p
            for p in inp.pending
            if self._backoff.get(p.uid, _Backoff(0, 0.0)).until <= now_mono
            and self._parked.get(p.uid) != inp.freed
        ]
        # 2. offer
        offer = build_offer(
            waiting,
            inp.groups,
            inp.invalid_groups,
            inp.running,
            self.config.placement,
            _free(inp),
            inp.requests,
            {v.queue.name for v in inp.queues} | set(inp.invalid_queues) if inp.queues_served else None,
        )
        policy = self._queue_policy(inp)
        entries, more = self._batch(offer.entries, policy, inp)
        # 3. decide
        result = schedule_cycle(
            QueueState(policy, [v.queue for v in inp.queues], entries), inp.state, self.placements
        )
        facts = _CycleFacts(inp, offer, result)
        # 4. act
        admitted = self._act(facts, started)
        # 5. record
        unschedulable = self._record(facts)
        seconds = self.clock.monotonic() - started
        self.metrics.cycles.inc()
        self.metrics.cycle_seconds.observe(seconds)
        self.metrics.double_booked.set(self.cache.double_booked)
        report = CycleReport(
            self.cycle_no,
            len(entries),
            admitted,
            unschedulable,
            len(offer.held),
            seconds,
            len(result.reclaims),
            more,
        )
        log.info(
            "cycle %d: %d offered, %d pods bound, %d unschedulable, %d held, %d reclaims (%.3f s)",
            report.number,
            report.offered,
            report.admitted,
            report.unschedulable,
            report.held,
            report.reclaims,
            report.seconds,
        )
        return report

    def _queue_policy(self, inp: CycleInput) -> QueuePolicy:
        from jobs.queues import PerQueue

        return PerQueue(self.config.queue_policy, self._policies_by_queue(inp))

    def _batch(
        self, entries: Sequence[Entry], policy: QueuePolicy, inp: CycleInput
    ) -> tuple[list[Entry], bool]:
        """At most `batch_size` entries per cycle (so binding starts early on a big backlog): by priority,
        then by age (newest first in LIFO queues)."""
        limit = self.config.batch_size
        if len(entries) <= limit:
            return list(entries), False
        lifo = {q for q, p in self._policies_by_queue(inp).items() if p == "LIFO"}
        ordered = sorted(
            entries,
            key=lambda e: (-e.group.priority, -e.seq if e.queue in lifo else e.seq, e.uid),
        )
        return ordered[:limit], True

    def _policies_by_queue(self, inp: CycleInput) -> dict[str, str]:
        out: dict[str, str] = dict(self.config.queues)
        for view in inp.queues:
            if view.policy:
                out[view.queue.name] = view.policy
        return out

    # -- 4. act --------------------------------------------------------------------------------

    def _act(self, facts: _CycleFacts, started: float) -> int:
        count = 0
        state = facts.inp.state
        for d in facts.result.decisions:
            if d.outcome != ADMITTED or d.placement is None:
                continue
            members = {p.name: p for p in facts.offer.members.get(d.uid, ())}
            group = facts.offer.gangs.get(d.uid)
            for b in d.placement.bindings:
                p = members.get(b.pod)
                if p is None:
                    continue
                request = facts.inp.requests[p.uid]
                i = state.index[b.node]
                memory = [g.memory_mib for g in state.nodes[i].devices.gpus]
                bound = BoundPod(
                    p.name,
                    b.node,
                    request,
                    b.devices,
                    p.namespace,
                    d.queue,
                    group.name if group else None,
                    int((p.obj.get("spec") or {}).get("priority") or 0),
                )
                self.cache.assume(p.uid, bound)
                with self._inflight_lock:
                    self._inflight += 1
                self._binder.submit(self._bind, p, bound, memory, started)
                count += 1
                if group is not None:
                    facts.admitted_by_group[group.key] = facts.admitted_by_group.get(group.key, 0) + 1
        return count

    def _bind(self, p: PendingPod, pod: BoundPod, memory: list[int], started: float) -> None:
        try:
            if not self.cache.has_node(pod.node):
                self._failed(p, pod, "NodeGone", f"node {pod.node} is gone")
                return
            now = self.clock.now()
            annotations = assignment_annotations(
                pod.request,
                pod.devices,
                pod.node,
                int(now.timestamp()) * 10**9 + now.microsecond * 1000,
                memory,
            )
            uid = str(meta(p.obj).get("uid") or "")
            self.writer.bind(p.namespace, p.name, uid, pod.node, annotations)
        except Gone as e:
            self.cache.forget(p.uid)
            self.metrics.bind_errors.labels("Gone").inc()
            log.info("bind of %s/%s: %s", p.namespace, p.name, e)
            self._wake.set()
        except TidescaleError as e:
            self._failed(p, pod, type(e).__name__, str(e))
        except Exception as e:
            log.exception("bind of %s/%s failed", p.namespace, p.name)
            self._failed(p, pod, "Unexpected", str(e))
        else:
            self._backoff.pop(p.uid, None)
            self.metrics.bound.inc()
            self.metrics.bind_seconds.observe(self.clock.monotonic() - started)
            self._reported.pop(p.uid, None)
            self.events.record(
                _pod_ref(p),
                "Scheduled",
                f"Successfully assigned {p.namespace}/{p.name} to {pod.node}"
                + (f" ({pod.devices})" if str(pod.devices) != "no devices" else ""),
                action="Binding",
            )
        finally:
            with self._inflight_lock:
                self._inflight -= 1

    def _failed(self, p: PendingPod, pod: BoundPod, reason: str, message: str) -> None:
        """A failed bind: forget the assumption, back off, requeue (wake the loop)."""
        self.cache.forget(p.uid)
        self.metrics.bind_errors.labels(reason).inc()
        prev = self._backoff.get(p.uid, _Backoff(0, 0.0))
        wait = BIND_BACKOFF_SECONDS[min(prev.failures, len(BIND_BACKOFF_SECONDS) - 1)]
        self._backoff[p.uid] = _Backoff(prev.failures + 1, self.clock.monotonic() + wait)
        log.warning(
            "bind of %s/%s to %s failed (%s), retry in %.0f s: %s",
            p.namespace,
            p.name,
            pod.node,
            reason,
            wait,
            message,
        )
        self.events.record(
            _pod_ref(p), "FailedScheduling", f"binding to {pod.node} failed: {message}", type_="Warning"
        )
        self._wake.set()

    # -- 5. record -----------------------------------------------------------------------------

    def _record(self, facts: _CycleFacts) -> int:
        inp, offer, result = facts.inp, facts.offer, facts.result
        total = len(inp.state.nodes)
        count = 0
        by_uid: dict[str, Decision] = {d.uid: d for d in result.decisions}
        for d in result.decisions:
            if d.outcome == ADMITTED:
                continue
            message = _decision_message(d, total)
            for p in offer.members.get(d.uid, ()):
                self._parked[p.uid] = inp.freed
                self._unschedulable(p, message)
                count += 1
        waiting = {q.uid: q for q in inp.pending}
        for held in offer.held.values():
            for uid in held.pods:
                if uid in waiting:
                    self._unschedulable(waiting[uid], held.message)
        self.metrics.unschedulable.inc(count)
        self._group_statuses(facts, by_uid)
        self._queue_statuses(facts, by_uid)
        self._reclaim(facts)
        per_queue, gangs = still_waiting(inp, offer, result, self.clock.now().timestamp())
        self.metrics.set_pending(per_queue)
        self.metrics.set_pending_gangs(gangs)
        return count

    def _unschedulable(self, p: PendingPod, message: str) -> None:
        now = self.clock.monotonic()
        last = self._reported.get(p.uid)
        if last is not None and last.message == message and now - last.at < self.config.status_resync_seconds:
            return
        self._reported[p.uid] = _Reported(message, now)
        self._status_writes.submit(self._write_unschedulable, p, message)

    def _write_unschedulable(self, p: PendingPod, message: str) -> None:
        """On the status pool: the loop never waits for the API server's answer."""
        if self._reported.get(p.uid, _Reported("", 0.0)).message != message:
            return  # a newer message is queued behind this one
        try:
            self.writer.pod_status(p.namespace, p.name, pod_scheduled_false(message, self.clock.now()))
        except TidescaleError as e:
            log.info("PodScheduled of %s/%s not written: %s", p.namespace, p.name, e)
        except Exception:
            log.exception("PodScheduled of %s/%s not written", p.namespace, p.name)
        self.events.record(_pod_ref(p), "FailedScheduling", message, type_="Warning", action="Scheduling")

    def _group_statuses(self, facts: _CycleFacts, by_uid: Mapping[str, Decision]) -> None:
        inp, offer = facts.inp, facts.offer
        now = self.clock.now()
        held_by_group = offer.held
        waiting: dict[str, int] = {}  # gang -> its pending pods, counted once per cycle
        if inp.group_objects:
            for p in inp.pending:
                gk = group_key(p.obj)
                if gk:
                    waiting[gk] = waiting.get(gk, 0) + 1
        for key, obj in inp.group_objects.items():
            ns, _, name = key.partition("/")
            uid = entry_uid(ns, name)
            status = self._group_status(
                key, uid, facts, by_uid, held_by_group, len(inp.state.nodes), waiting.get(key, 0)
            )
            if status is None:
                continue
            body = status.body(obj.get("status") or {}, now)
            if body is None:
                continue
            try:
                self.writer.group_status("volcano", ns, name, body)
            except TidescaleError as e:
                log.info("PodGroup %s status not written: %s", key, e)
                continue
            if status.phase != RUNNING:
                self.events.record(
                    ObjectRef(
                        "scheduling.volcano.sh/v1beta1", "PodGroup", ns, name, str(meta(obj).get("uid") or "")
                    ),
                    "Unschedulable" if status.reason != "NotEnoughPods" else "NotEnoughPods",
                    status.message,
                    type_="Warning",
                    action="Scheduling",
                )

    def _group_status(
        self,
        key: str,
        uid: str,
        facts: _CycleFacts,
        by_uid: Mapping[str, Decision],
        held: Mapping[str, Held],
        total_nodes: int,
        members: int,
    ) -> GroupStatus | None:
        inp = facts.inp
        if key in inp.invalid_groups:
            return GroupStatus(PENDING, "InvalidPodGroup", inp.invalid_groups[key], 0)
        spec = inp.groups.get(key)
        if spec is None:
            return None
        running = inp.running.get(key, 0) + facts.admitted_by_group.get(key, 0)
        if running >= spec.min_member:
            return GroupStatus(RUNNING, "Scheduled", f"{running}/{spec.min_member} pods bound", running)
        h = held.get(uid)
        if h is not None:
            return GroupStatus(PENDING, h.reason, h.message, running)
        d = by_uid.get(uid)
        if d is None:
            return GroupStatus(
                PENDING,
                "NotEnoughPods",
                f"{running + members}/{spec.min_member} pods of gang {key} exist",
                running,
            )
        if d.outcome == OVER_QUOTA:
            return GroupStatus(PENDING, "OverQuota", d.detail, running)
        return GroupStatus(INQUEUE, "NotEnoughResources", _decision_message(d, total_nodes), running)

    def _queue_statuses(self, facts: _CycleFacts, by_uid: Mapping[str, Decision]) -> None:
        inp = facts.inp
        usage: dict[str, Resources] = {}
        running: dict[str, int] = {}
        for r in running_from(inp.state):
            usage[r.queue] = usage.get(r.queue, Resources()) + r.usage
            running[r.queue] = running.get(r.queue, 0) + 1
        pending: dict[str, int] = {}
        inqueue: dict[str, int] = {}
        for d in facts.result.decisions:
            if d.outcome == ADMITTED:
                demand = Resources()
                for b in d.placement.bindings if d.placement else ():
                    p = next((q for q in facts.offer.members.get(d.uid, ()) if q.name == b.pod), None)
                    if p is not None:
                        req = inp.requests[p.uid]
                        demand = demand + _quota_use(req.resources, req.gpu_milli)
                usage[d.queue] = usage.get(d.queue, Resources()) + demand
                running[d.queue] = running.get(d.queue, 0) + 1
            elif d.outcome == OVER_QUOTA:
                pending[d.queue] = pending.get(d.queue, 0) + 1
            else:
                inqueue[d.queue] = inqueue.get(d.queue, 0) + 1
        for name, obj in inp.queue_objects.items():
            invalid = inp.invalid_queues.get(name)
            if invalid and self._queue_warned.get(name) != invalid:
                self._queue_warned[name] = invalid
                self.events.record(
                    ObjectRef(
                        "scheduling.volcano.sh/v1beta1",
                        "Queue",
                        "default",
                        name,
                        str(meta(obj).get("uid") or ""),
                    ),
                    "InvalidQueue",
                    f"{invalid}; the queue is scheduled FIFO without quota until fixed",
                    type_="Warning",
                )
            counts = QueueCounts(
                _k8s_names(usage.get(name, Resources())),
                pending.get(name, 0),
                inqueue.get(name, 0),
                running.get(name, 0),
            )
            body = counts.body(obj.get("status") or {}, "Unknown" if invalid else "Open")
            if body is None:
                continue
            try:
                self.writer.queue_status(name, body)
            except TidescaleError as e:
                log.info("Queue %s status not written: %s", name, e)

    def _reclaim(self, facts: _CycleFacts) -> None:
        state = facts.inp.state
        for r in facts.result.reclaims:
            ns, _, name = r.victim.partition("/")
            victims = [b for b in state.bound if b.namespace == ns and (b.group or b.name) == name]
            for b in victims:
                key = f"{b.namespace}/{b.name}"
                if key in self._evicted:
                    continue
                uid = facts.inp.pods_by_key.get(key, "")
                ref = ObjectRef("v1", "Pod", b.namespace, b.name, uid)
                try:
                    refused = self.writer.evict(b.namespace, b.name)
                except TidescaleError as e:
                    log.warning("reclaim: evicting %s failed: %s", key, e)
                    continue
                if refused:
                    self.events.record(ref, "ReclaimBlocked", f"{r.reason}: {refused}", type_="Warning")
                    continue
                self._evicted.add(key)
                self.metrics.reclaims.inc()
                self.events.record(
                    ref, "Reclaimed", f"{r.reason} for {r.beneficiary}", type_="Warning", action="Evict"
                )


def _pod_ref(p: PendingPod) -> ObjectRef:
    return ObjectRef("v1", "Pod", p.namespace, p.name, str(meta(p.obj).get("uid") or ""))


def _decision_message(d: Decision, total_nodes: int) -> str:
    why = getattr(d, "why", None)
    if isinstance(why, Unschedulable):
        return nodes_message(total_nodes, why)
    return d.detail or d.outcome


def _free(inp: CycleInput) -> Resources:
    total = Resources()
    for i in range(len(inp.state.nodes)):
        total = total + inp.state.free(i)
    return total


def _quota_use(resources: Resources, gpu_milli: int) -> Resources:
    amounts = {k: resources[k] for k in (CPU, MEMORY) if resources[k]}
    if gpu_milli:
        amounts[GPU] = gpu_milli
    return Resources(amounts)


def _k8s_names(usage: Resources) -> dict[str, str]:
    out = {k: format_quantity(k, usage[k]) for k in (CPU, MEMORY) if usage[k]}
    if usage[GPU]:
        g = usage[GPU]
        out["nvidia.com/gpu"] = str(g // 1000) if g % 1000 == 0 else f"{g}m"
    return out


def still_waiting(
    inp: CycleInput, offer: Offer, result: CycleResult, now: float
) -> tuple[dict[str, int], dict[tuple[str, str], float]]:
    """What still waits after a cycle: pods per queue, and each gang's (PodGroup key, queue) with when it
    began to wait (the creation of its oldest waiting pod, Unix s; `now` when unknown). Every pending pod
    counts, also one backing off or parked until capacity frees (a stuck gang is what operators need to
    see); a gang with `minMember` pods bound or assumed runs, it does not wait."""
    admitted = {
        p.uid for d in result.decisions if d.outcome == ADMITTED for p in offer.members.get(d.uid, ())
    }
    per_queue: dict[str, int] = {}
    gangs: dict[tuple[str, str], float] = {}
    for p in inp.pending:
        if p.uid in admitted:
            continue
        key = group_key(p.obj)
        spec = inp.groups.get(key) if key is not None else None
        queue = spec.queue if spec is not None else pod_queue(p.obj)
        per_queue[queue] = per_queue.get(queue, 0) + 1
        if key is None or inp.running.get(key, 0) >= (spec.min_member if spec is not None else 1):
            continue
        since = _created(p.obj, now)
        gang = (key, queue)
        gangs[gang] = min(gangs.get(gang, since), since)
    return per_queue, gangs


def _created(obj: Mapping[str, Any], default: float) -> float:
    raw = meta(obj).get("creationTimestamp")
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp() if raw else default
    except ValueError:
        return default
