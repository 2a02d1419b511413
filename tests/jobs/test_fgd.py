from collections import Counter

import numpy as np
import pytest

from jobs.fgd import (
    FragModel,
    TaskShape,
    TypicalTasks,
    balance_gain,
    fgd_gain,
    fgd_scores,
    fits,
    model_allowed,
    scalar_scores,
    sigmoid_score,
    slot_values,
    workload_ratio,
)

HALF = TaskShape(1000, 500, 1)
WHOLE = TaskShape(1000, 1000, 1)


def a_model(counts: dict[TaskShape, int], models: tuple[str, ...] = ("", "A100")) -> FragModel:
    return FragModel(TypicalTasks.from_counts(Counter(counts)), models)


def frag_of(model: FragModel, cpu: int, gpus: list[int], node_model: int = 1) -> float:
    return float(model.fragmentation(np.array([cpu]), np.array([gpus]), np.array([node_model]))[0])


def test_typical_tasks_keep_the_most_popular_shapes_up_to_the_threshold_and_renormalise() -> None:
    counts = Counter({HALF: 60, WHOLE: 30, TaskShape(2000, 0, 0): 6, TaskShape(4000, 0, 0): 4})
    t = TypicalTasks.from_counts(counts, 95)
    assert t.shapes == (HALF, WHOLE, TaskShape(2000, 0, 0))
    assert t.shares == pytest.approx((60 / 96, 30 / 96, 6 / 96))


def test_equally_popular_shapes_are_ordered_larger_first() -> None:
    a, b = TaskShape(1000, 0, 0), TaskShape(2000, 0, 0)
    assert TypicalTasks.from_counts(Counter({a: 5, b: 5}), 50).shapes == (b,)


@pytest.mark.parametrize(
    ("cpu", "gpus", "expected"),
    [
        (10_000, [1000, 300], 0.75 * 300 + 0.25 * 300),
        (10_000, [400, 300], 700.0),
        (500, [1000, 300], 1300.0),
        (10_000, [1000, 1000], 0.0),
        (10_000, [0, 0], 0.0),
    ],
    ids=["small-gpu-is-fragment", "nothing-fits", "cpu-short-strands-all", "empty-node", "full-node"],
)
def test_fragmentation_counts_gpu_milli_the_typical_tasks_cannot_use(
    cpu: int, gpus: list[int], expected: float
) -> None:
    assert frag_of(a_model({HALF: 3, WHOLE: 1}), cpu, gpus) == pytest.approx(expected)


def test_cpu_only_tasks_see_all_free_gpu_as_fragment() -> None:
    assert frag_of(a_model({TaskShape(1000, 0, 0): 1}), 10_000, [1000, 1000]) == 2000.0


def test_a_task_limited_to_other_models_sees_a_node_as_fragment() -> None:
    model = a_model({TaskShape(1000, 1000, 1, "H100"): 1})
    assert frag_of(model, 10_000, [1000], node_model=1) == 1000.0
    assert model_allowed("H100|A100", "A100") and not model_allowed("H100", "")


def test_fgd_scores_each_gpu_choice_and_keeps_the_best_slots() -> None:
    model = a_model({HALF: 3, WHOLE: 1})
    cpu = np.array([10_000])
    gpus = np.array([[1000, 600]])
    scored = fgd_scores(model, HALF, cpu, gpus, np.array([1]))
    # taking the share from the 600 GPU leaves 100 fragment; from the whole GPU it strands a whole slot
    assert scored.score[0] == int(100 / (1 + np.exp(-50 / 1000)))
    assert slot_values(gpus[0], int(scored.best_slots[0])) == (600,)
    assert scored.frag is not None and scored.frag.tolist() == [0.25 * 600]


def test_a_state_that_cannot_host_the_task_scores_minus_infinity() -> None:
    model = a_model({HALF: 1})
    scored = fgd_scores(model, WHOLE, np.array([10_000]), np.array([[600, 600]]), np.array([1]))
    assert scored.score[0] == -np.inf


def test_the_sigmoid_score_is_truncated_like_the_paper_plugin() -> None:
    assert sigmoid_score(np.array([0.0, -1.0, 39.0, 41.0])).tolist() == [50, 49, 50, 51]


def test_the_balance_gain_rewards_placements_that_leave_cpu_for_the_free_gpus() -> None:
    # ratio 10 CPU milli per GPU milli: 8000 free GPU milli need 80 cores
    gain = balance_gain(64_000.0, 8000.0, np.array([63_000.0, 40_000.0]), np.array([7000.0, 7000.0]), 10.0)
    assert gain.tolist() == pytest.approx([1600 - 700, 1600 - 3000])
    assert workload_ratio(TypicalTasks((HALF, TaskShape(4000, 0, 0)), (0.5, 0.5))) == 10.0


@pytest.mark.parametrize(
    "shape",
    [HALF, WHOLE, TaskShape(2000, 1000, 2), TaskShape(3000, 0, 0), TaskShape(500, 230, 1)],
    ids=["share", "one-gpu", "two-gpus", "cpu-only", "small-share"],
)
def test_the_scalar_path_scores_exactly_like_the_vectorised_one(shape: TaskShape) -> None:
    rng = np.random.default_rng(11)
    model = a_model(
        {HALF: 5, WHOLE: 3, TaskShape(2000, 1000, 2): 1, TaskShape(500, 230, 1): 2, TaskShape(3000, 0, 0): 2}
    )
    gpus = -np.sort(-rng.choice([0, 100, 230, 470, 500, 770, 1000], size=(40, 4)), axis=1)
    cpu = rng.integers(0, 8000, size=40)
    node_model = np.ones(40, dtype=np.int64)
    ok = fits(shape, cpu, gpus, node_model, model.models)
    vec = fgd_scores(model, shape, cpu, gpus, node_model, ok)
    one = scalar_scores(model, shape, cpu.tolist(), gpus.tolist(), node_model.tolist(), ok.tolist(), fgd_gain)
    assert one.score.tolist() == vec.score.tolist()
    assert one.best_slots.tolist() == vec.best_slots.tolist()
    assert one.frag is not None and vec.frag is not None
    assert one.frag.tolist() == pytest.approx(vec.frag.tolist())
