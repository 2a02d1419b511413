"""The launcher's shell: submit, list, get, logs and delete jobs through the Kubernetes API.

Everything is read from and written to the cluster (no local state): a job is its root ConfigMap
`tidescale-job-<name>` and the children it owns (`jobs.launcher.render`).

- `submit` refuses a name that exists (unless `replace`: the old job is deleted and waited for first),
  creates each job's root, then its children owned by the root; when an object cannot be created it
  removes everything this call created and raises `SubmitFailed` naming the object and the API server's
  reason. Parsing happens before (`jobs.launcher.kinds`): an invalid file creates nothing.
- `list_jobs` / `get_job` compute the phase from the children (`jobs.launcher.status`).
- `logs` reads pod logs through the API server; a pod on a KWOK node (no kubelet endpoint) has none,
  and says so (`NoLogs`).
- `delete_job` deletes the root (Foreground or Background propagation): the garbage collector removes
  the rest; `wait` polls until nothing labelled with the job remains.

Objects travel as plain JSON dicts through the official client's `ApiClient.call_api`, one small table of
kinds -> REST paths, so that the custom resources (PodGroup, ScalingPolicy) need no special case.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from jobs.launcher.external import (
    WORKLOAD_ANNOTATION,
    ExternalJob,
    ExternalKind,
    owner_reference,
    root_of,
    workload_view,
)
from jobs.launcher.kinds import Job
from jobs.launcher.render import (
    JOB_LABEL,
    KIND_LABEL,
    QUEUE_LABEL,
    ROOT_PREFIX,
    Defaults,
    Rendered,
    ref,
    render,
    root_name,
)
from jobs.launcher.status import FAILED, PENDING, JobView, job_view
from kernel.clock import SYSTEM_CLOCK, Clock, Deadline
from kernel.errors import PermanentError, TemporaryError, TidescaleError

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"

# kind -> (apiVersion, plural)
RESOURCES: dict[str, tuple[str, str]] = {
    "ConfigMap": ("v1", "configmaps"),
    "Service": ("v1", "services"),
    "Pod": ("v1", "pods"),
    "Event": ("v1", "events"),
    "Node": ("v1", "nodes"),
    "Job": ("batch/v1", "jobs"),
    "Deployment": ("apps/v1", "deployments"),
    "ReplicaSet": ("apps/v1", "replicasets"),
    "PodGroup": ("scheduling.volcano.sh/v1beta1", "podgroups"),
    "ScalingPolicy": ("tidescale.io/v1alpha1", "scalingpolicies"),
}
# what a job may leave behind, children before the root
LABELLED = ("ScalingPolicy", "Deployment", "ReplicaSet", "Job", "Pod", "Service", "PodGroup", "ConfigMap")
WORKLOADS = ("Job", "Deployment")
_OBJECT = {200: "object", 201: "object", 202: "object"}  # the JSON as dicts, whatever the kind


class LauncherError(PermanentError):
    """A launcher operation that cannot succeed as asked."""


class JobNotFound(LauncherError):
    pass


class JobExists(LauncherError):
    pass


class SubmitFailed(LauncherError):
    pass


class NoLogs(LauncherError):
    pass


def api_reason(e: ApiException) -> str:
    """`409 AlreadyExists: services "x" already exists`, from the API server's Status."""
    try:
        status = json.loads(e.body or "{}")
    except (TypeError, ValueError):
        status = {}
    message = status.get("message") if isinstance(status, dict) else None
    reason = status.get("reason") if isinstance(status, dict) else None
    return f"{e.status} {reason or e.reason}: {message or e.body or ''}".strip().rstrip(":")


