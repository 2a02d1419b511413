"""Leader election on a coordination.k8s.io/v1 Lease, so two controller replicas never both act.

The rules are client-go's `leaderelection` with a Lease lock: a replica takes the lease when it is missing,
when its holder is empty (released), or when `renewTime + leaseDurationSeconds` has passed; the holder renews
it every `retry_seconds`; a holder that has not renewed for `renew_seconds` stops acting even before anyone
takes the lease over, so that it stops before a peer may start (`renew_seconds < lease_seconds`). Writes carry
the `resourceVersion` they read: of two replicas racing for one lease, the API server lets exactly one win
(409 for the other).

`claim` is the pure decision (plain values in, the record to write or nothing out); `LeaderElector` is the
shell that reads and writes the Lease and runs the loop in a thread. Expiry compares the holder's `renewTime`
with our clock, so it assumes the replicas' clocks agree to well under `lease_seconds - renew_seconds`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kernel.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

Action = Literal["create", "acquire", "renew", "wait"]


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a Lease's spec that election reads and writes."""

    holder: str = ""
    duration_seconds: int = 15
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0

    def expires_at(self) -> datetime | None:
        return None if self.renew_time is None else self.renew_time + timedelta(seconds=self.duration_seconds)


@dataclass(frozen=True)
class Claim:
    """What to do about the lease: write `record` (create, acquire, renew) or wait (someone else holds it)."""

    action: Action
    record: LeaseRecord | None
    why: str


def claim(current: LeaseRecord | None, identity: str, now: datetime, lease_seconds: int) -> Claim:
    """Should `identity` take or keep the lease at `now`? Pure: the record to write, or why not."""
    if current is None:
        return Claim(
            "create", LeaseRecord(identity, lease_seconds, now, now, 0), f"no lease: {identity} creates it"
        )
    if current.holder == identity:
        renewed = replace(current, duration_seconds=lease_seconds, renew_time=now)
        return Claim("renew", renewed, f"{identity} holds the lease: renewing")
    expires = current.expires_at()
    if current.holder and expires is not None and now < expires:
        left = (expires - now).total_seconds()
        return Claim("wait", None, f"{current.holder} holds the lease for {left:.1f} s more")
    why = (
        "the lease was released"
        if not current.holder
        else f"{current.holder}'s lease expired {(now - expires).total_seconds():.1f} s ago"
        if expires is not None
        else f"{current.holder}'s lease has no renew time"
    )
    # a transition is a change of holder; taking a released lease back counts too (client-go does the same)
    taken = LeaseRecord(identity, lease_seconds, now, now, current.transitions + 1)
    return Claim("acquire", taken, f"{why}: {identity} takes it")


def released(current: LeaseRecord, now: datetime) -> LeaseRecord:
    """The record a leader writes when it steps down: no holder, a 1 s lease, so a peer takes over at once."""
    return replace(current, holder="", duration_seconds=1, renew_time=now, acquire_time=now)


def _micro(t: datetime | None) -> str | None:
    if t is None:
        return None
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _from_spec(spec: Any) -> LeaseRecord:
    return LeaseRecord(
        holder=spec.holder_identity or "",
        duration_seconds=int(spec.lease_duration_seconds or 0),
        acquire_time=_parse_time(spec.acquire_time),
        renew_time=_parse_time(spec.renew_time),
        transitions=int(spec.lease_transitions or 0),
    )


def _to_spec(record: LeaseRecord) -> dict[str, Any]:
    return {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.duration_seconds,
        "acquireTime": _micro(record.acquire_time),
        "renewTime": _micro(record.renew_time),
        "leaseTransitions": record.transitions,
    }


