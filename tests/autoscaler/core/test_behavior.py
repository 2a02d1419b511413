"""HPA v2 behavior, pinned to ../shared/reference/autoscaling.md §1.2, §1.7 and §1.8."""

import pytest

from autoscaler.api.policy import Behavior
from autoscaler.core.behavior import (
    DEFAULT_DOWN,
    DEFAULT_UP,
    History,
    Policy,
    normalize,
    normalize_legacy,
    rate_limit,
    resolve,
)

DEFAULTS = resolve(None)


def test_the_api_defaults_are_four_pods_or_double_per_15_s_up_and_five_minutes_down() -> None:
    assert DEFAULT_UP.window_s == 0
    assert DEFAULT_UP.select == "Max"
    assert set(DEFAULT_UP.policies) == {Policy("Pods", 4, 15), Policy("Percent", 100, 15)}
    assert DEFAULTS.down.window_s == 300
    assert DEFAULT_DOWN.policies == (Policy("Percent", 100, 15),)
    assert DEFAULTS.up.tolerance == DEFAULTS.down.tolerance == 0.1


@pytest.mark.parametrize(
    ("current", "wanted", "desired", "rule"),
    [
        (1, 10, 5, "ScaleUpLimit"),  # +4 pods beats +100 %
        (2, 10, 6, "ScaleUpLimit"),
        (10, 50, 20, "ScaleUpLimit"),  # +100 % beats +4 pods
        (10, 15, 15, "DesiredWithinRange"),
        (10, 200, 20, "ScaleUpLimit"),
        (30, 200, 40, "TooManyReplicas"),
    ],
    ids=["1 to 5", "2 to 6", "10 to 20", "within", "capped by rate", "capped by max"],
)
def test_one_sync_scales_up_by_at_most_max_of_4_pods_and_100_percent(
    current: int, wanted: int, desired: int, rule: str
) -> None:
    assert rate_limit(DEFAULTS, History(), wanted, current, 1, 40, 1000.0) == (desired, rule)


def test_scale_up_events_in_the_last_period_count_against_the_limit() -> None:
    h = History(up_events=((995.0, 5),))  # 5 → 10 five seconds ago: the period started at 5
    assert rate_limit(DEFAULTS, h, 50, 10, 1, 100, 1000.0) == (10, "ScaleUpLimit")
    assert rate_limit(DEFAULTS, h, 50, 10, 1, 100, 1011.0) == (20, "ScaleUpLimit")  # outside the 15 s period


def test_scale_down_waits_for_five_minutes_of_lower_recommendations_then_drops_at_once() -> None:
    h = History()
    current = 10
    for t in range(0, 300, 15):
        n = (
            normalize(DEFAULTS, h, 2, current, 1, 20, float(t))
            if t
            else normalize(DEFAULTS, h, 10, 10, 1, 20, 0.0)
        )
        h = n.history
        assert n.desired == 10, t
    n = normalize(DEFAULTS, h, 2, current, 1, 20, 300.0)
    assert n.desired == 2  # −100 % per 15 s: down to the recommendation in one step
    assert n.rule == "DesiredWithinRange"


def test_a_recommendation_exactly_one_window_old_no_longer_holds_replicas_up() -> None:
    h = normalize(DEFAULTS, History(), 10, 10, 1, 20, 0.0).history
    assert normalize(DEFAULTS, h, 2, 10, 1, 20, 299.0).desired == 10
    assert normalize(DEFAULTS, h, 2, 10, 1, 20, 300.0).desired == 2


@pytest.mark.parametrize(
    ("select", "current", "wanted", "desired"),
    [("Max", 10, 100, 20), ("Min", 10, 100, 14), ("Disabled", 10, 100, 10)],
    ids=["max change", "min change", "disabled"],
)
def test_select_policy_picks_the_largest_the_smallest_or_no_change(
    select: str, current: int, wanted: int, desired: int
) -> None:
    b = resolve(Behavior.model_validate({"scaleUp": {"selectPolicy": select}}))
    assert rate_limit(b, History(), wanted, current, 1, 200, 0.0)[0] == desired


def test_scale_down_percent_truncates_and_pods_policies_subtract() -> None:
    b = resolve(
        Behavior.model_validate(
            {
                "scaleDown": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Percent", "value": 30, "periodSeconds": 60}],
                }
            }
        )
    )
    assert rate_limit(b, History(), 1, 9, 1, 20, 0.0) == (6, "ScaleDownLimit")  # int(9 × 0.7) = 6
    pods = resolve(
        Behavior.model_validate(
            {
                "scaleDown": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
                }
            }
        )
    )
    assert rate_limit(pods, History(), 1, 9, 1, 20, 0.0) == (7, "ScaleDownLimit")
    assert rate_limit(pods, History(), 1, 9, 8, 20, 0.0) == (8, "TooFewReplicas")


def test_the_scale_down_window_defaults_to_the_controller_flag_when_only_policies_are_set() -> None:
    b = resolve(
        Behavior.model_validate(
            {"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}
        )
    )
    assert b.down.window_s == 300


def test_without_behavior_the_legacy_path_caps_a_sync_at_twice_or_four() -> None:
    assert normalize_legacy(History(), 100, 1, 1, 200, 0.0).desired == 4
    assert normalize_legacy(History(), 100, 10, 1, 200, 0.0).desired == 20
    n = normalize_legacy(History(), 100, 10, 1, 15, 0.0)
    assert (n.desired, n.rule) == (15, "TooManyReplicas")


def test_without_behavior_the_legacy_path_keeps_the_max_of_five_minutes() -> None:
    h = normalize_legacy(History(), 8, 8, 1, 20, 0.0).history
    assert normalize_legacy(h, 2, 8, 1, 20, 299.0).desired == 8
    assert normalize_legacy(h, 2, 8, 1, 20, 301.0).desired == 2
