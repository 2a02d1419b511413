"""The scheduler's writes to the API server: bindings (with the device annotations), PodScheduled
conditions, PodGroup and Queue status, evictions. Every call takes a token from one bucket (the client's
QPS and burst), and API errors become `kernel.errors` types: a conflict, throttling or server error is
temporary, a 404 means the object is gone, other 4xx are permanent.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kernel import errors
from kernel.errors import PermanentError, TemporaryError
from kernel.ratelimit import TokenBucket

VOLCANO = ("scheduling.volcano.sh", "v1beta1")
COSCHEDULING = ("scheduling.x-k8s.io", "v1alpha1")
REQUEST_TIMEOUT = 10.0


class Gone(errors.NotFound):
    """The object (pod, node) no longer exists."""


class Conflict(errors.Conflict):
    """The object changed under us (already bound, resourceVersion moved)."""


def _error(e: ApiException, what: str) -> Exception:
    status = int(e.status or 0)
    reason = e.reason or ""
    with contextlib.suppress(TypeError, ValueError):
        reason = str(json.loads(e.body or "{}").get("message") or reason)
    text = f"{what}: HTTP {status} {reason}"
    if status == 404:
        return Gone(text)
    if status == 409:
        return Conflict(text)
    if status in (0, 429) or status >= 500:
        return TemporaryError(text)
    return PermanentError(text)


class ClusterWriter:
    def __init__(self, api_client: Any, limiter: TokenBucket) -> None:
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.limiter = limiter

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: Mapping[str, str]) -> None:
        """POST pods/binding. The annotations ride on the Binding: the API server copies them onto the pod
        in the same write that sets `spec.nodeName`, so no kubelet or device plugin ever sees the pod on a
        node without its device assignment (as Volcano's binder does)."""
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "annotations": dict(annotations)},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        self.limiter.take()
        try:
            self.core.create_namespaced_pod_binding(
                name, namespace, body, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as e:
            raise _error(e, f"bind pod {namespace}/{name} to {node}") from e

    def pod_status(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        self.limiter.take()
        try:
            self.core.patch_namespaced_pod_status(
                name, namespace, dict(body), _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as e:
            raise _error(e, f"status of pod {namespace}/{name}") from e

    def group_status(self, api: str, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """Volcano's PodGroup has no status subresource: its status is merged into the object."""
        group, version = VOLCANO if api == "volcano" else COSCHEDULING
        self.limiter.take()
        try:
            if api == "volcano":
                self.custom.patch_namespaced_custom_object(
                    group, version, namespace, "podgroups", name, dict(body), _request_timeout=REQUEST_TIMEOUT
                )
            else:
                self.custom.patch_namespaced_custom_object_status(
                    group, version, namespace, "podgroups", name, dict(body), _request_timeout=REQUEST_TIMEOUT
                )
        except ApiException as e:
            raise _error(e, f"status of PodGroup {namespace}/{name}") from e

    def queue_status(self, name: str, body: Mapping[str, Any]) -> None:
        group, version = VOLCANO
        self.limiter.take()
        try:
            self.custom.patch_cluster_custom_object_status(
                group, version, "queues", name, dict(body), _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as e:
            raise _error(e, f"status of Queue {name}") from e

    def evict(self, namespace: str, name: str) -> str:
        """Evict through the Eviction API, which honours PodDisruptionBudgets: "" when evicted, else why
        not (a budget refusing it)."""
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        self.limiter.take()
        try:
            self.core.create_namespaced_pod_eviction(
                name, namespace, body, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as e:
            if e.status == 429:
                return f"a PodDisruptionBudget refuses to evict {namespace}/{name} now"
            if e.status == 404:
                return ""
            raise _error(e, f"evict pod {namespace}/{name}") from e
        return ""
