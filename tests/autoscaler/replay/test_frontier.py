"""The frontier maths on hand-made points: which points are efficient, GPU-hours along a frontier, and the
saving of one frontier against others at equal violations."""

import pytest

from autoscaler.replay.frontier import Point, gpu_hours_at, lower_frontier, saving


def pts(*pairs: tuple[float, float]) -> list[Point]:
    """Points from (violations, GPU-hours), the knob's value their index."""
    return [Point(float(i), g, v) for i, (v, g) in enumerate(pairs)]


def test_the_lower_frontier_keeps_only_points_no_other_beats_on_both_axes() -> None:
    points = pts((100, 10.0), (50, 12.0), (60, 20.0), (10, 30.0), (100, 11.0), (10, 30.0), (200, 10.0))
    front = lower_frontier(points)
    # (60, 20) loses to (50, 12); (100, 11) and (200, 10) to (100, 10); the second (10, 30) is the first again
    assert [(p.violations, p.gpu_hours) for p in front] == [(10, 30.0), (50, 12.0), (100, 10.0)]
    assert [p.value for p in front] == [3.0, 1.0, 0.0]


def test_a_single_point_or_none_is_its_own_frontier() -> None:
    assert lower_frontier([]) == ()
    (only,) = pts((5, 1.0))
    assert lower_frontier([only]) == (only,)


@pytest.mark.parametrize(
    ("violations", "gpu_hours"),
    [(10, 30.0), (30, 21.0), (50, 12.0), (75, 11.0), (100, 10.0), (9, None), (101, None)],
    ids=["first", "between", "a point", "between again", "last", "below", "above"],
)
def test_gpu_hours_are_linear_between_frontier_points_and_undefined_outside(
    violations: float, gpu_hours: float | None
) -> None:
    front = lower_frontier(pts((10, 30.0), (50, 12.0), (100, 10.0)))
    got = gpu_hours_at(front, violations)
    assert got == (None if gpu_hours is None else pytest.approx(gpu_hours))


def test_half_the_gpu_hours_everywhere_saves_half() -> None:
    theirs = lower_frontier(pts((0, 40.0), (100, 20.0), (200, 10.0)))
    ours = lower_frontier(pts((0, 20.0), (100, 10.0), (200, 5.0)))
    s = saving(ours, [theirs])
    assert (s.median, s.min, s.max) == (pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.5))
    assert (s.low, s.high, s.samples) == (0, 200, 20)
    assert saving(theirs, [theirs]).median == pytest.approx(0.0)


def test_the_saving_counts_only_the_violations_both_frontiers_cover() -> None:
    theirs = lower_frontier(pts((0, 40.0), (100, 20.0)))
    ours = lower_frontier(pts((50, 15.0), (300, 5.0)))  # at 50: 15 against 30; at 100: 13 against 20
    s = saving(ours, [theirs], samples=2)
    assert (s.low, s.high, s.samples) == (50, 100, 2)
    assert s.max == pytest.approx(0.5)
    assert s.min == pytest.approx(1 - 13 / 20)


def test_a_frontier_above_theirs_somewhere_has_a_negative_minimum() -> None:
    theirs = lower_frontier(pts((0, 20.0), (100, 10.0)))
    ours = lower_frontier(pts((0, 16.0), (100, 12.0)))  # cheaper with few violations, dearer with many
    s = saving(ours, [theirs], samples=3)
    assert s.max == pytest.approx(0.2)
    assert s.min == pytest.approx(-0.2)
    assert s.median == pytest.approx(1 - 14 / 15)


def test_a_frontier_wholly_at_fewer_violations_saves_at_least_against_their_fewest_violations_point() -> None:
    # theirs needs 6 GPU-h even at 50 violations; ours reaches 0–10 violations for 3–4 GPU-h
    s = saving(lower_frontier(pts((0, 4.0), (10, 3.0))), [lower_frontier(pts((50, 6.0), (90, 2.0)))])
    assert s.bound == "at least"
    assert (s.min, s.max) == (pytest.approx(1 - 4 / 6), pytest.approx(1 - 3 / 6))
    assert (s.low, s.high, s.samples) == (0, 10, 2)
    assert "ours 0–10, theirs 50–90" in s.reason and "their first point" in s.reason
    assert s.render()["bound"] == "at least"


def test_a_frontier_wholly_at_more_violations_saves_at_most_against_their_most_violations_point() -> None:
    s = saving(lower_frontier(pts((50, 3.0), (90, 2.0))), [lower_frontier(pts((0, 5.0), (10, 4.0)))])
    assert s.bound == "at most"
    assert (s.min, s.max) == (pytest.approx(1 - 3 / 4), pytest.approx(1 - 2 / 4))
    # dearer than theirs although it violates more: the bound is a loss
    worse = saving(
        lower_frontier(
            pts(
                (50, 6.0),
            )
        ),
        [lower_frontier(pts((0, 5.0), (10, 4.0)))],
    )
    assert worse.bound == "at most" and worse.max == pytest.approx(1 - 6 / 4)


def test_a_frontier_that_ended_before_ours_began_bounds_the_saving_though_another_starts_after() -> None:
    ours = lower_frontier(pts((40, 3.0), (45, 2.5)))
    s = saving(ours, [lower_frontier(pts((0, 5.0), (10, 4.0))), lower_frontier(pts((50, 3.0), (90, 2.0)))])
    assert s.bound == "at most"
    assert (s.min, s.max) == (pytest.approx(1 - 3 / 4), pytest.approx(1 - 2.5 / 4))
    assert saving((), [lower_frontier(pts((1, 1.0)))]).reason == "no points"


def test_against_several_frontiers_theirs_is_the_cheapest_that_covers_each_level() -> None:
    a = lower_frontier(pts((0, 10.0), (100, 10.0 - 1e-9)))  # flat at 10
    b = lower_frontier(pts((50, 8.0), (150, 4.0)))  # cheaper where it is defined
    ours = lower_frontier(pts((0, 5.0), (150, 2.0)))
    # levels 0, 50, 100; not beyond 100, where a has ended and might be cheaper than b; nor 0, where only a
    # covers but b, which needs 8 at 50, might need less than a's 10
    s = saving(ours, [a, b], samples=3)
    assert (s.low, s.high, s.samples) == (50, 100, 2)
    # at 50 b (8): ours 4; at 100 b (6): 3
    assert sorted([s.min, s.max]) == [pytest.approx(0.5), pytest.approx(0.5)]
    json = s.render()
    assert json == {"median": 0.5, "min": 0.5, "max": 0.5, "violations_range": [50.0, 100.0], "samples": 2}
    # a first point dearer than the one that covers cannot be the cheapest below it: the level counts
    dear = lower_frontier(pts((50, 12.0), (150, 4.0)))
    assert saving(ours, [a, dear], samples=3).samples == 3
