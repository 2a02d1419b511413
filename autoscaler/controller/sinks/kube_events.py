"""Scaling events as Kubernetes Events on the target workload (events.k8s.io/v1).

events.k8s.io/v1 rather than core/v1 because it is the API current recorders write (client-go's
`tools/events`): `reportingController` and `reportingInstance` are first-class fields (`events watch` selects
on them), `regarding`/`related` name the target and the ScalingPolicy, and repeats are an `EventSeries`
(`series.count`, `series.lastObservedTime`) instead of the core API's deprecated count fields. Both APIs share
one storage, so `kubectl describe deployment` and `kubectl get events` show these events too.

The Event carries the decision's reason (the rule, with the HPA's "the recommendation was applied" rules
named ScaleUp/ScaleDown/NodePoolChange), the decision's sentence with numbers as `note`, type Warning for
Fallback, MetricsUnavailable, PartialMetrics and drains a PodDisruptionBudget blocked, and the JSON record in
the `tidescale.io/record` annotation so `events watch` prints the same thing from Kubernetes as from Kafka.
An event that reports a failure to act (`ScalingEvent.failure`: the target is gone, the /scale patch was
refused or kept failing) or a misconfiguration (NodePoolNotFound, MetricsUnavailable, PodsPending) is a
Warning with the failure's reason and sentence; its end (`ScalingEvent.recovery`: TargetFound, NodePoolFound,
MetricsAvailable, PodsScheduled) a Normal one. Misconfigurations and a missing target are told on the
ScalingPolicy (`regarding`; the target is `related`): the target may not exist, and the policy is where the
fix goes.

A repeat (same target, reason, type and note within 10 minutes of the last occurrence) does not create a new
object: the first repeat patches `series` at once, later ones at most every `series_patch_seconds` (the
recorder's way of keeping a hot loop from flooding the API server); `flush()` writes any pending count.
Failures are logged and counted in `errors`, never raised.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from autoscaler.controller.ports import ScalingEvent
from kernel.clock import SYSTEM_CLOCK, Clock
from kernel.errors import TemporaryError
from kernel.kube_events import AGGREGATE_SECONDS, REQUEST_TIMEOUT, EventRecorder, ObjectRef, micro_time

log = logging.getLogger(__name__)

REPORTING_CONTROLLER = "tidescale.io/controller"
RECORD_ANNOTATION = "tidescale.io/record"
POLICY_API_VERSION = "tidescale.io/v1alpha1"

# the HPA's names for "the recommendation was applied unchanged": the event says which way instead
_APPLIED = frozenset({"DesiredWithinRange", "ReadyForNewScale"})
WARNING_RULES = frozenset({"Fallback", "MetricsUnavailable", "PartialMetrics", "DrainBlocked"})


def event_reason(rule: str, current: int, desired: int, pools_changed: bool = False) -> str:
    """The Event's CamelCase reason: the rule that limited the decision, or the direction when none did."""
    if rule not in _APPLIED:
        return rule
    if desired > current:
        return "ScaleUp"
    if desired < current:
        return "ScaleDown"
    return "NodePoolChange" if pools_changed else "Steady"


def blocked_nodes(record: Mapping[str, Any], extra: Mapping[str, str]) -> list[str]:
    """Nodes whose drain a PodDisruptionBudget refused, wherever the shell reported them."""
    names: list[str] = []
    if extra.get("blocked"):
        names.extend(n for n in extra["blocked"].split(",") if n)
    for key in ("blocked",):
        value = record.get(key)
        if isinstance(value, list):
            names.extend(str(n) for n in value)
    for change in record.get("nodePools") or []:
        if isinstance(change, Mapping) and isinstance(change.get("blocked"), list):
            names.extend(str(n) for n in change["blocked"])
    return names


def event_type(rule: str, blocked: bool) -> str:
    return "Warning" if rule in WARNING_RULES or blocked else "Normal"


def reason_of(record: Mapping[str, Any]) -> str:
    """`event_reason` from a JSON record (`autoscaler.core.events.record`), for readers of the Kafka topic."""
    replicas = record.get("replicas") or {}
    return event_reason(
        str(record.get("rule", "")),
        int(replicas.get("current", 0)),
        int(replicas.get("desired", 0)),
        bool(record.get("nodePools")),
    )