class Kube:
    """JSON dicts in and out of the API server, for the kinds in `RESOURCES`."""

    def __init__(self, api: Any) -> None:
        self.api = api

    @staticmethod
    def path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
        api_version, plural = RESOURCES[kind]
        out = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if namespace:
            out += f"/namespaces/{namespace}"
        out += f"/{plural}"
        return f"{out}/{name}" if name else out

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        timeout: float | None = 30,
    ) -> Any:
        try:
            return self.api.call_api(
                path,
                method,
                query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=body,
                response_types_map=_OBJECT,
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=True,
                _request_timeout=timeout,
            )
        except (urllib3.exceptions.HTTPError, OSError) as e:  # connection refused, timeout
            raise TemporaryError(f"cannot reach the Kubernetes API server: {e}") from e

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        ns = obj["metadata"].get("namespace")
        out: dict[str, Any] = self.call("POST", self.path(str(obj["kind"]), ns), body=obj)
        return out

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            out: dict[str, Any] = self.call("GET", self.path(kind, namespace, name))
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return out

    def list(self, kind: str, namespace: str | None, selector: str | None = None) -> list[dict[str, Any]]:
        """Items of `kind` (all namespaces when `namespace` is None); [] when the kind is not served."""
        try:
            out = self.call("GET", self.path(kind, namespace), query={"labelSelector": selector})
        except ApiException as e:
            if e.status == 404 and kind in ("PodGroup", "ScalingPolicy"):
                return []
            raise
        items: list[dict[str, Any]] = out.get("items") or []
        for item in items:
            item.setdefault("kind", kind)
        return items

    def delete(self, kind: str, namespace: str | None, name: str, propagation: str = "Background") -> bool:
        """False when it was already gone."""
        try:
            self.call(
                "DELETE",
                self.path(kind, namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
            )
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True


# -- submit --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    name: str
    namespace: str
    kind: str
    uid: str  # the root's ("" on a dry run)
    objects: tuple[str, ...]  # `Kind/name`, root first
    rendered: Rendered
    view: JobView | None = None  # after `wait`
    details: Mapping[str, Any] | None = None  # an external kind's own report (a pipeline's launch)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "kind": self.kind,
            "uid": self.uid,
            "objects": list(self.objects),
        }
        if self.view is not None:
            out["phase"] = self.view.phase
            out["reason"] = self.view.reason
        if self.details is not None:
            out["launch"] = dict(self.details)
        return out


def _failure_hint(obj: Mapping[str, Any], e: ApiException) -> str:
    if e.status == 404 and obj["kind"] in ("PodGroup", "ScalingPolicy"):
        api_version = obj["apiVersion"]
        return f" (the API server does not serve {api_version} {RESOURCES[obj['kind']][1]}: install its CRD)"
    return ""


