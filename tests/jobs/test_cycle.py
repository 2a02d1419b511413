import random
from collections.abc import Sequence

import pytest

from jobs import cycle
from jobs.cycle import (
    ADMITTED,
    OVER_QUOTA,
    RECLAIMING,
    UNSCHEDULABLE,
    CycleResult,
    Decision,
    QueueState,
    Reclaim,
    schedule_cycle,
)
from jobs.devices import DeviceAssignment
from jobs.explain import explain
from jobs.placement import (
    FGD,
    Placement,
    PlacementPolicy,
    PlacementRegistry,
    default_registry,
    register_builtins,
)
from jobs.queues import FIFO as FIFOPolicy
from jobs.queues import LIFO, Book, Capacity, Entry, FairShare, PerQueue, Priority, Queue, QueuePolicy
from jobs.snapshot import BoundPod, ClusterState
from jobs.workload import BinpackSpec, FGDSpec, GangSpec, PlacementSpec, Pod, TidescaleSpec
from tests.jobs.jobs_builders import a_group, a_node, a_pod, a_state, gpus, share


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


def every_queue_every_time(queues: QueueState, snapshot: ClusterState) -> CycleResult:
    """The cycle as it was first written: every queue's entries re-keyed after every decision, and
    the placement built anew for each group."""
    registry = default_registry()
    policy = queues.policy
    state = snapshot.copy()
    book = Book(queues.queues, cycle._capacity(snapshot), cycle.running_from(snapshot))
    left = sorted(queues.pending, key=lambda e: (e.seq, e.uid))
    decisions: list[Decision] = []
    reclaims: list[Reclaim] = []
    reclaimed: set[str] = set()
    while left:
        heads: dict[str, Entry] = {}
        for e in left:
            cur = heads.get(e.queue)
            if cur is None or (policy.key(e, book), e.uid) < (policy.key(cur, book), cur.uid):
                heads[e.queue] = e
        entry = min(heads.values(), key=lambda e: (policy.key(e, book), e.uid))
        left.remove(entry)
        verdict = policy.admit(entry, book)
        if not verdict.ok:
            decisions.append(Decision(entry.uid, entry.queue, OVER_QUOTA, verdict.reason))
            continue
        result = registry.build(entry.group.placement).place(entry.group, state)
        if isinstance(result, Placement):
            placed = {b.pod for b in result.bindings}
            book.charge(entry.queue, cycle._placed_demand(entry, placed))
            detail = ", ".join(f"{b.pod}->{b.node}" for b in result.bindings)
            decisions.append(Decision(entry.uid, entry.queue, ADMITTED, detail, result, verdict.borrowing))
            continue
        victims = cycle._pick_victims(entry, verdict.reclaim, reclaimed)
        if victims:
            for v in victims:
                reclaimed.add(v.uid)
                reclaims.append(
                    Reclaim(
                        v.uid,
                        v.queue,
                        entry.uid,
                        f"queue {entry.queue} reclaims its guarantee from {v.queue}",
                    )
                )
            names = ", ".join(v.uid for v in victims)
            decisions.append(Decision(entry.uid, entry.queue, RECLAIMING, f"waiting for {names}: {result}"))
            continue
        decisions.append(Decision(entry.uid, entry.queue, UNSCHEDULABLE, str(result)))
    return CycleResult(tuple(decisions), tuple(reclaims))


POLICIES: list[QueuePolicy] = [
    FIFOPolicy(),
    LIFO(),
    Priority(),
    Capacity(FIFOPolicy()),
    Capacity(),
    FairShare(),
    PerQueue("FIFO", {"a": "Capacity", "b": "FairShare", "c": "LIFO"}),
    PerQueue("Priority", {"a": "Capacity", "b": "Capacity"}),
]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("policy", POLICIES, ids=[type(p).__name__ + str(k) for k, p in enumerate(POLICIES)])
def test_the_cycle_decides_like_re_keying_every_queue_after_every_decision(
    policy: QueuePolicy, seed: int
) -> None:
    rng = random.Random(seed)
    queues = [
        Queue.of("a", {"gpu": rng.choice([1, 3, 6])}, cohort="lab"),
        Queue.of("b", {"gpu": rng.choice([0, 2])}, max={"gpu": 8}, cohort="lab", weight=2),
        Queue.of("c", cohort="lab", reclaimable=rng.random() < 0.5),
    ]
    entries = [
        Entry(
            a_group(
                gpus(rng.choice([1, 1, 2, 4])),
                name=f"e{k}",
                queue=rng.choice("abcd"),
                priority=rng.randrange(3),
            ),
            rng.randrange(40),
        )
        for k in range(30)
    ]
    state = gpu_nodes(6, per_node=2)
    running = [("a", 2), ("c", 1), ("c", 1)]
    for i, (q, n) in enumerate(running):
        pod = gpus(n)
        state.bind(
            i,
            BoundPod(
                f"r{i}", f"n{i}", pod.request, DeviceAssignment(tuple(range(n))), queue=q, group=f"r{i}"
            ),
        )
    inputs = QueueState(policy, queues, entries)
    assert schedule_cycle(inputs, state) == every_queue_every_time(inputs, state)