class KubernetesEventSink:
    """An `EventSink` writing events.k8s.io/v1 Events on each event's target (`ScalingEvent.involved`),
    through the kernel's `EventRecorder` (series aggregation, counted failures)."""

    def __init__(
        self,
        api_client: Any,
        component: str = "tidescale-controller",
        clock: Clock = SYSTEM_CLOCK,
        *,
        instance: str | None = None,
        series_patch_seconds: float = 30.0,
        cache_size: int = 4096,
    ) -> None:
        self._apps_api = client.AppsV1Api(api_client)
        self._custom_api = client.CustomObjectsApi(api_client)
        self._uids: dict[tuple[str, str, str], tuple[str, datetime]] = {}
        self.component = component
        self._clock = clock
        self._cache_size = cache_size
        self._recorder = EventRecorder(
            api_client,
            REPORTING_CONTROLLER,
            clock,
            instance=instance or f"{component}-{platform.node()}",
            series_patch_seconds=series_patch_seconds,
            cache_size=cache_size,
        )
        self.instance = self._recorder.instance

    @property
    def created(self) -> int:
        return self._recorder.created

    @property
    def patched(self) -> int:
        return self._recorder.patched

    @property
    def errors(self) -> int:
        return self._recorder.errors

    def emit(self, event: ScalingEvent) -> None:
        d = event.decision
        api_version, kind, namespace, name = event.involved
        if not (kind and name):
            kind, _, name = d.target.partition("/")
            namespace = namespace or d.policy.partition("/")[0]
            api_version = api_version or "apps/v1"
        record = {**event.record, "acted": event.acted}
        blocked = blocked_nodes(event.record, event.extra)
        note = d.reason
        if blocked:
            note = f"{note}; drain blocked by a PodDisruptionBudget on {', '.join(blocked)}"
        reason = event_reason(d.rule, d.current, d.desired, bool(d.node_pools))
        type_ = event_type(d.rule, bool(blocked))
        action = _action(d.current, d.desired, bool(d.node_pools))
        if event.failure is not None:
            reason, note, type_ = event.failure.reason, event.failure.message, "Warning"
        if event.recovery is not None:
            reason, note, type_, action = event.recovery.reason, event.recovery.message, "Normal", "Recover"
        uid = event.extra.get("uid") or self._uid(kind, namespace, name, self._clock.now())
        policy_ns, _, policy_name = d.policy.partition("/")
        related: ObjectRef | None = ObjectRef(POLICY_API_VERSION, "ScalingPolicy", policy_ns, policy_name)
        if kind == "ScalingPolicy":  # a misconfiguration is told on the policy; the target is the related one
            target_kind, _, target_name = d.target.partition("/")
            related = ObjectRef("apps/v1", target_kind, policy_ns, target_name) if target_name else None
        self._recorder.record(
            ObjectRef(api_version, kind, namespace, name, uid),
            reason,
            note,
            type_=type_,
            action=action,
            related=related,
            annotations={RECORD_ANNOTATION: json.dumps(record, ensure_ascii=False, separators=(",", ":"))},
        )

    def flush(self) -> None:
        """Write the series counts that repeats have raised since the last write."""
        self._recorder.flush()

    def _uid(self, kind: str, namespace: str, name: str, now: datetime) -> str:
        """The target's uid (kubectl describe finds events by it), looked up once per 10 minutes; "" when the
        kind is not an apps/v1 workload or the lookup fails."""
        read = _READERS.get(kind)
        if read is None and kind != "ScalingPolicy":
            return ""
        hit = self._uids.get((kind, namespace, name))
        if hit is not None and (now - hit[1]).total_seconds() < AGGREGATE_SECONDS:
            return hit[0]
        try:
            if read is None:  # the ScalingPolicy (`kubectl describe scalingpolicy` finds its events by uid)
                group, _, version = POLICY_API_VERSION.partition("/")
                obj = self._custom_api.get_namespaced_custom_object(
                    group, version, namespace, "scalingpolicies", name, _request_timeout=REQUEST_TIMEOUT
                )
                uid = str((obj.get("metadata") or {}).get("uid") or "")
            else:
                uid = str(
                    getattr(self._apps_api, read)(
                        name, namespace, _request_timeout=REQUEST_TIMEOUT
                    ).metadata.uid
                    or ""
                )
        except ApiException:
            return ""
        if len(self._uids) > self._cache_size:
            self._uids.clear()
        self._uids[(kind, namespace, name)] = (uid, now)
        return uid


