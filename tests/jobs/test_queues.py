from typing import Any

import pytest

from jobs.queues import (
    FIFO,
    LIFO,
    Book,
    Capacity,
    Entry,
    FairShare,
    PerQueue,
    Priority,
    Queue,
    QueuePolicy,
    QueueRegistry,
    QueuesSpec,
    Running,
    default_registry,
    demand,
    quota_vector,
)
from jobs.resources import Resources
from kernel.documents import parse_document
from kernel.errors import InvalidSpec
from tests.jobs.jobs_builders import a_group, gpus, share

CONFIG = """\
apiVersion: tidescale.io/v1alpha1
kind: QueueConfig
policy: {type: Capacity, ordering: FIFO}
queues:
  - {name: research, cohort: lab, guaranteed: {gpu: 4, cpu: "64"}, max: {gpu: 8}}
  - {name: prod, cohort: lab, guaranteed: {gpu: "1.5"}, weight: 2}
"""


def test_a_queue_config_builds_queues_and_its_policy_from_the_registry() -> None:
    spec = parse_document(CONFIG, QueuesSpec, "queues.yaml")
    research, prod = (q.build() for q in spec.queues)
    assert research.guaranteed == Resources.of(gpu=4000, cpu=64_000) and research.max == Resources.of(
        gpu=8000
    )
    assert prod.guaranteed["gpu"] == 1500 and prod.weight == 2
    policy = default_registry().build(spec.policy)
    assert isinstance(policy, Capacity) and policy.ordering.name == "FIFO"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("type: Capacity", "type: Quota"), "queues.yaml:3: policy: Input tag 'Quota'"),
        (("gpu: 8", "gpus: 8"), "queues.yaml:5: queues.0.max: Value error, gpus: not a quota resource"),
        (
            ("weight: 2", "weight: 0"),
            "queues.yaml:6: queues.1.weight: Input should be greater than or equal to 1",
        ),
    ],
    ids=["unknown-policy", "unknown-resource", "zero-weight"],
)
def test_queue_config_errors_name_line_field_and_reason(edit: tuple[str, str], expected: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        parse_document(CONFIG.replace(*edit), QueuesSpec, "queues.yaml")
    assert str(e.value).startswith(expected), str(e.value)


def test_the_queue_registry_lists_what_it_knows() -> None:
    assert default_registry().known() == ("Capacity", "FIFO", "FairShare", "LIFO", "PerQueue", "Priority")
    with pytest.raises(KeyError, match="no queue policy 'FIFO' \\(known: \\)"):
        QueueRegistry().build(parse_document("policy: {type: FIFO}", QueuesSpec, "q").policy)


def test_a_groups_demand_counts_gpu_shares_in_milli() -> None:
    group = a_group(gpus(2), share(250))
    assert demand(group) == Resources.of(cpu=2000, memory=2 * 2**30, gpu=2250)


def test_quota_vectors_take_gpus_as_decimal_counts() -> None:
    assert quota_vector({"gpu": "0.5", "memory": "1Gi"}) == Resources.of(gpu=500, memory=2**30)


def test_the_dominant_share_is_the_largest_fraction_of_any_resource() -> None:
    book = Book(
        [Queue.of("q")],
        Resources.of(cpu=100_000, gpu=8000),
        [Running("default/x", "q", Resources.of(cpu=10_000, gpu=4000))],
    )
    assert book.dominant_share("q") == 0.5
    assert FairShare().key(Entry(a_group(gpus(1), queue="q"), 3), book) == (0.5, 0, 3)


def a_book(queues: list[Queue], running: list[Running] | None = None) -> Book:
    return Book(queues, Resources.of(cpu=100_000, gpu=8000), running or [])


def entry(queue: str, seq: int, gpu: int = 1, priority: int = 0) -> Entry:
    return Entry(a_group(gpus(gpu), name=f"{queue}-{seq}", queue=queue, priority=priority), seq)


PER_QUEUE = PerQueue("FIFO", {"cap": "Capacity", "fair": "FairShare", "newest": "LIFO", "urgent": "Priority"})
PER_QUEUE_QUEUES = [
    Queue.of("cap", {"gpu": 2}, cohort="lab"),
    Queue.of("fair", weight=2),
    Queue.of("newest", max={"gpu": 1}),
    Queue.of("plain"),
    Queue.of("urgent"),
]
# usage: cap holds 1 GPU of its 2 guaranteed; fair holds 4 of the cluster's 8 GPUs (share 0.5 / weight 2)
PER_QUEUE_RUNNING = [
    Running("default/c", "cap", Resources.of(gpu=1000)),
    Running("default/f", "fair", Resources.of(gpu=4000)),
]


@pytest.mark.parametrize(
    ("e", "key"),
    [
        (entry("cap", 7), (0, 0.0, 0, 7)),
        (entry("cap", 8, gpu=2), (1, 0.0, 0, 8)),
        (entry("fair", 5), (0, 0.25, 0, 5)),
        (entry("plain", 3), (0, 0.0, 3)),
        (entry("newest", 3), (0, 0.0, -3)),
        (entry("urgent", 4, priority=9), (0, 0.0, -9, 4)),
        (entry("unnamed", 2), (0, 0.0, 2)),
    ],
    ids=[
        "capacity-within-guarantee",
        "capacity-beyond-guarantee",
        "fair-share-by-weight",
        "fifo",
        "lifo",
        "priority",
        "default-for-unnamed-queues",
    ],
)
def test_per_queue_keys_are_capacity_tier_then_fair_share_then_the_queues_ordering(
    e: Entry, key: tuple[Any, ...]
) -> None:
    book = a_book(PER_QUEUE_QUEUES, PER_QUEUE_RUNNING)
    assert PER_QUEUE.key(e, book) == key
    assert PER_QUEUE.tier(e, book) == key[0]


@pytest.mark.parametrize(
    ("e", "ok", "reason"),
    [
        (entry("cap", 1), True, ""),
        (
            entry("cap", 1, gpu=3),
            False,
            "queue cap is above its guaranteed gpu (4 > 2) and cohort lab has only 0 idle to lend",
        ),
        (entry("newest", 1, gpu=2), False, "queue newest would exceed its max gpu: 2 > 1"),
        (entry("plain", 1, gpu=8), True, ""),
    ],
    ids=["capacity-within", "capacity-rules-for-capacity-queues", "max-for-others", "no-max-no-limit"],
)
def test_per_queue_admits_capacity_queues_by_capacity_rules_and_others_by_their_max(
    e: Entry, ok: bool, reason: str
) -> None:
    verdict = PER_QUEUE.admit(e, a_book(PER_QUEUE_QUEUES, PER_QUEUE_RUNNING))
    assert (verdict.ok, verdict.reason) == (ok, reason)


@pytest.mark.parametrize(
    ("policy", "order"),
    [
        (FIFO(), (5,)),
        (LIFO(), (-5,)),
        (Priority(), (-3, 5)),
        (Capacity(LIFO()), (-5,)),
        (FairShare(), (-3, 5)),
        (PerQueue("LIFO"), (-5,)),
        (PerQueue("FIFO", {"q": Capacity(FIFO())}), (5,)),
    ],
    ids=["fifo", "lifo", "priority", "capacity-by-its-ordering", "fair-share", "per-queue", "built-policy"],
)
def test_within_a_queue_each_policy_orders_by_its_ordering(
    policy: QueuePolicy, order: tuple[int, ...]
) -> None:
    assert policy.order(entry("q", 5, priority=3)) == order


def test_per_queue_names_the_policies_it_knows() -> None:
    with pytest.raises(
        KeyError, match="no queue policy 'Fair' \\(known: FIFO, LIFO, Priority, Capacity, FairShare\\)"
    ):
        PerQueue("FIFO", {"q": "Fair"})
    with pytest.raises(ValueError, match="cannot name another PerQueue"):
        PerQueue(PerQueue())


def test_a_per_queue_config_builds_from_a_document() -> None:
    spec = parse_document(
        "policy: {type: PerQueue, default: Priority, queues: {research: Capacity, prod: FairShare}}",
        QueuesSpec,
        "q",
    )
    policy = default_registry().build(spec.policy)
    assert isinstance(policy, PerQueue)
    assert isinstance(policy.policy("research"), Capacity) and isinstance(policy.policy("prod"), FairShare)
    assert isinstance(policy.policy("other"), Priority)


@pytest.mark.parametrize(
    ("reclaimable", "victims"),
    [(True, ["default/b-job"]), (False, [])],
    ids=["reclaimable-borrower", "not-reclaimable"],
)
def test_a_queue_that_is_not_reclaimable_is_never_a_reclaim_victim(
    reclaimable: bool, victims: list[str]
) -> None:
    queues = [
        Queue.of("a", {"gpu": 4}, cohort="lab"),
        Queue.of("b", {"gpu": 0}, cohort="lab", reclaimable=reclaimable),
    ]
    book = a_book(queues, [Running("default/b-job", "b", Resources.of(gpu=2000))])
    verdict = Capacity().admit(entry("a", 1), book)
    assert verdict.ok and [r.uid for r in verdict.reclaim] == victims


def test_reclaimable_is_read_from_a_queue_document() -> None:
    spec = parse_document("queues: [{name: x, reclaimable: false}]", QueuesSpec, "q")
    assert spec.queues[0].build().reclaimable is False
