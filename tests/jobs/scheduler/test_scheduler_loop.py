"""The scheduler's loop, one cycle at a time, against a cache fed with objects and a writer that records calls
and can be told to fail (the API-server paths are tested on the real control plane elsewhere)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from jobs.scheduler.cache import SchedulerCache
from jobs.scheduler.config import SchedulerConfig
from jobs.scheduler.kube import Conflict, Gone
from jobs.scheduler.loop import Scheduler
from jobs.workload import BinpackSpec
from kernel.clock import FakeClock
from kernel.kube_events import ObjectRef


class FakeWriter:
    def __init__(self) -> None:
        self.binds: list[tuple[str, str, dict[str, str]]] = []
        self.statuses: list[tuple[str, str]] = []
        self.fail_next: list[Exception] = []

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: Mapping[str, str]) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)
        self.binds.append((name, node, dict(annotations)))

    def pod_status(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        self.statuses.append((name, body["status"]["conditions"][0]["message"]))

    def group_status(self, api: str, namespace: str, name: str, body: Mapping[str, Any]) -> None: ...

    def queue_status(self, name: str, body: Mapping[str, Any]) -> None: ...

    def evict(self, namespace: str, name: str) -> str:
        return ""


class FakeEvents:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str]] = []

    def record(self, regarding: ObjectRef, reason: str, note: str, **_: Any) -> None:
        self.recorded.append((regarding.name, reason, note))

    def flush(self) -> None: ...

    def close(self) -> None: ...


def node(name: str, gpus: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {}},
        "spec": {},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": str(gpus)}},
    }


def pod(name: str, gpus: int = 1, node_name: str = "", scheduler: str = "tidescale") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schedulerName": scheduler,
        "containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "nvidia.com/gpu": str(gpus)}}}],
    }
    if node_name:
        spec["nodeName"] = node_name
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "creationTimestamp": "2026-12-03T08:00:00Z",
        },
        "spec": spec,
        "status": {"phase": "Pending"},
    }


def a_scheduler() -> tuple[Scheduler, SchedulerCache, FakeWriter, FakeEvents, FakeClock]:
    cache = SchedulerCache("tidescale")
    writer, events, clock = FakeWriter(), FakeEvents(), FakeClock()
    config = SchedulerConfig(placement=BinpackSpec(), bind_workers=1)
    sched = Scheduler(cache, writer, events, config, clock=clock)  # type: ignore[arg-type]
    return sched, cache, writer, events, clock


def settle(s: Scheduler) -> None:
    s._binder.submit(lambda: None).result()
    s._status_writes.submit(lambda: None).result()


def test_a_decided_pod_is_assumed_at_once_and_bound_with_its_device_annotations() -> None:
    s, cache, writer, _, _ = a_scheduler()
    cache.on_node("ADDED", node("n0", gpus=2))
    cache.on_pod("ADDED", pod("a"))
    report = s.run_cycle()
    assert report.admitted == 1
    settle(s)
    ((name, where, annotations),) = writer.binds
    assert (name, where, annotations["tidescale.io/gpus"]) == ("a", "n0", "0")
    # the assumption holds the GPU until the informer shows the bind: the next pod gets the other one
    cache.on_pod("ADDED", pod("b"))
    s.run_cycle()
    settle(s)
    assert writer.binds[1][2]["tidescale.io/gpus"] == "1"


def test_a_bind_conflict_forgets_the_assumption_and_requeues_the_pod_after_a_backoff() -> None:
    s, cache, writer, events, clock = a_scheduler()
    cache.on_node("ADDED", node("n0"))
    cache.on_pod("ADDED", pod("a"))
    writer.fail_next.append(Conflict("bind pod ns/a to n0: HTTP 409 already bound"))
    s.run_cycle()
    settle(s)
    assert writer.binds == [] and not cache.is_assumed("uid-a")
    assert ("a", "FailedScheduling", "binding to n0 failed: bind pod ns/a to n0: HTTP 409 already bound") in (
        events.recorded
    )
    assert s.run_cycle().offered == 0  # in backoff
    clock.advance(1.5)
    s.run_cycle()
    settle(s)
    assert [b[:2] for b in writer.binds] == [("a", "n0")]


def test_a_pod_whose_node_vanished_before_the_bind_is_requeued() -> None:
    s, cache, writer, _, clock = a_scheduler()
    cache.on_node("ADDED", node("n0"))
    cache.on_pod("ADDED", pod("a"))
    gate = threading.Event()
    s._binder.submit(gate.wait)  # the one bind worker is busy: the decision waits for it
    s.run_cycle()
    cache.on_node("DELETED", node("n0"))
    gate.set()
    settle(s)
    assert writer.binds == [] and not cache.is_assumed("uid-a")
    cache.on_node("ADDED", node("n1"))
    clock.advance(1.5)
    s.run_cycle()
    settle(s)
    assert [b[:2] for b in writer.binds] == [("a", "n1")]


def test_a_pod_that_is_gone_is_dropped_without_backoff() -> None:
    s, cache, writer, _, _ = a_scheduler()
    cache.on_node("ADDED", node("n0"))
    cache.on_pod("ADDED", pod("a"))
    writer.fail_next.append(Gone("bind pod ns/a: HTTP 404"))
    s.run_cycle()
    settle(s)
    assert not cache.is_assumed("uid-a") and s._backoff == {}


def test_an_unschedulable_pod_is_parked_until_capacity_frees() -> None:
    s, cache, writer, _, _ = a_scheduler()
    cache.on_node("ADDED", node("n0"))
    cache.on_pod("ADDED", pod("other", node_name="n0", scheduler="default-scheduler"))
    cache.on_pod("ADDED", pod("a"))
    assert s.run_cycle().unschedulable == 1
    settle(s)
    assert writer.statuses == [("a", "0/1 nodes are available: 1 insufficient nvidia.com/gpu.")]
    cache.on_pod("ADDED", pod("b", gpus=0))  # a new pod frees nothing: a is not tried again
    report = s.run_cycle()
    assert (report.offered, report.admitted) == (1, 1)
    cache.on_pod("DELETED", pod("other", node_name="n0", scheduler="default-scheduler"))
    report = s.run_cycle()
    assert (report.offered, report.admitted) == (1, 1)


def test_an_unchanged_no_is_written_once() -> None:
    s, cache, writer, _, _ = a_scheduler()
    cache.on_node("ADDED", node("n0", gpus=0))
    cache.on_pod("ADDED", pod("a"))
    s.run_cycle()
    cache.on_node("MODIFIED", {**node("n0", gpus=0), "metadata": {"name": "n0", "labels": {"x": "y"}}})
    s.run_cycle()
    settle(s)
    assert len(writer.statuses) == 1


def exported(s: Scheduler, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(s.metrics.render().decode())
        for sample in family.samples
        if sample.name == name
    }


def member(name: str, group: str, created: str) -> dict[str, Any]:
    obj = pod(name)
    obj["metadata"]["annotations"] = {"scheduling.k8s.io/group-name": group}
    obj["metadata"]["creationTimestamp"] = created
    return obj


def test_a_waiting_gang_is_exported_with_when_it_began_to_wait_until_it_is_bound() -> None:
    s, cache, _, _, _ = a_scheduler()
    cache.on_node("ADDED", node("n0", gpus=4))
    cache.on_group(
        "ADDED", {"metadata": {"name": "g", "namespace": "ns"}, "spec": {"minMember": 3, "queue": "research"}}
    )
    cache.on_pod("ADDED", member("g-0", "g", "2026-12-03T08:00:05Z"))
    cache.on_pod("ADDED", member("g-1", "g", "2026-12-03T08:00:00Z"))
    cache.on_pod("ADDED", pod("big", gpus=8))  # never fits: parked, still waiting
    s.run_cycle()

    since = exported(s, "tidescale_scheduler_pending_gang_since_seconds")
    assert since == {(("podgroup", "ns/g"), ("queue", "research")): 1796284800.0}  # 2026-12-03T08:00:00Z
    pending = exported(s, "tidescale_scheduler_pending_pods")
    assert pending == {(("queue", "default"),): 1, (("queue", "research"),): 2}

    cache.on_pod("ADDED", member("g-2", "g", "2026-12-03T08:01:00Z"))  # the gang is whole: bound
    s.run_cycle()
    settle(s)
    assert exported(s, "tidescale_scheduler_pending_gang_since_seconds") == {}
    pending = exported(s, "tidescale_scheduler_pending_pods")
    assert pending == {(("queue", "default"),): 1, (("queue", "research"),): 0}
