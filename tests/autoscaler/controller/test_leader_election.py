"""Leader election on a real Lease: two electors (two controller replicas) on one lease, short terms."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client

from kernel.leader import LeaderElector
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

LEASE = "tidescale-controller"


def elector(kube: client.ApiClient, namespace: str, identity: str) -> LeaderElector:
    return LeaderElector(
        kube, namespace, LEASE, identity, lease_seconds=2, renew_seconds=1.5, retry_seconds=0.2
    )


def lease(kube: client.ApiClient, namespace: str) -> client.V1Lease:
    return client.CoordinationV1Api(kube).read_namespaced_lease(LEASE, namespace)


def test_of_two_electors_racing_for_a_missing_lease_exactly_one_leads(
    kube: client.ApiClient, namespace: str
) -> None:
    a, b = elector(kube, namespace, "a"), elector(kube, namespace, "b")
    start = threading.Barrier(2)

    def attempt(e: LeaderElector) -> bool:
        start.wait()
        return e.try_acquire_or_renew()

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(attempt, [a, b]))
    assert sorted(results) == [False, True]
    leader, follower = (a, b) if results[0] else (b, a)
    for _ in range(3):  # renewals keep it with the same one
        assert leader.try_acquire_or_renew()
        assert not follower.try_acquire_or_renew()
    assert (leader.is_leader, follower.is_leader) == (True, False)
    spec = lease(kube, namespace).spec
    assert (spec.holder_identity, spec.lease_transitions) == (leader.identity, 0)


def test_the_follower_takes_over_at_once_after_the_leader_releases(
    kube: client.ApiClient, namespace: str
) -> None:
    a, b = elector(kube, namespace, "a"), elector(kube, namespace, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert a.release()
    assert not a.is_leader
    assert lease(kube, namespace).spec.holder_identity == ""
    assert b.try_acquire_or_renew()
    assert not a.try_acquire_or_renew()
    spec = lease(kube, namespace).spec
    assert (spec.holder_identity, spec.lease_transitions) == ("b", 1)


def test_the_follower_takes_over_when_the_leader_stops_renewing(
    kube: client.ApiClient, namespace: str
) -> None:
    a, b = elector(kube, namespace, "a"), elector(kube, namespace, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # the lease is fresh: b waits
    # a stops renewing (a hung or partitioned replica): it stops acting after renew_seconds ...
    wait_for(lambda: not a.is_leader, 10, "the silent leader to stop acting")
    # ... and b takes the lease once renewTime + leaseDurationSeconds has passed
    wait_for(b.try_acquire_or_renew, 10, "the follower to take the expired lease")
    assert not a.try_acquire_or_renew()
    assert lease(kube, namespace).spec.holder_identity == "b"


def test_two_running_electors_never_lead_together_and_hand_over_on_stop(
    kube: client.ApiClient, namespace: str
) -> None:
    leaders: list[str] = []
    overlap: list[list[str]] = []
    lock = threading.Lock()

    def callbacks(identity: str) -> tuple[Callable[[], None], Callable[[], None]]:
        def start() -> None:
            with lock:
                leaders.append(identity)
                if len(leaders) > 1:
                    overlap.append(list(leaders))

        def stop() -> None:
            with lock:
                leaders.remove(identity)

        return start, stop

    stops = {name: threading.Event() for name in ("a", "b")}
    threads = {
        name: elector(kube, namespace, name).start(*callbacks(name), stops[name]) for name in ("a", "b")
    }
    try:
        first = wait_for(lambda: list(leaders), 10, "a leader")[0]
        other = "b" if first == "a" else "a"
        stops[first].set()
        threads[first].join(10)
        wait_for(lambda: leaders == [other], 10, f"{other} to take over from {first}")
        assert overlap == []
        assert lease(kube, namespace).spec.lease_transitions == 1
    finally:
        for event in stops.values():
            event.set()
        for thread in threads.values():
            thread.join(10)
    assert leaders == []
