"""The trace-replay simulator: requests, replicas, GPU nodes and one autoscaling controller, step by step.

At each step `t` (every `tick` seconds: 1, or more for long traces, `ServiceModel.tick_for`), in order: nodes
that finished provisioning become ready and Pending pods bind to them (their cold start begins); pods whose
cold start is over start serving; the controller observes (only what its pipeline makes visible at `t`, see
`service_model`) and acts — replicas written to /scale, nodes added or removed; then the requests arriving in
[t, t+tick) join the gateway's FIFO and every free replica takes the oldest waiting request. Service is exact
per request (a c-server FIFO whose servers change only at steps); each request's latency is its time to first
token, or its queueing delay when the trace measured its service time (`ServiceModel.times`). What the
controllers read is kept per second whatever the step: counters, busy time, queue and servers.

Replicas scaled down stop taking requests at once and hold their GPU until their current request is done; the
ReplicaSet removes unbound pods first, then starting ones, then ready ones — by the pod-deletion-cost the
controller set on each pod (none counts as 0), then on the most crowded node, newest first. GPU-hours count a
replica's GPUs from binding to removal; node GPU-hours count every node from its provisioning request to its
removal.

Pure: no I/O, no clock (simulated time only).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from autoscaler.core.promql import range_seconds
from autoscaler.core.triggers.gpu_utilization import UTILIZATION_FIELDS
from autoscaler.replay.environment import Pipeline, PodInfo, Sample
from autoscaler.replay.service_model import ServiceModel
from autoscaler.replay.trace import Requests

DRAIN_LIMIT_S = 1800.0
GATEWAY_GAUGES = {"gateway_queue_depth": "queue"}
POD_GAUGES = {"vllm:num_requests_waiting": "queue", "vllm:num_requests_running": "running"}
COUNTERS = {
    "gateway_requests_total": "requests",
    "gateway_prompt_tokens_total": "prompt",
    "gateway_generated_tokens_total": "generated",
    "vllm:request_success_total": "completed",
    "vllm:prompt_tokens_total": "prompt",
    "vllm:generation_tokens_total": "generated",
}


@dataclass
class Pod:
    name: str
    created: int
    bound_at: int | None = None
    node: str | None = None
    ready_at: int | None = None  # when its cold start ends (known once bound to a ready node)
    deleted_at: int | None = None
    free_at: float = 0.0  # busy until (while serving)
    serving: bool = False
    deletion_cost: int | None = None  # its `controller.kubernetes.io/pod-deletion-cost`, once one is set


@dataclass
class Node:
    name: str
    gpus: int
    requested_at: int
    ready_at: int
    removed_at: int | None = None
    pods: set[str] = field(default_factory=set)
    cordoned: bool = False


@dataclass(frozen=True, slots=True)
class Actions:
    """What a controller does at one tick: replicas to write, nodes to add, nodes to remove or drain."""

    replicas: int | None = None
    add_nodes: int = 0
    remove_nodes: tuple[str, ...] = ()
    drain_nodes: tuple[str, ...] = ()
    # (pod, cost): pod-deletion-cost annotations the controller set, kept on the pods (before `replicas`)
    deletion_costs: tuple[tuple[str, int], ...] = ()
    cordon: tuple[str, ...] = ()
    uncordon: tuple[str, ...] = ()


class Controller(Protocol):
    name: str
    description: str

    def step(self, sim: Simulation) -> Actions | None:
        """Observe through `sim` (a ClusterView) and decide."""
        ...


@dataclass(frozen=True)
class Result:
    policy: str
    description: str
    requests: int
    gpu_hours: float
    node_gpu_hours: float
    cost: float
    slo_violations: int
    slo_violation_minutes: int
    p50_latency_s: float
    p99_latency_s: float
    scale_events: int
    cold_starts: int
    reaction_s: float | None
    capacity_s: float | None
    mean_replicas: float
    max_replicas: int
    replicas: npt.NDArray[np.int64] = field(
        repr=False, compare=False, default_factory=lambda: np.zeros(0, np.int64)
    )
    latency: npt.NDArray[np.float64] = field(repr=False, compare=False, default_factory=lambda: np.zeros(0))

    def row(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "gpu_hours": round(self.gpu_hours, 3),
            "node_gpu_hours": round(self.node_gpu_hours, 3),
            "cost": round(self.cost, 2),
            "slo_violations": self.slo_violations,
            "slo_violation_minutes": self.slo_violation_minutes,
            "p50_latency_s": _finite(self.p50_latency_s),
            "p99_latency_s": _finite(self.p99_latency_s),
            "scale_events": self.scale_events,
            "cold_starts": self.cold_starts,
            "reaction_s": None if self.reaction_s is None else round(self.reaction_s, 1),
            "time_to_capacity_s": None if self.capacity_s is None else round(self.capacity_s, 1),
            "mean_replicas": round(self.mean_replicas, 2),
            "max_replicas": self.max_replicas,
        }


def _finite(x: float) -> float | None:
    """Seconds for JSON: a request never served has no latency to print."""
    return round(x, 3) if math.isfinite(x) else None


def largest_burst(requests: Requests, model: ServiceModel, bin_s: int = 10) -> tuple[int, float]:
    """Onset (s) of the largest burst — the 10 s bin whose work most exceeds the mean of the minute before —
    and the replicas' worth of work in that bin."""
    if not len(requests):
        return 0, 0.0
    work = model.times(requests)[0]
    bins = np.bincount((requests.arrival // bin_s).astype(np.int64), weights=work) / bin_s
    prev = np.convolve(np.concatenate([np.zeros(6), bins]), np.ones(6) / 6, mode="valid")[: len(bins)]
    jump = bins - prev
    k = int(np.argmax(jump))
    return k * bin_s, float(bins[k])


class Simulation:
    """The replayed cluster at the current second; it is the `ClusterView` controllers observe."""

    def __init__(
        self, requests: Requests, model: ServiceModel, initial_replicas: int = 1, measure_from: float = 0.0
    ) -> None:
        self.req = requests
        self.model = model
        # What the result counts starts here: GPU- and node-seconds from this second on, and the requests
        # that arrive from it (the start-up, every controller scaling up from one warm replica, left out).
        self.measure_from = max(0.0, measure_from)
        self.t = 0
        n = len(requests)
        self.tick = model.tick_for(requests.duration_s)
        k = self.tick
        # a whole number of steps
        self.horizon = -(-(math.ceil(requests.duration_s + DRAIN_LIMIT_S) + 2) // k) * k
        h = self.horizon
        self.service, self.prefill = model.times(requests)
        self.ttft = np.full(n, np.nan)
        sec = np.floor(requests.arrival).astype(np.int64)
        # cumulative counters at whole seconds: index k = total before second k
        self.c_requests = np.zeros(h + 1)
        self.c_prompt = np.zeros(h + 1)
        self.c_generated = np.zeros(h + 1)
        np.add.at(self.c_requests, np.minimum(sec + 1, h), 1.0)
        np.add.at(self.c_prompt, np.minimum(sec + 1, h), requests.prompt)
        np.add.at(self.c_generated, np.minimum(sec + 1, h), requests.generated)
        self.c_requests = np.cumsum(self.c_requests)
        self.c_prompt = np.cumsum(self.c_prompt)
        self.c_generated = np.cumsum(self.c_generated)
        # arrivals within their second, for the concurrency integral
        self.arr_frac = np.zeros(h + 1)
        np.add.at(self.arr_frac, np.minimum(sec, h), (sec + 1) - requests.arrival)
        self.dep_count = np.zeros(h + 2)
        self.dep_frac = np.zeros(h + 2)
        self.start_count = np.zeros(h + 2)  # requests that started service in second k
        self.c_completed = np.zeros(h + 2)
        self.busy = np.zeros(h + 2)  # busy replica-seconds in second k
        self.serving_n = np.zeros(h + 2)  # replicas able to serve during second k
        self.queue_at = np.zeros(h + 2)  # waiting requests at second k
        self.running_at = np.zeros(h + 2)
        self.live_at = np.zeros(h + 2)
        self.replicas_at = np.zeros(h + 1, dtype=np.int64)
        self.ready_at = np.zeros(h + 1, dtype=np.int64)
        self.queue: deque[int] = deque()
        self.next_req = 0
        self.done = 0
        self.heap: list[tuple[float, str]] = []
        self.spec = initial_replicas
        self.live: dict[str, Pod] = {}  # pods that exist (not deleted)
        self.all_pods: list[Pod] = []
        self.nodes: dict[str, Node] = {}
        self.all_nodes: list[Node] = []
        self._pod_seq = 0
        self._node_seq = 0
        self.scale_events = 0
        self.cold_starts = 0
        self.first_scale_up_after: dict[int, int] = {}
        for _ in range(model.initial_nodes):
            self._add_node(0, ready_now=True)
        for _ in range(initial_replicas):
            p = self._new_pod(0)
            self._bind(p, 0, warm=True)

    # --- ClusterView --------------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return float(self.t)

    def spec_replicas(self) -> int:
        return self.spec

    def status_replicas(self) -> int:
        return len(self.live)

    def ready_replicas(self) -> int:
        return sum(1 for p in self.live.values() if p.ready_at is not None and p.ready_at <= self.t)

    def pods(self) -> Sequence[PodInfo]:
        return [
            PodInfo(
                p.name,
                "Running"
                if p.bound_at is not None and self.nodes[p.node or ""].ready_at <= self.t
                else "Pending",
                p.ready_at is not None and p.ready_at <= self.t,
                p.bound_at,
            )
            for p in self.live.values()
        ]

    def sample_time(self, pipeline: Pipeline) -> int | None:
        if pipeline.direct_poll_s is None:
            step = self.model.scrape_interval_s
            s = math.floor((self.t - self.model.metric_delay_s) / step) * step
        else:
            step = pipeline.direct_poll_s
            s = math.floor((self.t - self.model.direct_delay_s) / step) * step
        return int(s) if s >= 0 else None

    def _util(self, s: int) -> float:
        w = int(self.model.scrape_interval_s)
        a = max(0, s - w)
        serving = float(self.serving_n[a:s].sum())
        return float(self.busy[a:s].sum()) / serving if serving > 0 else 0.0

    def _gpu_pods_at(self, s: int) -> list[tuple[str, bool]]:
        """(pod, serving at s) for current pods that held a GPU at `s`."""
        out = []
        for p in self.live.values():
            if p.bound_at is None or p.bound_at > s:
                continue
            out.append((p.name, p.ready_at is not None and p.ready_at <= s))
        return out

    def pod_gpu_metric(self, metric: str, pipeline: Pipeline) -> tuple[dict[str, float], float] | None:
        s = self.sample_time(pipeline)
        if s is None:
            return None
        scale = UTILIZATION_FIELDS.get(metric, 100.0)
        util = self._util(s) * 100.0 / scale
        return {name: (util if ready else 0.0) for name, ready in self._gpu_pods_at(s)}, float(s)

    def gpu_values(self, metric: str, pipeline: Pipeline) -> tuple[tuple[float, ...], float] | None:
        got = self.pod_gpu_metric(metric, pipeline)
        if got is None or not got[0]:
            return None
        per_pod, s = got
        g = max(1, self.model.gpus_per_replica)
        return tuple(v for v in per_pod.values() for _ in range(g)), s

    def query(self, promql: str, pipeline: Pipeline) -> Sample | None:
        s = self.sample_time(pipeline)
        if s is None:
            return None
        agg = promql.strip().split("(", 1)[0].strip().lower() if "(" in promql else "sum"
        for name in UTILIZATION_FIELDS:
            if name in promql:
                got = self.gpu_values(name, pipeline)
                if got is None:
                    return None
                vals = got[0]
                v = max(vals) if agg == "max" else (sum(vals) / len(vals) if agg == "avg" else sum(vals))
                return Sample(v, float(s))
        for name, key in COUNTERS.items():
            if name in promql:
                w = range_seconds(promql)
                window = 60 if w is None else max(1, int(w))
                series = {
                    "requests": self.c_requests,
                    "prompt": self.c_prompt,
                    "generated": self.c_generated,
                    "completed": self.c_completed,
                }[key]
                a = max(0, s - window)
                delta = float(series[s] - series[a])
                span = max(1, s - a)
                if "increase(" in promql:
                    return Sample(delta * window / span, float(s))
                return Sample(delta / span, float(s))
        for name, key in {**GATEWAY_GAUGES, **POD_GAUGES}.items():
            if name in promql:
                if name in POD_GAUGES and self.live_at[s] == 0:
                    return None  # the series vanish with the pods
                v = float(self.queue_at[s] if key == "queue" else self.running_at[s])
                if agg == "avg":
                    v /= max(1.0, float(self.live_at[s]))
                return Sample(v, float(s))
        return None

    def concurrency(self, window_s: float) -> float:
        w = max(1, round(window_s))
        a = max(0, self.t - w)
        if self.t <= a:
            return 0.0
        return float(self._concurrency(a, self.t).mean())

    def _concurrency(self, a: int, b: int) -> npt.NDArray[np.float64]:
        """Average in-flight requests in each second of [a, b): `batch_size` per busy replica, plus the
        waiting ones."""
        arrived = self.c_requests[a:b] + self.arr_frac[a:b]
        departed = self.c_completed[a:b] + self.dep_frac[a:b]
        in_service = self.busy[a:b]
        waiting = np.maximum(0.0, arrived - departed - in_service)
        return np.asarray(in_service * self.model.batch_size + waiting, dtype=np.float64)

    # --- cluster mechanics --------------------------------------------------------------------------------

    def _add_node(self, t: int, ready_now: bool = False) -> Node:
        name = f"node-{self._node_seq}"
        self._node_seq += 1
        ready = t if ready_now else t + int(self.model.node_provisioning_s)
        node = Node(name, self.model.gpus_per_node, t, ready)
        self.nodes[name] = node
        self.all_nodes.append(node)
        return node

    def _new_pod(self, t: int) -> Pod:
        p = Pod(f"pod-{self._pod_seq}", t)
        self._pod_seq += 1
        self.live[p.name] = p
        self.all_pods.append(p)
        return p

    def free_gpus(self, node: Node) -> int:
        return node.gpus - len(node.pods) * self.model.gpus_per_replica

    def _bind_and_start(self, t: int) -> None:
        """Bind pods whose node is ready, then let pods that are ready start serving."""
        for p in self.live.values():
            if p.bound_at is None:
                self._bind(p, t)
        for p in self.live.values():
            if not p.serving and p.ready_at is not None and p.ready_at <= t:
                p.serving = True
                p.free_at = float(t)
                heapq.heappush(self.heap, (p.free_at, p.name))

    def _bind(self, p: Pod, t: int, warm: bool = False) -> bool:
        """Bind `p` to the fullest ready node with room (kube-scheduler with MostAllocated for GPUs)."""
        g = self.model.gpus_per_replica
        best: Node | None = None
        for node in self.nodes.values():
            free = self.free_gpus(node)
            usable = node.ready_at <= t and node.removed_at is None and not node.cordoned and free >= g
            if usable and (best is None or free < self.free_gpus(best)):
                best = node
        if best is None:
            return False
        best.pods.add(p.name)
        p.node = best.name
        p.bound_at = t
        p.ready_at = t if warm else t + int(self.model.cold_start_s)
        if not warm:
            self.cold_starts += 1
        return True

    def _release(self, p: Pod, t: int) -> None:
        if p.node is not None and p.node in self.nodes:
            self.nodes[p.node].pods.discard(p.name)
        p.deleted_at = t

    def _delete_pod(self, p: Pod, t: int) -> None:
        del self.live[p.name]
        if p.serving:
            p.serving = False
            if p.free_at > t:
                p.deleted_at = None  # draining: releases its GPU when its request is done
                self._draining.append(p)
                return
        self._release(p, t)

    _draining: list[Pod]

    def set_replicas(self, n: int, t: int) -> None:
        n = max(0, n)
        if n == self.spec:
            return
        self.scale_events += 1
        self.spec = n
        while len(self.live) < n:
            p = self._new_pod(t)
            self._bind(p, t)
        if len(self.live) > n:
            crowd = {name: len(node.pods) for name, node in self.nodes.items()}

            def rank(p: Pod) -> tuple[int, int, int, int, int, int]:
                assigned = p.bound_at is not None
                ready = p.ready_at is not None and p.ready_at <= t
                on_node = crowd.get(p.node or "", 0)
                return (
                    int(assigned),
                    int(ready),
                    p.deletion_cost or 0,
                    -on_node,
                    -(p.ready_at or 0),
                    -p.created,
                )

            for p in sorted(self.live.values(), key=rank)[: len(self.live) - n]:
                self._delete_pod(p, t)

    def apply(self, actions: Actions, t: int) -> None:
        for name in actions.drain_nodes:
            node = self.nodes.get(name)
            if node is None:
                continue
            for pname in list(node.pods):
                p = self.live.get(pname)
                if p is None:
                    continue
                self._delete_pod(p, t)
                q = self._new_pod(t)  # the ReplicaSet replaces it; it binds elsewhere below
                q.created = t
            node.removed_at = t  # cordoned; removed once drained
        for name in actions.remove_nodes:
            node = self.nodes.get(name)
            if node is not None and not node.pods:
                node.removed_at = t
                del self.nodes[name]
        for name in actions.cordon:
            if name in self.nodes:
                self.nodes[name].cordoned = True
        for name in actions.uncordon:
            if name in self.nodes:
                self.nodes[name].cordoned = False
        for _ in range(actions.add_nodes):
            self._add_node(t)
        for pname, cost in actions.deletion_costs:
            if pname in self.live:
                self.live[pname].deletion_cost = cost
        if actions.replicas is not None:
            self.set_replicas(actions.replicas, t)
        for name in [n for n, node in self.nodes.items() if node.removed_at is not None and not node.pods]:
            del self.nodes[name]

    def pending_pods(self) -> int:
        return sum(1 for p in self.live.values() if p.bound_at is None)

    # --- serving ------------------------------------------------------------------------------------------

    def _serve(self, t: int, end: int) -> None:
        """Serve [t, end): arrivals join the FIFO, free replicas take the oldest waiting request."""
        req = self.req
        while self.next_req < len(req) and req.arrival[self.next_req] < end:
            self.queue.append(self.next_req)
            self.next_req += 1
        heap = self.heap
        while self.queue and heap:
            free_at, name = heap[0]
            p = self.live.get(name)
            if p is None or not p.serving or p.free_at != free_at:
                heapq.heappop(heap)
                continue
            i = self.queue[0]
            start = max(free_at, float(req.arrival[i]), float(t))
            if start >= end:
                break
            self.queue.popleft()
            finish = start + float(self.service[i])
            self.ttft[i] = start - float(req.arrival[i]) + float(self.prefill[i])
            p.free_at = finish
            heapq.heapreplace(heap, (finish, name))
            k = int(start)
            self.start_count[k] += 1
            while k < finish:
                self.busy[k] += min(finish, k + 1) - max(start, k)
                k += 1
            d = int(finish)
            if d < len(self.dep_count):
                self.dep_count[d] += 1
                self.dep_frac[d] += (d + 1) - finish
            self.done += 1

    def run(self, controller: Controller) -> Result:
        self._draining = []
        t = 0
        k = self.tick
        last_arrival = int(self.req.duration_s) if len(self.req) else 0
        gpu_seconds = 0.0
        started = 0.0  # requests that started service before the step
        while True:
            self.t = t
            # 1. nodes ready: bind pending pods; 2. pods ready start serving; drained pods leave
            self._bind_and_start(t)
            still = []
            for p in self._draining:
                if p.free_at <= t:
                    self._release(p, t)
                else:
                    still.append(p)
            self._draining = still
            # 3. observe and act (departures before t are all known: completed counts up to t)
            if t > 0:
                a = t - k
                self.c_completed[a + 1 : t + 1] = self.c_completed[a] + np.cumsum(self.dep_count[a:t])
            actions = controller.step(self)
            if actions is not None:
                before = self.spec
                self.apply(actions, t)
                if self.spec > before:
                    self.first_scale_up_after.setdefault(t, self.spec)
                self._bind_and_start(t)
            # 4. serve [t, t+k)
            serving = [p for p in self.live.values() if p.serving]
            self.serving_n[t : t + k] = len(serving)
            self._serve(t, t + k)
            # 5. record, per second: waiting = arrived − started; inside a step the running ones are the
            # started less the departed (a draining replica's included); at the step's end, the replicas
            # still busy
            began = started + np.cumsum(self.start_count[t : t + k])
            self.queue_at[t + 1 : t + k + 1] = self.c_requests[t + 1 : t + k + 1] - began
            if k > 1:
                departed = self.c_completed[t] + np.cumsum(self.dep_count[t : t + k - 1])
                self.running_at[t + 1 : t + k] = began[:-1] - departed
            started = float(began[-1])
            self.running_at[t + k] = sum(1 for p in serving if p.free_at > t + k)
            bound = sum(1 for p in self.live.values() if p.bound_at is not None)
            self.live_at[t + 1 : t + k + 1] = bound
            self.replicas_at[t : t + k] = self.spec
            self.ready_at[t : t + k] = len(serving)
            counted = max(0.0, t + k - max(float(t), self.measure_from))
            gpu_seconds += (bound + len(self._draining)) * self.model.gpus_per_replica * counted
            t += k
            if t >= self.horizon - k or (t > last_arrival and self.done == len(self.req)):
                break
        self.end = t
        return self._result(controller, gpu_seconds, t)

    def _result(self, controller: Controller, gpu_seconds: float, end: int) -> Result:
        model = self.model
        measured = self.req.arrival >= self.measure_from
        lat = self.ttft[measured]
        served = lat[~np.isnan(lat)]
        unserved = int(np.isnan(lat).sum())
        slo = model.slo_ttft_s
        violations = int((served > slo).sum()) + unserved
        minute = (self.req.arrival[measured] // 60).astype(np.int64)
        filled = np.where(np.isnan(lat), np.inf, lat)
        bad_minutes = 0
        if len(filled):
            order = np.argsort(minute, kind="stable")
            m_sorted = minute[order]
            l_sorted = filled[order]
            bounds = np.flatnonzero(np.diff(m_sorted)) + 1
            for chunk in np.split(l_sorted, bounds):
                if np.percentile(chunk, model.slo_percentile, method="inverted_cdf") > slo:
                    bad_minutes += 1
        node_s = 0.0
        for node in self.all_nodes:
            stop = node.removed_at if node.removed_at is not None else end
            node_s += max(0.0, stop - max(node.requested_at, self.measure_from)) * node.gpus
        onset, work = largest_burst(self.req, model)
        reaction = next((t - onset for t in sorted(self.first_scale_up_after) if t >= onset), None)
        need = math.ceil(work - 1e-9)
        capacity = next(
            (t - onset for t in range(onset, min(end, len(self.ready_at))) if self.ready_at[t] >= need), None
        )
        reps = self.replicas_at[:end]
        return Result(
            policy=controller.name,
            description=controller.description,
            requests=int(measured.sum()),
            gpu_hours=gpu_seconds / 3600.0,
            node_gpu_hours=node_s / 3600.0,
            cost=node_s / 3600.0 / max(1, model.gpus_per_node) * model.node_hourly_price,
            slo_violations=violations,
            slo_violation_minutes=bad_minutes,
            p50_latency_s=float(np.percentile(filled, 50, method="inverted_cdf")) if len(filled) else 0.0,
            p99_latency_s=float(np.percentile(filled, 99, method="inverted_cdf")) if len(filled) else 0.0,
            scale_events=self.scale_events,
            cold_starts=self.cold_starts,
            reaction_s=None if reaction is None else float(reaction),
            capacity_s=None if capacity is None else float(capacity),
            mean_replicas=float(reps.mean()) if len(reps) else 0.0,
            max_replicas=int(reps.max()) if len(reps) else 0,
            replicas=reps.copy(),
            latency=filled,
        )


def replay(
    requests: Requests,
    model: ServiceModel,
    controller: Controller,
    initial_replicas: int = 1,
    measure_from: float = 0.0,
) -> Result:
    """Replay `requests` under `controller`; every controller starts from the same state. With
    `measure_from`, GPU-hours, node GPU-hours, cost and SLO figures count from that second on (`latency`
    holds the requests that arrived from it)."""
    return Simulation(requests, model, initial_replicas, measure_from).run(controller)