def submit(
    api: Any,
    jobs: Sequence[Job],
    *,
    namespace: str | None = None,
    queue: str | None = None,
    scheduler_name: str | None = None,
    dry_run: bool = False,
    replace: bool = False,
    wait: bool = False,
    timeout: float = 300.0,
    clock: Clock = SYSTEM_CLOCK,
    external: Sequence[tuple[ExternalKind, ExternalJob]] = (),
    kubeconfig: str | None = None,
) -> list[Submitted]:
    """Create `jobs` (already validated) on the cluster; all of them or, on a failure, none.

    `namespace`, `queue`, `scheduler_name` fill what a document leaves out. `dry_run` renders only (no API
    call). `wait`: return once every job is Running (every pod bound), Succeeded or Failed, with its view;
    TemporaryError after `timeout` seconds. `external`: jobs of external kinds (a Pipeline), parsed with
    the flags resolved, created after the others with their kind's own client, which reads `kubeconfig`
    (a file: required for them), each under its root ConfigMap."""
    defaults = Defaults(
        **{
            k: v
            for k, v in (("namespace", namespace), ("queue", queue), ("scheduler_name", scheduler_name))
            if v
        }
    )
    rendered = [render(j, defaults) for j in jobs]
    outside = [(k, j, _external_rendered(j)) for k, j in external]
    if dry_run:
        return [_submitted(r, "", r.objects) for r in rendered] + [
            dataclasses.replace(_submitted(r, "", r.objects), details=k.dry_run(j, kubeconfig))
            for k, j, r in outside
        ]
    if outside and not kubeconfig:
        kinds = ", ".join(sorted({j.kind for _, j, _ in outside}))
        raise SubmitFailed(f"{kinds}: submitted with its engine's own client, which needs a kubeconfig file")
    kube = Kube(api)
    # 1. a name that exists is refused before anything is created
    existing = [
        r
        for r in [*rendered, *(r for _, _, r in outside)]
        if kube.get("ConfigMap", r.namespace, root_name(r.name)) is not None
    ]
    if existing and not replace:
        names = ", ".join(f"{r.name} (namespace {r.namespace})" for r in existing)
        raise JobExists(f"a job named {names} exists already: delete it first, or submit with --replace")
    # 2. replacing: the old job goes first, all of it
    for r in existing:
        delete_job(
            api, r.name, r.namespace, propagation="Foreground", wait=True, timeout=timeout, clock=clock
        )
    # 3. root, then its children owned by it; a failure removes what this call created
    created: list[dict[str, Any]] = []
    out: list[Submitted] = []
    for r in rendered:
        obj: Mapping[str, Any] = r.root
        try:
            root = kube.create(r.root)
            created.append(r.root)
            uid = str(root["metadata"]["uid"])
            for obj in r.owned_by(uid):
                kube.create(obj)
                created.append(obj)
        except (ApiException, TemporaryError) as e:
            removed = _roll_back(kube, created)
            why = api_reason(e) + _failure_hint(obj, e) if isinstance(e, ApiException) else str(e)
            raise SubmitFailed(
                f"{r.kind} {r.name}: {ref(dict(obj))} in namespace {r.namespace} was not created: {why}; "
                f"removed what was created ({', '.join(removed) or 'nothing'})"
            ) from e
        out.append(_submitted(r, uid, [r.root, *r.children]))
    # 4. external kinds: the root, then the kind's own client, which makes the root own its workload
    for kind, job, r in outside:
        try:
            root = kube.create(r.root)
            created.append(r.root)
            done = kind.submit(
                job,
                kubeconfig=str(kubeconfig),
                owner=owner_reference(root),
                replace=replace,
                timeout=timeout,
            )
        except (ApiException, TidescaleError) as e:
            removed = _roll_back(kube, created)
            why = api_reason(e) if isinstance(e, ApiException) else str(e)
            raise SubmitFailed(
                f"{job.kind} {job.name} in namespace {job.namespace} was not created: {why}; "
                f"removed what was created ({', '.join(removed) or 'nothing'})"
            ) from e
        objects = (ref(r.root), *done.objects)
        out.append(
            Submitted(
                job.name,
                job.namespace,
                job.kind,
                str(root["metadata"]["uid"]),
                objects,
                r,
                None,
                done.details,
            )
        )
    if wait:
        out = [
            dataclasses.replace(s, view=wait_started(api, s.name, s.namespace, timeout, clock)) for s in out
        ]
    return out


def _external_rendered(job: ExternalJob) -> Rendered:
    """An external job's root as the launcher renders roots (its children are its kind's business)."""
    return Rendered(job.kind, job.name, job.namespace, job.queue, root_of(job), ())


def _submitted(
    r: Rendered, uid: str, objects: Sequence[Mapping[str, Any]], view: JobView | None = None
) -> Submitted:
    return Submitted(r.name, r.namespace, r.kind, uid, tuple(ref(dict(o)) for o in objects), r, view)


def _roll_back(kube: Kube, created: Sequence[Mapping[str, Any]]) -> list[str]:
    """Delete what was created, newest first (the pods a Job or Deployment made go with it)."""
    removed = []
    for obj in reversed(created):
        m = obj["metadata"]
        try:
            kube.delete(str(obj["kind"]), m.get("namespace"), m["name"], propagation="Background")
            removed.append(ref(dict(obj)))
        except (ApiException, TemporaryError):
            continue  # the root's garbage collection still takes it
    return removed


