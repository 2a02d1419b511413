"""Counting a run's delivery against its input: lost, duplicated, unexpected, and out of order within an input
key (first arrivals only)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from streaming.tally import Placed, Tally, Triple, expected, positions, reordered
from tests.streaming.kafka_records import example_plan, llm_requests, unique


def record(n: int, topic: str = "out") -> Triple:
    return (topic, f"r{n}", f"v{n}")


# Records 0–5, keys alternate a/b: a = 0, 2, 4; b = 1, 3, 5.
POSITION = {record(n): ("ab"[n % 2], n) for n in range(6)}
WANT = Counter(POSITION.keys())


def placed(*numbers: int, partition: int = 0) -> list[Placed]:
    return [("out", partition, record(n)) for n in numbers]


@pytest.mark.parametrize(
    ("delivered", "lost", "duplicated", "unexpected", "late"),
    [
        pytest.param(placed(0, 1, 2, 3, 4, 5), 0, 0, 0, 0, id="all-once-in-order"),
        pytest.param(placed(0, 1, 2, 3), 2, 0, 0, 0, id="two-lost"),
        pytest.param(placed(0, 1, 2, 3, 2, 3, 4, 5), 0, 2, 0, 0, id="a-batch-written-again-is-not-late"),
        pytest.param(placed(0, 1, 4, 3, 2, 5), 0, 0, 0, 1, id="two-swapped-within-a-key"),
        pytest.param(placed(1, 0, 3, 2, 5, 4), 0, 0, 0, 0, id="keys-interleaved-differently"),
        pytest.param(placed(0, 2, 4) + placed(1, 3, 5, partition=1), 0, 0, 0, 0, id="one-key-per-partition"),
        pytest.param(placed(4) + placed(0, 2, partition=1), 3, 0, 0, 0, id="order-holds-per-partition"),
        pytest.param(
            [*placed(0, 1, 2, 3, 4, 5), ("out", 0, ("out", "x", "y"))], 0, 0, 1, 0, id="one-not-asked-for"
        ),
    ],
)
def test_a_tally_counts_lost_duplicated_unexpected_and_late_records(
    delivered: list[Placed], lost: int, duplicated: int, unexpected: int, late: int
) -> None:
    tally = Tally.of(WANT, delivered, POSITION)
    assert (tally.lost, tally.duplicated, tally.unexpected, tally.reordered) == (
        lost,
        duplicated,
        unexpected,
        late,
    )
    assert tally.expected == 6 and tally.delivered == len(delivered)


def test_a_run_is_complete_at_least_once_with_duplicates_but_exactly_once_only_without() -> None:
    twice = Tally.of(WANT, placed(0, 1, 2, 3, 4, 5, 5), POSITION)
    assert twice.complete(exactly=False) and not twice.complete(exactly=True)
    short = Tally.of(WANT, placed(0, 1, 2, 3, 4), POSITION)
    assert not short.complete(exactly=False)


def test_every_input_record_is_expected_once_in_the_output_or_the_dead_letters() -> None:
    plan = example_plan("llm-preprocessor", unique())
    values, broken = llm_requests(300)
    want = expected(plan, values)
    assert sum(want.values()) == 300
    dead = [v for t, _, v in want if t == plan.dead_letter.topic]
    assert len(dead) == len(broken) == 3
    where = positions(plan, values, [f"k{i % 3}" for i in range(300)])
    assert sorted(i for _, i in where.values()) == list(range(300))
    first = next(t for t in where if json.loads(t[2]).get("id") == "r4")
    assert where[first] == ("k1", 4)
    assert reordered([(first[0], 0, first)], where) == 0
