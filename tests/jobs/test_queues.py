import pytest

from jobs.queues import (
    Book,
    Capacity,
    Entry,
    FairShare,
    Queue,
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
    assert default_registry().known() == ("Capacity", "FIFO", "FairShare", "LIFO", "Priority")
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
