import random

import pytest

from jobs.cycle import ADMITTED, OVER_QUOTA, RECLAIMING, UNSCHEDULABLE, QueueState, schedule_cycle
from jobs.devices import DeviceAssignment
from jobs.queues import FIFO as FIFOPolicy
from jobs.queues import LIFO, Capacity, Entry, FairShare, Priority, Queue, QueuePolicy
from jobs.snapshot import BoundPod, ClusterState
from jobs.workload import GangSpec
from tests.jobs.jobs_builders import a_group, a_node, a_state, gpus


def one_gpu_groups(queue: str, count: int, first_seq: int = 0, priority: int = 0) -> list[Entry]:
    return [
        Entry(a_group(gpus(1), name=f"{queue}-{i}", queue=queue, priority=priority), first_seq + i)
        for i in range(count)
    ]


def gpu_nodes(count: int, per_node: int = 1) -> ClusterState:
    return a_state(*(a_node(f"n{i}", cpu="64", gpus=per_node) for i in range(count)))


def admitted(
    policy: QueuePolicy, entries: list[Entry], state: ClusterState, queues: list[Queue] | None = None
) -> list[str]:
    result = schedule_cycle(QueueState(policy, queues or [], entries), state)
    return list(result.admitted)


@pytest.mark.parametrize(
    ("policy", "winner"),
    [(FIFOPolicy(), "default/q-0"), (LIFO(), "default/q-2")],
    ids=["fifo-oldest-first", "lifo-newest-first"],
)
def test_fifo_takes_the_oldest_and_lifo_the_newest(policy: QueuePolicy, winner: str) -> None:
    assert admitted(policy, one_gpu_groups("q", 3), gpu_nodes(1)) == [winner]


def test_priority_goes_before_arrival_order() -> None:
    entries = [*one_gpu_groups("q", 2), Entry(a_group(gpus(1), name="urgent", queue="q", priority=9), 5)]
    assert admitted(Priority(), entries, gpu_nodes(2)) == ["default/urgent", "default/q-0"]


def test_a_group_that_does_not_fit_does_not_block_later_ones() -> None:
    big = Entry(a_group(gpus(4), name="big", queue="q"), 0)
    result = schedule_cycle(QueueState(FIFOPolicy(), [], [big, *one_gpu_groups("q", 1, 1)]), gpu_nodes(2))
    assert result.outcome("default/big").outcome == UNSCHEDULABLE
    assert (
        result.outcome("default/big").detail
        == "no node fits pod big-0 (2 nodes: insufficient nvidia.com/gpu)"
    )
    assert result.admitted == ("default/q-0",)


def quotas(cohort: str | None) -> list[Queue]:
    return [Queue.of("a", {"gpu": 2}, cohort=cohort), Queue.of("b", {"gpu": 2}, cohort=cohort)]


@pytest.mark.parametrize(
    ("cohort", "outcome", "detail"),
    [
        ("team", ADMITTED, ""),
        (
            None,
            OVER_QUOTA,
            "queue a is above its guaranteed gpu (3 > 2) and cohort (none) has only 0 idle to lend",
        ),
    ],
    ids=["borrows-idle-guarantee-in-cohort", "no-cohort-no-borrowing"],
)
def test_capacity_lets_a_queue_borrow_what_its_cohort_leaves_idle(
    cohort: str | None, outcome: str, detail: str
) -> None:
    result = schedule_cycle(QueueState(Capacity(), quotas(cohort), one_gpu_groups("a", 3)), gpu_nodes(4))
    third = result.outcome("default/a-2")
    assert third.outcome == outcome
    assert third.borrowing == (outcome == ADMITTED)
    if detail:
        assert third.detail == detail


def test_capacity_max_caps_a_queue_even_with_room() -> None:
    queues = [Queue.of("a", {"gpu": 4}, max={"gpu": 1})]
    result = schedule_cycle(QueueState(Capacity(), queues, one_gpu_groups("a", 2)), gpu_nodes(4))
    assert result.outcome("default/a-1").detail == "queue a would exceed its max gpu: 2 > 1"