def wait_started(
    api: Any, name: str, namespace: str, timeout: float = 300.0, clock: Clock = SYSTEM_CLOCK
) -> JobView:
    """Poll until the job is no longer Pending (every pod bound, or finished)."""
    deadline = Deadline(timeout, clock)
    while True:
        view = get_job(api, name, namespace, events=False)
        if view.phase != PENDING:
            return view
        if deadline.expired():
            raise TemporaryError(f"{view.kind} {name} still Pending after {timeout:.0f} s: {view.reason}")
        clock.sleep(0.2)


# -- list and get ------------------------------------------------------------------------------------


def _selector(*parts: str | None) -> str:
    return ",".join(p for p in parts if p)


def list_jobs(api: Any, namespace: str | None = "default", queue: str | None = None) -> list[JobView]:
    """Every job in `namespace` (None: all namespaces), in `queue` when given, with its phase."""
    kube = Kube(api)
    roots = kube.list(
        "ConfigMap", namespace, _selector(JOB_LABEL, KIND_LABEL, f"{QUEUE_LABEL}={queue}" if queue else None)
    )
    if not roots:
        return []
    children: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for kind in ("Pod", *WORKLOADS):
        for obj in kube.list(kind, namespace, JOB_LABEL):
            m = obj.get("metadata") or {}
            key = (str(m.get("namespace")), str((m.get("labels") or {}).get(JOB_LABEL)))
            children.setdefault(key, {}).setdefault(kind, []).append(obj)
    views = []
    for root in roots:
        m = root.get("metadata") or {}
        if not str(m.get("name") or "").startswith(ROOT_PREFIX):
            continue  # labelled like a root by somebody else (an engine copying its pod's labels)
        key = (str(m.get("namespace")), str((m.get("labels") or {}).get(JOB_LABEL)))
        mine = children.get(key, {})
        view = job_view(root, mine.get("Job", []) + mine.get("Deployment", []), mine.get("Pod", []))
        views.append(_with_workload(view, root))
    return sorted(views, key=lambda v: (v.namespace, v.name))


def _with_workload(view: JobView, root: Mapping[str, Any]) -> JobView:
    """The view of an external job whose workload is a Pod takes that pod's phase."""
    workload = ((root.get("metadata") or {}).get("annotations") or {}).get(WORKLOAD_ANNOTATION)
    return workload_view(view, str(workload)) if workload else view


def get_job(api: Any, name: str, namespace: str = "default", events: bool = True) -> JobView:
    """One job: phase, pods (node, phase, devices, the scheduler's message when pending), its PodGroup's
    phase and the recent events of its pods, PodGroup and workloads. JobNotFound when it does not exist."""
    kube = Kube(api)
    root = kube.get("ConfigMap", namespace, root_name(name))
    if root is None or JOB_LABEL not in ((root.get("metadata") or {}).get("labels") or {}):
        raise JobNotFound(f"no job {name!r} in namespace {namespace}")
    selector = f"{JOB_LABEL}={name}"
    workloads = [w for kind in WORKLOADS for w in kube.list(kind, namespace, selector)]
    pods = kube.list("Pod", namespace, selector)
    groups = kube.list("PodGroup", namespace, selector)
    listed = kube.list("Event", namespace) if events else []
    return _with_workload(job_view(root, workloads, pods, groups, listed), root)


# -- logs ------------------------------------------------------------------------------------------


def _pick(view: JobView, instance: str | None) -> str:
    if not view.pods:
        raise NoLogs(f"no logs: {view.kind} {view.name} has no pods ({view.reason})")
    if instance is None:
        return view.pods[0].name  # the master, else the first worker by index
    for p in view.pods:
        if instance in (p.name, p.index):
            return p.name
    matches = [p.name for p in view.pods if instance in p.name]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(p.name for p in view.pods)
    raise JobNotFound(f"{view.kind} {view.name} has no pod {instance!r} (its pods: {known})")