_READERS = {
    "Deployment": "read_namespaced_deployment",
    "StatefulSet": "read_namespaced_stateful_set",
    "ReplicaSet": "read_namespaced_replica_set",
}


def _action(current: int, desired: int, pools: bool) -> str:
    if desired != current:
        return "Scale"
    return "ScaleNodePool" if pools else "Hold"


def as_record(event: Any) -> dict[str, Any]:
    """An events.k8s.io/v1 Event written by `KubernetesEventSink` as the JSON record it carries, with the
    Event's `eventType`, `eventReason` and occurrence `count`; built from the Event's fields when the record
    annotation is missing."""
    annotations = (event.metadata.annotations or {}) if event.metadata else {}
    record: dict[str, Any]
    try:
        record = dict(json.loads(annotations[RECORD_ANNOTATION]))
    except (KeyError, ValueError, TypeError):
        regarding = event.regarding
        related = event.related
        seen = event.series.last_observed_time if event.series else event.event_time
        record = {
            "kind": "ScalingDecision",
            "time": micro_time(seen) if isinstance(seen, datetime) else str(seen or ""),
            "policy": f"{related.namespace}/{related.name}" if related else "",
            "target": f"{regarding.kind}/{regarding.name}" if regarding else "",
            "reason": event.note or "",
            "rule": event.reason or "",
        }
    record["eventReason"] = event.reason or ""
    record["eventType"] = event.type or ""
    record["count"] = int(event.series.count) if event.series else 1
    return record


def watch(
    api_client: Any,
    namespace: str | None = None,
    *,
    from_beginning: bool = False,
    on_ready: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    poll_seconds: int = 1,
) -> Iterator[dict[str, Any]]:
    """The Events this controller reports (`reportingController` tidescale.io/controller) as records, live:
    each new Event, and each Event again when its series count grows. With `from_beginning`, the Events that
    exist already come first, oldest first. Raises `TemporaryError` when the API server cannot be read."""
    api = client.EventsV1Api(api_client)
    selector = f"reportingController={REPORTING_CONTROLLER}"

    def listing() -> Any:
        if namespace:
            return api.list_namespaced_event(namespace, field_selector=selector)
        return api.list_event_for_all_namespaces(field_selector=selector)

    def fresh(item: Any) -> bool:
        key = (item.metadata.namespace, item.metadata.name)
        count = int(item.series.count) if item.series else 1
        if seen.get(key, 0) >= count:
            return False
        seen[key] = count
        return True

    def when(item: Any) -> datetime:
        t = (item.series.last_observed_time if item.series else None) or item.event_time
        return t if isinstance(t, datetime) else datetime.min.replace(tzinfo=UTC)

    seen: dict[tuple[str, str], int] = {}
    try:
        listed = listing()
        for item in sorted(listed.items, key=when):
            if fresh(item) and from_beginning:
                yield as_record(item)
        version = listed.metadata.resource_version
        if on_ready is not None:
            on_ready()
        w = k8s_watch.Watch()
        while not should_stop():
            try:
                stream = w.stream(
                    api.list_namespaced_event if namespace else api.list_event_for_all_namespaces,
                    *((namespace,) if namespace else ()),
                    field_selector=selector,
                    resource_version=version,
                    timeout_seconds=poll_seconds,
                    allow_watch_bookmarks=True,
                )
                for change in stream:
                    item = change["object"]
                    if item.metadata and item.metadata.resource_version:
                        version = item.metadata.resource_version
                    if change["type"] in ("ADDED", "MODIFIED") and fresh(item):
                        yield as_record(item)
                    if should_stop():
                        break
            except ApiException as e:
                if e.status != 410:
                    raise
                # the watch's resourceVersion is too old: list again, print what this reader has not seen
                listed = listing()
                for item in sorted(listed.items, key=when):
                    if fresh(item):
                        yield as_record(item)
                version = listed.metadata.resource_version
    except ApiException as e:
        raise TemporaryError(f"cannot watch events.k8s.io/v1 Events: {e.status} {e.reason}") from e