def test_capacity_tries_queues_below_their_guarantee_first() -> None:
    queues = quotas("team")
    entries = [*one_gpu_groups("a", 3), *one_gpu_groups("b", 1, first_seq=10)]
    assert admitted(Capacity(FIFOPolicy()), entries, gpu_nodes(3), queues) == [
        "default/a-0",
        "default/b-0",
        "default/a-1",
    ]


def borrowed_cluster() -> ClusterState:
    """4 GPUs all used by queue a (2 of them borrowed from b); a-old is its newest, lowest-priority."""
    state = gpu_nodes(4)
    for i, (group, prio) in enumerate([("a-keep", 5), ("a-keep", 5), ("a-keep", 5), ("a-old", 0)]):
        pod = gpus(1)
        state.bind(
            i,
            BoundPod(
                f"{group}-{i}",
                f"n{i}",
                pod.request,
                DeviceAssignment((0,)),
                queue="a",
                group=group,
                priority=prio,
            ),
        )
    return state


def test_a_lender_reclaims_its_guarantee_from_borrowers_lowest_priority_first() -> None:
    result = schedule_cycle(
        QueueState(Capacity(), quotas("team"), one_gpu_groups("b", 1)), borrowed_cluster()
    )
    decision = result.outcome("default/b-0")
    assert decision.outcome == RECLAIMING
    assert [(r.victim, r.victim_queue, r.beneficiary) for r in result.reclaims] == [
        ("default/a-old", "a", "default/b-0")
    ]


def test_no_reclaim_for_a_queue_that_is_not_owed_anything() -> None:
    queues = [Queue.of("a", {"gpu": 4}, cohort="team"), Queue.of("b", {"gpu": 0}, cohort="team")]
    result = schedule_cycle(QueueState(Capacity(), queues, one_gpu_groups("b", 1)), borrowed_cluster())
    assert result.reclaims == ()
    assert result.outcome("default/b-0").outcome == OVER_QUOTA


def test_fair_share_splits_by_weight_on_the_dominant_resource() -> None:
    queues = [Queue("x", weight=1), Queue("y", weight=2)]
    entries = [*one_gpu_groups("x", 6), *one_gpu_groups("y", 6, first_seq=6)]
    got = admitted(FairShare(), entries, gpu_nodes(6), queues)
    assert got == [
        "default/x-0",
        "default/y-0",
        "default/y-1",
        "default/x-1",
        "default/y-2",
        "default/y-3",
    ]


def test_a_gang_in_a_queue_is_admitted_whole_or_not_at_all() -> None:
    gang = Entry(a_group(*(gpus(1) for _ in range(3)), name="gang", queue="q", placement=GangSpec()), 0)
    result = schedule_cycle(QueueState(FIFOPolicy(), [], [gang, *one_gpu_groups("q", 2, 1)]), gpu_nodes(2))
    assert result.outcome("default/gang").outcome == UNSCHEDULABLE
    assert result.admitted == ("default/q-0", "default/q-1")


@pytest.mark.parametrize(
    "policy",
    [FIFOPolicy(), LIFO(), Priority(), Capacity(), FairShare()],
    ids=["fifo", "lifo", "priority", "capacity", "fair"],
)
def test_a_cycle_is_deterministic_whatever_the_input_order(policy: QueuePolicy) -> None:
    entries = [*one_gpu_groups("a", 4), *one_gpu_groups("b", 4, first_seq=2, priority=1)]
    queues = quotas("team")
    first = schedule_cycle(QueueState(policy, queues, entries), gpu_nodes(5))
    shuffled = list(entries)
    random.Random(7).shuffle(shuffled)
    again = schedule_cycle(QueueState(policy, queues, shuffled), gpu_nodes(5))
    assert first == again


def test_the_cycle_decides_on_a_copy_and_leaves_the_snapshot_alone() -> None:
    state = gpu_nodes(2)
    schedule_cycle(QueueState(FIFOPolicy(), [], one_gpu_groups("q", 2)), state)
    assert state.bound == [] and [d.milli_free for d in state.dev] == [[1000], [1000]]
