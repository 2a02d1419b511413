"""The controller's Kubernetes access: informers (list + watch, kept in memory), the /scale subresource as a
`ReplicaTarget`, and the ScalingPolicy status writer.

Objects are kept as plain JSON dicts (`deserialize=False`): the generated models cost more to build than the
whole decision. API errors become `kernel.errors` types: 404 is `NotFound`, 409 `Conflict` (temporary),
throttling, a server error or no answer is temporary (retried here where the operation is idempotent, else
by the loop with backoff), any other 4xx (403 forbidden, 422 invalid) is permanent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from autoscaler.controller.ports import ScaleView
from kernel.errors import Conflict, NotFound, PermanentError, TemporaryError

log = logging.getLogger(__name__)

GROUP = "tidescale.io"
VERSION = "v1alpha1"
POLICIES = "scalingpolicies"
POOLS = "nodepools"
CONFLICT_RETRIES = 4
REQUEST_TIMEOUT = 10.0  # seconds for one /scale call: a hung API server must not hold the loop

# Kinds whose /scale lives at a known plural (anything else is found through discovery).
_PLURALS = {
    ("apps", "Deployment"): "deployments",
    ("apps", "StatefulSet"): "statefulsets",
    ("apps", "ReplicaSet"): "replicasets",
    ("", "ReplicationController"): "replicationcontrollers",
}


def api_error(e: ApiException, what: str) -> Exception:
    """An ApiException as `NotFound` (404), `Conflict` (409), TemporaryError (throttling, server side, no
    answer) or PermanentError (any other 4xx), with the API server's message."""
    status = int(e.status or 0)
    reason = e.reason or ""
    try:
        body = json.loads(e.body or "{}")
        reason = str(body.get("message") or reason)
    except (TypeError, ValueError, AttributeError):  # not JSON, or JSON that is not a Status
        pass
    text = f"{what}: HTTP {status} {reason}"
    if status == 404:
        return NotFound(text)
    if status == 409:
        return Conflict(text)
    if status in (0, 429) or status >= 500:
        return TemporaryError(text)
    return PermanentError(text)


def _selector_text(spec_selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector object in its string form (as /scale reports it)."""
    if not spec_selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((spec_selector.get("matchLabels") or {}).items())]
    for e in spec_selector.get("matchExpressions") or []:
        op, key, values = e.get("operator"), e.get("key"), e.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def workload_view(obj: Mapping[str, Any], kind: str, api_version: str = "apps/v1") -> ScaleView:
    """A Deployment or StatefulSet from the informer as the /scale view (ready = readyReplicas)."""
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {})
    return ScaleView(
        namespace=str(meta.get("namespace", "")),
        kind=kind,
        name=str(meta.get("name", "")),
        replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        ready=int(status.get("readyReplicas") or 0),
        selector=_selector_text(spec.get("selector")),
        resource_version=str(meta.get("resourceVersion", "")),
        api_version=api_version,
    )


class ScaleClient:
    """`ReplicaTarget` over the /scale subresource of any kind that has one (discovery finds the plural)."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._plurals: dict[tuple[str, str], str] = dict(_PLURALS)
        self.patches = 0

    def get_json(self, path: str, what: str) -> Any:
        """GET `path` (an API server path) as parsed JSON; failures as in `_call`."""
        return self._call(path, "GET", what)

    def merge_patch(self, path: str, what: str, body: Mapping[str, Any]) -> Any:
        """PATCH `path` with a JSON merge patch, as parsed JSON; failures as in `_call`."""
        return self._call(path, "PATCH", what, body)

    def _call(self, path: str, method: str, what: str, body: Any = None) -> Any:
        """One API call (a PATCH is a JSON merge patch); its failure as a `kernel.errors` type whose message
        starts with `what`."""
        content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
        try:
            response = self._api.call_api(
                path,
                method,
                body=body,
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as e:
            raise api_error(e, what) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:  # refused, reset, timed out
            raise TemporaryError(f"{what}: no answer from the API server: {e}") from e
        return json.loads(response.data)

    def _plural(self, api_version: str, kind: str) -> str:
        group = api_version.split("/", maxsplit=1)[0] if "/" in api_version else ""
        hit = self._plurals.get((group, kind))
        if hit is not None:
            return hit
        base = f"/apis/{api_version}" if group else f"/api/{api_version}"
        listing = self._call(base, "GET", f"discovery of {api_version}")
        for r in listing.get("resources", []):
            if r.get("kind") == kind and "/" not in r.get("name", ""):
                names = {x.get("name") for x in listing.get("resources", [])}
                if f"{r['name']}/scale" not in names:
                    raise PermanentError(f"{api_version} {kind} has no /scale subresource")
                self._plurals[(group, kind)] = r["name"]
                return str(r["name"])
        raise PermanentError(f"{api_version} has no kind {kind}")

    def _path(self, namespace: str, api_version: str, kind: str, name: str) -> str:
        plural = self._plural(api_version, kind)
        base = "/apis" if "/" in api_version else "/api"
        return f"{base}/{api_version}/namespaces/{namespace}/{plural}/{name}/scale"

    def read(self, namespace: str, api_version: str, kind: str, name: str) -> ScaleView:
        path = self._path(namespace, api_version, kind, name)
        scale = self._call(path, "GET", f"{kind}/{name} in {namespace}: reading /scale")
        return self._view(namespace, api_version, kind, scale)

    @staticmethod
    def _view(namespace: str, api_version: str, kind: str, scale: Mapping[str, Any]) -> ScaleView:
        spec, status, meta = scale.get("spec", {}), scale.get("status", {}), scale.get("metadata", {})
        return ScaleView(
            namespace=namespace,
            kind=kind,
            name=str(meta.get("name", "")),
            replicas=int(spec.get("replicas") or 0),
            ready=int(status.get("replicas") or 0),
            selector=str(status.get("selector") or ""),
            resource_version=str(meta.get("resourceVersion", "")),
            api_version=api_version,
        )

    def scale(self, view: ScaleView, replicas: int) -> ScaleView:
        """Update spec.replicas with optimistic concurrency (the PUT carries the resourceVersion just read);
        on a conflict re-read and retry, `CONFLICT_RETRIES` times in all (the replica count we want does not
        depend on what changed in between), then raise the last `Conflict`."""
        api_version = view.api_version
        path = self._path(view.namespace, api_version, view.kind, view.name)
        what = f"{view.kind}/{view.name} in {view.namespace}: scaling to {replicas}"
        attempt = 1
        while True:
            current = self._call(path, "GET", what)
            current["spec"] = {**current.get("spec", {}), "replicas": replicas}
            try:
                updated = self._call(path, "PUT", what, current)
            except Conflict as e:
                if attempt == CONFLICT_RETRIES:
                    raise Conflict(f"{e} ({CONFLICT_RETRIES} attempts)") from e
                attempt += 1
                continue
            self.patches += 1
            return self._view(view.namespace, api_version, view.kind, updated)


class StatusWriter:
    """Writes a ScalingPolicy's status through the status subresource (merge patch)."""

    def __init__(self, api: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api)
        self.writes = 0

    def write(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        try:
            self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                POLICIES,
                name,
                {"status": dict(status)},
                _content_type="application/merge-patch+json",
            )
            self.writes += 1
        except ApiException as e:
            raise api_error(e, f"ScalingPolicy {namespace}/{name}: writing status") from e
