import numpy as np
import pytest

from jobs.fgd import FragModel, TaskShape, TypicalTasks
from jobs.scorers import (
    FGD,
    POLICY_NAMES,
    BestFit,
    DotProd,
    GpuClustering,
    GpuPacking,
    Random,
    Tidescale,
    policy_factory,
)
from jobs.simulator import ClassView, NodeState


def classes(*states: tuple[int, list[int]]) -> ClassView:
    """Node classes from (free cpu milli, free milli per GPU) - rows are sorted descending here."""
    width = max(len(g) for _, g in states)
    gpus = np.zeros((len(states), width), dtype=np.int64)
    for i, (_, g) in enumerate(states):
        gpus[i, : len(g)] = sorted(g, reverse=True)
    ngpu = np.array([len(g) for _, g in states])
    return ClassView(
        np.array([c for c, _ in states]),
        gpus,
        np.zeros(len(states), dtype=np.int64),
        ngpu,
    )


def scores(policy: object, view: ClassView, shape: TaskShape) -> list[float]:
    ok = np.ones(len(view.cpu), dtype=bool)
    return policy.class_scores(view, shape, ok).score.tolist()  # type: ignore[attr-defined]


SHARE = TaskShape(8000, 500, 1)


def test_bestfit_scores_the_least_leftover_highest() -> None:
    view = classes((64_000, [1000] * 8), (16_000, [1000, 600]))
    got = scores(BestFit(), view, SHARE)
    # raw score int(100 * (1 - (0.5 * cpu_left / 128000 + 0.5 * gpu_left / 8000)))
    assert got == [
        int(100 * (1 - (0.5 * 56_000 / 128_000 + 0.5 * 7500 / 8000))),
        int(100 * (1 - (0.5 * 8000 / 128_000 + 0.5 * 1100 / 8000))),
    ]
    assert got[1] > got[0]


def test_dotprod_prefers_the_node_whose_free_resources_align_least() -> None:
    view = classes((64_000, [1000] * 8), (16_000, [1000, 600]))
    got = scores(DotProd(), view, SHARE)
    d0 = ((64_000 / 128_000) * (8000 / 128_000) + (8000 / 8000) * (500 / 8000)) / 2
    assert got[0] == int(100 * (1 - d0))
    assert got[1] > got[0]


@pytest.mark.parametrize(
    ("state", "shape", "score"),
    [
        ((64_000, [1000] * 8), SHARE, 25),
        ((64_000, [1000, 1000]), SHARE, 31),
        ((64_000, [1000, 0]), SHARE, 49),
        ((64_000, [1000, 700]), SHARE, 93),
        ((64_000, [1000, 510]), SHARE, 95),
        ((64_000, [1000, 1000, 0, 0]), TaskShape(1000, 1000, 2), 48),
        ((64_000, [1000] * 8), TaskShape(1000, 0, 0), 0),
    ],
    ids=[
        "empty-8-gpu-node",
        "empty-2-gpu-node",
        "used-node-free-gpu",
        "shared-gpu-70pct-free",
        "shared-gpu-51pct-free",
        "used-node-two-whole",
        "cpu-only-pods-score-nothing",
    ],
)
def test_gpupacking_ranks_shared_gpus_then_used_nodes_then_small_empty_nodes(
    state: tuple[int, list[int]], shape: TaskShape, score: int
) -> None:
    assert scores(GpuPacking(), classes(state), shape) == [score]


def node_state(affinity: list[list[int]], gpu_left: list[int]) -> NodeState:
    n = len(affinity)
    free = np.zeros((n, 8), dtype=np.int64)
    for i, g in enumerate(gpu_left):
        free[i, 0] = g
    z = np.zeros(n, dtype=np.int64)
    return NodeState(z, z, z, free, z, z, z, np.array(affinity, dtype=np.int64))


@pytest.mark.parametrize(
    ("hosted", "expected"),
    [([1, 0, 0], 75), ([1, 1, 0], 50), ([0, 0, 0], 25), ([0, 1, 0], 0)],
    ids=["only-same-kind", "same-among-others", "no-gpu-pods", "only-other-kinds"],
)
def test_gpuclustering_tiers_by_the_kinds_of_gpu_pods_a_node_hosts(hosted: list[int], expected: int) -> None:
    state = node_state([hosted], [8000])
    got = GpuClustering().node_scores(state, SHARE, np.zeros(1))
    assert got.tolist() == [expected]


def test_gpuclustering_adds_a_quarter_for_fuller_nodes() -> None:
    state = node_state([[0, 0, 0]], [2000])
    assert GpuClustering().node_scores(state, SHARE, np.zeros(1)).tolist() == [25 + 25 * 6000 // 8000]


def test_random_picks_only_feasible_nodes() -> None:
    rng = np.random.default_rng(0)
    picks = {Random().pick(np.array([-np.inf, 0.0, -np.inf, 0.0]), rng) for _ in range(50)}
    assert picks == {1, 3}
    assert Random().pick(np.array([-np.inf]), rng) == -1


def test_fgd_takes_the_lowest_index_gpu_among_the_best_values() -> None:
    frag = FragModel(TypicalTasks((SHARE,), (1.0,)), ("",))
    rng = np.random.default_rng(0)
    assert FGD(frag).choose_gpus(np.array([1000, 600, 600, 0]), SHARE, (600,), rng) == [1]
    assert FGD(frag).choose_gpus(np.array([1000, 1000, 0]), TaskShape(0, 1000, 2), (), rng) == [0, 1]


def test_tidescale_prefers_a_node_that_keeps_cpu_for_its_free_gpus() -> None:
    frag = FragModel(TypicalTasks((TaskShape(12_000, 1000, 1),), (1.0,)), ("",))
    view = classes((96_000, [1000] * 8), (100_000, [1000] * 2))
    cpu_heavy = TaskShape(30_000, 0, 0)
    got = scores(Tidescale(frag), view, cpu_heavy)
    assert got[1] > got[0]


def test_every_policy_name_has_a_factory() -> None:
    frag = FragModel(TypicalTasks((), ()), ("",))
    assert [policy_factory(n)(frag).name for n in POLICY_NAMES] == list(POLICY_NAMES)
    with pytest.raises(KeyError, match="known: random, dotprod"):
        policy_factory("best")