class Counting(PlacementRegistry):
    def __init__(self) -> None:
        super().__init__()
        register_builtins(self)
        self.built: list[str] = []

    def build(self, spec: PlacementSpec) -> PlacementPolicy:
        self.built.append(spec.type)
        return super().build(spec)


def test_each_distinct_placement_is_built_once_per_cycle() -> None:
    specs = [BinpackSpec(), BinpackSpec(), FGDSpec(), GangSpec(inner=FGDSpec()), GangSpec(inner=FGDSpec())]
    entries = [Entry(a_group(gpus(1), name=f"g{k}", queue="q", placement=s), k) for k, s in enumerate(specs)]
    registry = Counting()
    schedule_cycle(QueueState(FIFOPolicy(), [], entries), gpu_nodes(8), registry)
    assert sorted(registry.built) == ["Binpack", "FGD", "FGD", "Gang"]


class Learning(FGD):
    def __init__(self) -> None:
        super().__init__()
        self.lessons: list[list[str]] = []
        self.fits = 0

    def learn(self, state: ClusterState, pods: Sequence[Pod]) -> None:
        self.lessons.append([p.name for p in pods])
        super().learn(state, pods)

    def _fit(self, state: ClusterState, pods: Sequence[Pod]) -> None:
        self.fits += 1
        super()._fit(state, pods)


def test_fgd_learns_the_typical_tasks_once_per_cycle_from_every_pending_pod() -> None:
    policy = Learning()
    registry = PlacementRegistry()
    registry.register("FGD", lambda spec, reg: policy)
    entries = [
        Entry(a_group(share(300), share(300), name="two", queue="q", placement=FGDSpec()), 0),
        Entry(a_group(gpus(1), name="one", queue="q", placement=FGDSpec()), 1),
        Entry(a_group(share(500), name="three", queue="r", placement=FGDSpec()), 2),
    ]
    result = schedule_cycle(QueueState(FIFOPolicy(), [], entries), gpu_nodes(3, per_node=2), registry)
    assert len(result.admitted) == 3
    assert policy.lessons == [["two-0", "two-1", "one-0", "three-0"]]
    assert policy.fits == 1


def bound_cluster() -> ClusterState:
    state = a_state(*(a_node(f"n{i}", cpu="32", gpus=4) for i in range(4)))
    for i, (pod, dev) in enumerate([(share(300), (1,)), (gpus(2), (0, 1)), (share(700), (3,))]):
        state.bind(i, BoundPod(f"b{i}", f"n{i}", pod.request, DeviceAssignment(dev)))
    return state


@pytest.mark.parametrize(
    "spec", [FGDSpec(), TidescaleSpec(), GangSpec(inner=TidescaleSpec())], ids=["fgd", "tidescale", "gang"]
)
def test_one_group_in_a_cycle_is_placed_as_explain_places_it_alone(spec: PlacementSpec) -> None:
    group = a_group(share(250), share(250), gpus(1), a_pod(cpu="8"), share(600), placement=spec, queue="q")
    state = bound_cluster()
    alone = explain(group, state).result
    result = schedule_cycle(QueueState(FIFOPolicy(), [], [Entry(group, 0)]), state)
    assert isinstance(alone, Placement)
    assert result.outcome("default/g").placement == alone


@pytest.mark.parametrize(
    ("per_queue", "order"),
    [
        ({}, ["default/a-0", "default/b-0", "default/a-1", "default/b-1"]),
        ({"a": "LIFO"}, ["default/a-1", "default/a-0", "default/b-0", "default/b-1"]),
        ({"b": "Priority"}, ["default/b-1", "default/a-0", "default/b-0", "default/a-1"]),
    ],
    ids=["fifo-everywhere", "one-lifo-queue", "one-priority-queue"],
)
def test_a_per_queue_policy_orders_each_queue_its_own_way(
    per_queue: dict[str, str], order: list[str]
) -> None:
    entries = [
        Entry(a_group(gpus(1), name="a-0", queue="a"), 0),
        Entry(a_group(gpus(1), name="b-0", queue="b"), 1),
        Entry(a_group(gpus(1), name="a-1", queue="a"), 2),
        Entry(a_group(gpus(1), name="b-1", queue="b", priority=5), 3),
    ]
    assert admitted(PerQueue("FIFO", per_queue), entries, gpu_nodes(4)) == order


def test_capacity_queues_and_fifo_queues_share_one_cycle() -> None:
    queues = [Queue.of("cap", {"gpu": 1}), Queue.of("fifo", max={"gpu": 1})]
    entries = [*one_gpu_groups("cap", 2), *one_gpu_groups("fifo", 2, first_seq=5)]
    result = schedule_cycle(QueueState(PerQueue("FIFO", {"cap": "Capacity"}), queues, entries), gpu_nodes(4))
    # cap-1, older than the fifo entries, is beyond its queue's guarantee once cap-0 runs: tier 1, last
    assert [(d.uid, d.outcome) for d in result.decisions] == [
        ("default/cap-0", ADMITTED),
        ("default/fifo-0", ADMITTED),
        ("default/fifo-1", OVER_QUOTA),
        ("default/cap-1", OVER_QUOTA),
    ]