def logs(
    api: Any,
    name: str,
    namespace: str = "default",
    *,
    follow: bool = False,
    instance: str | None = None,
    tail: int | None = None,
) -> Iterator[str]:
    """The log of one pod of the job (`instance`: a pod name, its index, or a unique part of its name;
    default the master or the first worker), line by line; `follow` streams until the pod ends.
    NoLogs (a sentence, no traceback) when the pod has none: not bound yet, or on a node without a
    kubelet endpoint, as every KWOK node is."""
    kube = Kube(api)
    view = get_job(api, name, namespace, events=False)
    pod = next(p for p in view.pods if p.name == _pick(view, instance))
    if not pod.node:
        raise NoLogs(f"no logs: pod {pod.name} is not running yet ({pod.message})")
    node = kube.get("Node", None, pod.node) or {}
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    port = ((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint", {}).get("port")
    if annotations.get(KWOK_NODE_ANNOTATION) or not port:
        where = (
            "a KWOK node"
            if annotations.get(KWOK_NODE_ANNOTATION)
            else f"node {pod.node}, which has no kubelet"
        )
        raise NoLogs(f"no logs (the pod runs on {where}): {pod.name} on {pod.node} runs no container")
    query = {"follow": "true" if follow else None, "tailLines": tail}
    path = Kube.path("Pod", namespace, pod.name) + "/log"
    try:
        response = kube.api.call_api(
            path,
            "GET",
            query_params=[(k, v) for k, v in query.items() if v is not None],
            header_params={"Accept": "text/plain"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=False,
            _request_timeout=None if follow else 60,
        )
    except ApiException as e:
        raise NoLogs(f"no logs for {pod.name} on {pod.node}: {api_reason(e)}") from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise TemporaryError(f"cannot reach the Kubernetes API server: {e}") from e
    try:
        pending = b""
        for chunk in response.stream(4096):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", "replace")
        if pending:
            yield pending.decode("utf-8", "replace")
    finally:
        response.release_conn()


# -- delete ----------------------------------------------------------------------------------------


def leftovers(api: Any, name: str, namespace: str) -> list[str]:
    """`Kind/name` of every object still labelled with the job."""
    kube = Kube(api)
    selector = f"{JOB_LABEL}={name}"
    return [
        f"{kind}/{(obj.get('metadata') or {}).get('name')}"
        for kind in LABELLED
        for obj in kube.list(kind, namespace, selector)
    ]


def delete_job(
    api: Any,
    name: str,
    namespace: str = "default",
    *,
    propagation: str = "Foreground",
    wait: bool = False,
    timeout: float = 120.0,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    """Delete the job's root; Kubernetes' garbage collector removes its children (Foreground: the root
    goes last). `wait`: until no object labelled with the job remains, TemporaryError after `timeout`."""
    if propagation not in ("Foreground", "Background"):
        raise ValueError(f"propagation: Foreground or Background, not {propagation!r}")
    kube = Kube(api)
    if not kube.delete("ConfigMap", namespace, root_name(name), propagation=propagation):
        raise JobNotFound(f"no job {name!r} in namespace {namespace}")
    if not wait:
        return
    deadline = Deadline(timeout, clock)
    while True:
        left = leftovers(api, name, namespace)
        if not left:
            return
        if deadline.expired():
            raise TemporaryError(f"job {name}: still there after {timeout:.0f} s: {', '.join(left)}")
        clock.sleep(0.2)


__all__ = [
    "FAILED",
    "JobExists",
    "JobNotFound",
    "NoLogs",
    "SubmitFailed",
    "Submitted",
    "delete_job",
    "get_job",
    "leftovers",
    "list_jobs",
    "logs",
    "submit",
]
