"""The pod deletion costs that make a scale-down empty the emptiest nodes: pods with their nodes → costs."""

from __future__ import annotations

import pytest

from autoscaler.core.deletion_cost import PlacedPod, deletion_costs, parse_cost


@pytest.mark.parametrize(
    ("pods", "written"),
    [
        pytest.param(
            [PlacedPod("p0", "a"), PlacedPod("p1", "a"), PlacedPod("p2", "a"), PlacedPod("p3", "b")],
            {"p0": 3, "p1": 3, "p2": 3, "p3": 1},
            id="each-pod-costs-the-pods-on-its-node",
        ),
        pytest.param(
            [PlacedPod("p0", "a", 2), PlacedPod("p1", "a", 2), PlacedPod("p2", "b", 2)],
            {"p2": 1},
            id="only-changed-costs-are-written",
        ),
        pytest.param(
            [PlacedPod("p0", "a", 2), PlacedPod("p1", "a", 2), PlacedPod("p2", "b", 1)],
            {},
            id="nothing-when-every-cost-is-right",
        ),
        pytest.param(
            [PlacedPod("p0", "a"), PlacedPod("p1", None), PlacedPod("p2", None, 7)],
            {"p0": 1},
            id="unbound-pods-are-left-alone-and-do-not-count",
        ),
        pytest.param([], {}, id="no-pods"),
    ],
)
def test_a_bound_pods_cost_is_the_number_of_pods_on_its_node_written_only_when_it_changes(
    pods: list[PlacedPod], written: dict[str, int]
) -> None:
    assert deletion_costs(pods) == written


@pytest.mark.parametrize(
    ("value", "cost"),
    [
        pytest.param("3", 3, id="decimal"),
        pytest.param("-5", -5, id="negative"),
        pytest.param("2147483647", 2**31 - 1, id="int32-max"),
        pytest.param("2147483648", None, id="over-int32"),
        pytest.param("three", None, id="not-a-number"),
        pytest.param("", None, id="empty"),
    ],
)
def test_an_annotation_value_is_a_cost_only_when_it_is_an_int32(value: str, cost: int | None) -> None:
    assert parse_cost(value) == cost
