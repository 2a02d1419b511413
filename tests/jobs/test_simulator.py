import numpy as np
import pytest

from jobs.fgd import FragModel, TaskShape, TypicalTasks
from jobs.openb import NodeList, PodList
from jobs.scorers import FGD, BestFit
from jobs.simulator import (
    ClassTable,
    Events,
    Simulation,
    node_order,
    prepare_pods,
    read_level,
    simulate,
)


def a_pod_list(rows: list[tuple[int, int, int, int]]) -> PodList:
    """Rows of (cpu_milli, memory_mib, num_gpu, gpu_milli), named in row order."""
    return PodList(
        names=tuple(f"openb-pod-{i:04d}" for i in range(len(rows))),
        cpu_milli=np.array([r[0] for r in rows], dtype=np.int64),
        memory_mib=np.array([r[1] for r in rows], dtype=np.int64),
        num_gpu=np.array([r[2] for r in rows], dtype=np.int64),
        gpu_milli=np.array([r[3] for r in rows], dtype=np.int64),
        gpu_spec=("",) * len(rows),
    )


def a_node_list(rows: list[tuple[int, int, int, str]]) -> NodeList:
    return NodeList(
        names=tuple(f"openb-node-{i:04d}" for i in range(len(rows))),
        cpu_milli=np.array([r[0] for r in rows], dtype=np.int64),
        memory_mib=np.array([r[1] for r in rows], dtype=np.int64),
        gpus=np.array([r[2] for r in rows], dtype=np.int64),
        models=tuple(r[3] for r in rows),
    )


@pytest.mark.parametrize(
    ("rows", "cluster_milli", "submitted", "total"),
    [
        ([(1000, 0, 1, 1000)] * 5, 10_000, 13, 13_000),
        ([(1000, 0, 8, 1000)], 8_000, 2, 16_000),
        ([(1000, 0, 1, 1000)] * 20, 10_000, 13, 13_000),
    ],
    ids=["tops-up-to-the-target", "stop-test-uses-the-per-gpu-share", "tunes-down"],
)
def test_the_workload_is_tuned_to_the_arrival_target_as_the_paper_does(
    rows: list[tuple[int, int, int, int]], cluster_milli: int, submitted: int, total: int
) -> None:
    pods = prepare_pods(a_pod_list(rows), cluster_milli, 1.3, np.random.default_rng(42))
    assert len(pods) == submitted
    assert pods.total_gpu_milli == total


def test_the_original_pods_are_shuffled_and_the_copies_appended_after_them() -> None:
    rows = [(1000 + i, 0, 1, 1000) for i in range(5)]
    pods = prepare_pods(a_pod_list(rows), 10_000, 1.3, np.random.default_rng(1))
    assert sorted(pods.cpu_milli[:5].tolist()) == [1000, 1001, 1002, 1003, 1004]
    assert set(pods.cpu_milli[5:].tolist()) <= set(range(1000, 1005))


def test_the_node_order_is_a_seeded_permutation() -> None:
    nodes = a_node_list([(1000, 1, 1, "T4")] * 6)
    a = node_order(nodes, np.random.default_rng(3))
    assert sorted(a.tolist()) == list(range(6))
    assert a.tolist() == node_order(nodes, np.random.default_rng(3)).tolist()


def events(arrived: list[int], used: list[int]) -> Events:
    n = len(arrived)
    return Events(np.array(used), np.array(arrived), np.zeros(n), np.ones(n, dtype=bool), 0)


@pytest.mark.parametrize(
    ("arrived", "used", "level", "unallocated"),
    [
        ([9_940, 10_000, 10_040, 10_100], [9_900, 9_950, 9_960, 9_960], 100, 0.45),
        ([8_000, 12_000], [8_000, 11_000], 81, 20.0),
    ],
    ids=["mean-over-the-level", "falls-back-to-neighbouring-levels"],
)
def test_the_metric_averages_allocation_over_the_events_at_an_arrival_level(
    arrived: list[int], used: list[int], level: int, unallocated: float
) -> None:
    assert read_level(events(arrived, used), 10_000, level).unallocated_pct == pytest.approx(unallocated)


def test_an_emptied_class_is_never_revived_under_the_same_id() -> None:
    table = ClassTable(2, FragModel(TypicalTasks((), ()), ("",)))
    k = table.intern(0, 2, 1000, [1000, 1000])
    table.leave(k)
    assert table.intern(0, 2, 1000, [1000, 1000]) != k
    assert table.intern(0, 2, 1000, [1000, 1000]) == k + 1


def small_cluster() -> tuple[NodeList, PodList]:
    nodes = a_node_list([(32_000, 131_072, 4, "T4"), (16_000, 65_536, 2, "T4"), (64_000, 262_144, 8, "A10")])
    pods = a_pod_list(
        [(4000, 8192, 1, 500), (2000, 4096, 1, 300), (8000, 16_384, 2, 1000), (1000, 1024, 0, 0)] * 3
    )
    return nodes, pods


def test_a_run_is_deterministic_for_a_seed_and_never_uses_more_than_arrived() -> None:
    nodes, pods = small_cluster()
    a = simulate(nodes, pods, FGD, 42)
    b = simulate(nodes, pods, FGD, 42)
    assert a.events.used_milli.tolist() == b.events.used_milli.tolist()
    assert (a.events.used_milli <= a.events.arrived_milli).all()
    assert a.events.used_milli[-1] <= nodes.total_gpu_milli


def test_the_event_fragmentation_matches_a_fresh_measure_of_the_final_state() -> None:
    nodes, pods = small_cluster()
    rng = np.random.default_rng(5)
    frag = FragModel(
        TypicalTasks.from_arrays(pods.cpu_milli, pods.gpu_milli, pods.num_gpu, pods.gpu_spec), ["A10", "T4"]
    )
    sim = Simulation(nodes, node_order(nodes, rng), frag, BestFit(), rng)
    ev = sim.run(prepare_pods(pods, nodes.total_gpu_milli, 1.3, rng))
    s = sim.state
    final = frag.fragmentation(s.cpu_left, -np.sort(-s.free, axis=1), s.model).sum()
    assert ev.frag_milli[-1] == pytest.approx(final)


def test_a_pod_that_fits_nowhere_is_dropped_and_counted_as_arrived() -> None:
    nodes = a_node_list([(4000, 4096, 1, "T4")])
    pods = a_pod_list([(1000, 1024, 1, 1000), (1000, 1024, 1, 1000)])
    rng = np.random.default_rng(0)
    frag = FragModel(TypicalTasks((TaskShape(1000, 1000, 1),), (1.0,)), ["T4"])
    ev = Simulation(nodes, np.array([0]), frag, BestFit(), rng).run(pods)
    assert ev.placed.tolist() == [True, False]
    assert ev.node is not None and ev.node.tolist() == [0, -1]
    assert ev.arrived_milli.tolist() == [1000, 2000] and ev.used_milli.tolist() == [1000, 1000]
