"""The leader-election decision (`claim`, `released`) on plain lease values, and the elector's step on a fake
clock where no API server is needed (the constructor's guard)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kernel.leader import Claim, LeaderElector, LeaseRecord, claim, released

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def held_by(holder: str, renewed_ago: float, duration: int = 15, transitions: int = 3) -> LeaseRecord:
    return LeaseRecord(holder, duration, ago(600), ago(renewed_ago), transitions)


@pytest.mark.parametrize(
    ("current", "action", "holder", "transitions"),
    [
        pytest.param(None, "create", "me", 0, id="no-lease-is-created-with-us-as-holder"),
        pytest.param(held_by("me", 5), "renew", "me", 3, id="our-own-lease-is-renewed-without-a-transition"),
        pytest.param(held_by("me", 60), "renew", "me", 3, id="our-own-expired-lease-is-still-ours-to-renew"),
        pytest.param(held_by("peer", 5), "wait", None, None, id="a-peer-with-a-fresh-lease-keeps-it"),
        pytest.param(held_by("peer", 14.9), "wait", None, None, id="a-peer-just-before-expiry-keeps-it"),
        pytest.param(held_by("peer", 15), "acquire", "me", 4, id="a-lease-expired-exactly-now-is-taken"),
        pytest.param(held_by("peer", 40), "acquire", "me", 4, id="an-expired-peer-lease-is-taken-over"),
        pytest.param(held_by("", 0, duration=1), "acquire", "me", 4, id="a-released-lease-is-taken-at-once"),
        pytest.param(
            LeaseRecord("peer", 15, None, None, 0), "acquire", "me", 1, id="a-lease-never-renewed-is-taken"
        ),
    ],
)
def test_claim_decides_from_the_holder_and_the_renew_time(
    current: LeaseRecord | None, action: str, holder: str | None, transitions: int | None
) -> None:
    c = claim(current, "me", NOW, 15)
    assert c.action == action, c.why
    if holder is None:
        assert c.record is None
    else:
        assert c.record is not None
        assert c.record.holder == holder
        assert c.record.renew_time == NOW
        assert c.record.duration_seconds == 15
        assert c.record.transitions == transitions


def test_a_takeover_starts_a_new_term_and_a_renewal_keeps_the_acquire_time() -> None:
    taken = claim(held_by("peer", 40), "me", NOW, 15).record
    assert taken is not None and taken.acquire_time == NOW
    kept = claim(taken, "me", NOW + timedelta(seconds=10), 15).record
    assert kept is not None
    assert kept.acquire_time == NOW
    assert kept.renew_time == NOW + timedelta(seconds=10)


def test_waiting_says_who_holds_the_lease_and_for_how_long() -> None:
    c = claim(held_by("controller-0", 5), "controller-1", NOW, 15)
    assert c == Claim("wait", None, "controller-0 holds the lease for 10.0 s more")


def test_a_released_lease_has_no_holder_and_a_one_second_term_but_keeps_the_transition_count() -> None:
    r = released(held_by("me", 2, transitions=7), NOW)
    assert r.holder == ""
    assert r.duration_seconds == 1
    assert r.transitions == 7
    assert claim(r, "peer", NOW, 15).action == "acquire"


def test_the_lease_expires_renew_time_plus_duration() -> None:
    assert held_by("peer", 5, duration=15).expires_at() == NOW + timedelta(seconds=10)
    assert LeaseRecord("peer").expires_at() is None


def test_an_elector_whose_renew_deadline_is_not_inside_the_lease_is_refused() -> None:
    with pytest.raises(ValueError, match="renew_seconds"):
        LeaderElector(None, "ns", "lease", "me", lease_seconds=10, renew_seconds=10)