class LeaderElector:
    """Holds (or waits for) one Lease. `try_acquire_or_renew` is one step; `run` loops it in a thread."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 15,
        renew_seconds: float = 10,
        retry_seconds: float = 2,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not renew_seconds < lease_seconds:
            raise ValueError(
                f"renew_seconds ({renew_seconds}) must be less than lease_seconds ({lease_seconds}): "
                "a leader must stop acting before a peer may take the lease"
            )
        self._api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._renewed_at: datetime | None = None  # our last successful write as holder
        self._lock = threading.Lock()

    @property
    def is_leader(self) -> bool:
        """We hold the lease and renewed it less than `renew_seconds` ago."""
        renewed = self._renewed_at
        if renewed is None:
            return False
        return (self._clock.now() - renewed).total_seconds() < self.renew_seconds

    def try_acquire_or_renew(self, now: datetime | None = None) -> bool:
        """Read the lease, decide, write; True when we lead afterwards. API errors count as 'not renewed'."""
        now = now or self._clock.now()
        with self._lock:
            try:
                lease = self._read()
                current = None if lease is None else _from_spec(lease.spec)
                c = claim(current, self.identity, now, self.lease_seconds)
                if c.action == "wait":
                    self._renewed_at = None
                    return False
                assert c.record is not None
                if c.action == "create":
                    self._create(c.record)
                else:
                    self._replace(lease, c.record)
                if c.action == "acquire":
                    log.info("lease %s/%s: %s", self.namespace, self.name, c.why)
                self._renewed_at = now
                return True
            except ApiException as e:
                if e.status == 409:  # a peer wrote first: its write stands, ours is void
                    log.debug("lease %s/%s: lost a race to a peer (409)", self.namespace, self.name)
                else:
                    log.warning("lease %s/%s: %s %s", self.namespace, self.name, e.status, e.reason)
            except Exception:
                log.warning(
                    "lease %s/%s: cannot reach the API server", self.namespace, self.name, exc_info=True
                )
            # not renewed: we still lead until renew_seconds after the last renewal (is_leader says so)
            return self.is_leader

    def release(self) -> bool:
        """Give the lease up (holder empty, 1 s lease) if we hold it; True when it was released."""
        with self._lock:
            self._renewed_at = None
            try:
                lease = self._read()
                if lease is None or (lease.spec.holder_identity or "") != self.identity:
                    return False
                self._replace(lease, released(_from_spec(lease.spec), self._clock.now()))
                log.info("lease %s/%s: %s released it", self.namespace, self.name, self.identity)
                return True
            except Exception:
                log.warning("lease %s/%s: release failed", self.namespace, self.name, exc_info=True)
                return False

    def run(
        self,
        on_start: Callable[[], None],
        on_stop: Callable[[], None],
        stop_event: threading.Event,
    ) -> None:
        """Loop until `stop_event` is set: `on_start()` when we become leader, `on_stop()` when we stop (lost
        the lease, could not renew in time, or asked to stop, when the lease is released after `on_stop`
        returns). The callbacks run on this thread and must return quickly: the lease is not renewed while
        they run."""
        leading = False
        try:
            while not stop_event.is_set():
                now_leading = self.try_acquire_or_renew()
                if now_leading and not leading:
                    leading = True
                    on_start()
                elif leading and not now_leading:
                    leading = False
                    on_stop()
                stop_event.wait(self.retry_seconds)
        finally:
            if leading:
                on_stop()  # stop acting first, then let a peer in: never two acting at once
                self.release()

    def start(
        self, on_start: Callable[[], None], on_stop: Callable[[], None], stop_event: threading.Event
    ) -> threading.Thread:
        """`run` on a daemon thread named after the lease."""
        thread = threading.Thread(
            target=self.run,
            args=(on_start, on_stop, stop_event),
            name=f"leader-{self.namespace}-{self.name}",
            daemon=True,
        )
        thread.start()
        return thread

    def _read(self) -> Any:
        try:
            return self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _create(self, record: LeaseRecord) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": _to_spec(record),
        }
        self._api.create_namespaced_lease(self.namespace, body)

    def _replace(self, lease: Any, record: LeaseRecord) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": lease.metadata.resource_version,  # optimistic concurrency: 409 if changed
            },
            "spec": _to_spec(record),
        }
        self._api.replace_namespaced_lease(self.name, self.namespace, body)
