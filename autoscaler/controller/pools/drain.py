"""Cordoning and draining nodes through the Kubernetes API, the way `kubectl drain` does it.

Cordon and uncordon patch `spec.unschedulable`. Draining a node evicts every pod bound to it (policy/v1
Eviction, so PodDisruptionBudgets are respected) except DaemonSet-owned pods (their controller would put
them straight back), mirror pods (the kubelet owns them) and pods that already finished; then it waits, up
to a deadline, for the evicted pods to be gone. An eviction refused with 429 — a PodDisruptionBudget that
allows no disruption now — is not retried here: the node is reported blocked and stays cordoned, and the
controller tries again on a later cycle.

`api_error` turns the client's exceptions into `kernel.errors` for the node-pool providers: API errors
through `autoscaler.controller.kube.api.api_error`, transport failures as temporary.

This module may not decide which nodes go; it only carries out a removal it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from autoscaler.controller.kube import api as kube
from autoscaler.controller.ports import PoolChangeResult
from kernel.clock import SYSTEM_CLOCK, Clock, Deadline
from kernel.errors import PermanentError, TemporaryError

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
MERGE_PATCH = "application/merge-patch+json"


def api_error(exc: Exception, what: str) -> Exception:
    """`exc` from the Kubernetes client as a kernel error, the message starting with `what` (the action and
    the object): API errors as `kube.api.api_error` sorts them (conflicts, throttling, 5xx
    temporary; refusals permanent), transport failures (timeouts, resets) temporary."""
    if isinstance(exc, ApiException):
        return kube.api_error(exc, what)
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return TemporaryError(f"{what}: {type(exc).__name__}: {exc}")
    return PermanentError(f"{what}: {type(exc).__name__}: {exc}")


def kube_call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` with the client's exceptions turned into kernel errors naming `what`."""
    try:
        return fn(*args, **kwargs)
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise api_error(exc, what) from exc


@dataclass(frozen=True)
class DrainResult:
    """What draining one node did."""

    node: str
    evicted: tuple[str, ...] = ()  # "namespace/name" of pods evicted (gone by the deadline or not)
    blocked: tuple[str, ...] = ()  # pods a PodDisruptionBudget kept: "namespace/name: why"
    remaining: tuple[str, ...] = ()  # evicted pods still present at the deadline

    @property
    def drained(self) -> bool:
        return not self.blocked and not self.remaining

    def why_not(self) -> str:
        if self.blocked:
            return f"{self.node}: eviction refused for {', '.join(self.blocked)}"
        if self.remaining:
            return f"{self.node}: {', '.join(self.remaining)} still terminating at the drain deadline"
        return ""


def _key(pod: client.V1Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def evictable(pod: client.V1Pod) -> bool:
    """Whether draining must evict `pod`: not DaemonSet-owned, not a mirror pod, not finished."""
    meta = pod.metadata
    if MIRROR_ANNOTATION in (meta.annotations or {}):
        return False
    if any(ref.kind == "DaemonSet" for ref in meta.owner_references or ()):
        return False
    return (pod.status.phase if pod.status else None) not in ("Succeeded", "Failed")


class NodeDrainer:
    """Cordons, uncordons and drains nodes; `timeout` bounds the wait for one node's pods to go."""

    def __init__(
        self,
        api: client.ApiClient,
        clock: Clock = SYSTEM_CLOCK,
        timeout: float = 60.0,
        poll: float = 0.2,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._clock = clock
        self._timeout = timeout
        self._poll = poll

    def cordon(self, name: str, cordoned: bool = True) -> None:
        """Set the node's `spec.unschedulable`; a missing node is a `PermanentError`."""
        action = "cordon" if cordoned else "uncordon"
        kube_call(
            f"{action} node {name}",
            self._core.patch_node,
            name,
            {"spec": {"unschedulable": cordoned or None}},
            _content_type=MERGE_PATCH,
        )

    def pods_on(self, name: str) -> list[client.V1Pod]:
        """Every pod bound to the node."""
        listed = kube_call(
            f"list pods on node {name}",
            self._core.list_pod_for_all_namespaces,
            field_selector=f"spec.nodeName={name}",
        )
        return list(listed.items)

    def drain(self, name: str) -> DrainResult:
        """Evict the node's evictable pods, then wait for them to be gone. Cordon first (`cordon`): a pod's
        controller would otherwise put its replacement right back on the node."""
        pods = [p for p in self.pods_on(name) if evictable(p)]
        evicted: list[client.V1Pod] = []
        blocked: list[str] = []
        for pod in pods:
            if pod.metadata.deletion_timestamp is not None:
                evicted.append(pod)  # already going: only wait for it
                continue
            refusal = self._evict(pod)
            if refusal is None:
                evicted.append(pod)
            else:
                blocked.append(f"{_key(pod)}: {refusal}")
        remaining = self.wait_gone(name, evicted, self._timeout)
        return DrainResult(name, tuple(_key(p) for p in evicted), tuple(blocked), remaining)

    def _evict(self, pod: client.V1Pod) -> str | None:
        """Evict `pod`; the refusal's message if a PodDisruptionBudget says no (429), None otherwise."""
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.metadata.name, namespace=pod.metadata.namespace)
        )
        try:
            self._core.create_namespaced_pod_eviction(pod.metadata.name, pod.metadata.namespace, body)
        except ApiException as exc:
            if exc.status == 404:
                return None  # already gone
            if exc.status == 429:  # the API server's message names the PodDisruptionBudget's verdict
                return str(api_error(exc, "eviction refused"))
            raise api_error(exc, f"evict pod {_key(pod)}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise api_error(exc, f"evict pod {_key(pod)}") from exc
        return None

    def wait_gone(self, node: str, pods: Iterable[client.V1Pod], timeout: float) -> tuple[str, ...]:
        """Wait until none of `pods` (by UID) is bound to `node`; those still there at the deadline."""
        waiting = {p.metadata.uid: _key(p) for p in pods}
        deadline = Deadline(timeout, self._clock)
        while waiting:
            present = {p.metadata.uid for p in self.pods_on(node)}
            waiting = {uid: key for uid, key in waiting.items() if uid in present}
            if not waiting or deadline.expired():
                break
            self._clock.sleep(self._poll)
        return tuple(sorted(waiting.values()))

    def delete(self, name: str) -> None:
        """Delete the node; one already gone is fine."""
        try:
            self._core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise api_error(exc, f"delete node {name}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise api_error(exc, f"delete node {name}") from exc

    def drain_nodes(self, names: Sequence[str]) -> tuple[list[str], list[DrainResult]]:
        """Cordon and drain each node: (drained node names, results of the nodes left blocked)."""
        drained: list[str] = []
        refused: list[DrainResult] = []
        for name in names:
            self.cordon(name)
            result = self.drain(name)
            if result.drained:
                drained.append(name)
            else:
                refused.append(result)
        return drained, refused


def cordon_members(
    drainer: NodeDrainer, pool: str, members: Sequence[str], strangers: Sequence[str], cordoned: bool
) -> PoolChangeResult:
    """Cordon (or uncordon) the pool's `members`; `strangers` (named, not in the pool) are only reported."""
    for name in members:
        drainer.cordon(name, cordoned)
    done = tuple(members)
    reasons = [f"{'cordoned' if cordoned else 'uncordoned'} {', '.join(done)}"] if done else []
    if strangers:
        reasons.append(f"not in pool {pool}: {', '.join(strangers)}")
    return PoolChangeResult(
        pool,
        cordoned=done if cordoned else (),
        uncordoned=() if cordoned else done,
        reason="; ".join(reasons),
    )
