"""The launcher's shell: submit, list, get, logs and delete jobs through the Kubernetes API.

Everything is read from and written to the cluster: a job is its root ConfigMap `tidescale-job-<name>`
and the children it owns (`jobs.launcher.render`). A local job (a Pipeline with `target: local`) is its
root and a process on the machine that submitted it, which the root records (`jobs.launcher.local`;
the process handling is `jobs.launcher.processes`).

- `submit` refuses a name that exists (unless `replace`: the old job is deleted and waited for first),
  creates each job's root, then its children owned by the root; when an object cannot be created it
  removes everything this call created and raises `SubmitFailed` naming the object and the API server's
  reason. Parsing happens before (`jobs.launcher.kinds`): an invalid file creates nothing.
  A local job's root is created first, then its process is started and the root annotated with it.
- `list_jobs` / `get_job` compute the phase from the children (`jobs.launcher.status`), a local job's
  from its process as this machine sees it; `get_job` adds a pending job's place in its queue
  (`jobs.launcher.queueing`, from the pending pods of every namespace).
- `logs` reads pod logs through the API server; a pod on a KWOK node (no kubelet endpoint) has none,
  and says so (`NoLogs`). A local job's log is its process's log file, on its host only.
- `delete_job` deletes the root (Foreground or Background propagation): the garbage collector removes
  the rest; `wait` polls until nothing labelled with the job remains. A local job's process is stopped
  first (on its host only: elsewhere `force` deletes the record alone) and its directory removed after.

Objects travel as plain JSON dicts through the official client's `ApiClient.call_api`, one small table of
kinds -> REST paths, so that the custom resources (PodGroup, ScalingPolicy) need no special case.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from jobs.launcher import processes
from jobs.launcher.external import (
    WORKLOAD_ANNOTATION,
    ExternalJob,
    ExternalKind,
    owner_reference,
    root_of,
    workload_view,
)
from jobs.launcher.kinds import Job
from jobs.launcher.local import (
    Host,
    LocalRecord,
    Process,
    job_directory,
    jobs_directory,
    local_view,
    record_for,
)
from jobs.launcher.queueing import QueuePosition, position_of
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
from jobs.launcher.status import FAILED, PENDING, SUCCEEDED, JobView, job_view
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
    "Queue": ("scheduling.volcano.sh/v1beta1", "queues"),  # cluster-scoped
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
        content_type: str = "application/json",
    ) -> Any:
        try:
            return self.api.call_api(
                path,
                method,
                query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
                header_params={"Accept": "application/json", "Content-Type": content_type},
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

    def patch(self, kind: str, namespace: str | None, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch."""
        out: dict[str, Any] = self.call(
            "PATCH",
            self.path(kind, namespace, name),
            body=dict(patch),
            content_type="application/merge-patch+json",
        )
        return out

    def list(
        self, kind: str, namespace: str | None, selector: str | None = None, fields: str | None = None
    ) -> list[dict[str, Any]]:
        """Items of `kind` (all namespaces when `namespace` is None); [] when the kind is not served."""
        try:
            out = self.call(
                "GET", self.path(kind, namespace), query={"labelSelector": selector, "fieldSelector": fields}
            )
        except ApiException as e:
            if e.status == 404 and kind in ("PodGroup", "Queue", "ScalingPolicy"):
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
    exit_code: int | None = None  # a local job waited for: its process's exit status

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
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
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
    call). `wait`: return once every job is Running (every pod bound), Succeeded or Failed, with its view
    (a local job: once its process ended, with its exit status); TemporaryError after `timeout` seconds.
    `external`: jobs of external kinds (a Pipeline), parsed with the flags resolved, created after the
    others with their kind's own client, which reads `kubeconfig` (a file: required for them), each under
    its root ConfigMap; or, for a local one, started on this machine (`jobs.launcher.processes`)."""
    defaults = Defaults(
        **{
            k: v
            for k, v in (("namespace", namespace), ("queue", queue), ("scheduler_name", scheduler_name))
            if v
        }
    )
    rendered = [render(j, defaults) for j in jobs]
    outside = [(k, j, _external_rendered(j)) for k, j in external]
    here = processes.this_host() if any(j.local is not None for _, j in external) else None
    base = jobs_directory(os.environ, Path.home())
    if dry_run:
        return [_submitted(r, "", r.objects) for r in rendered] + [
            _dry_run(k, j, r, here, base, kubeconfig) for k, j, r in outside
        ]
    clients = [j for _, j, _ in outside if j.local is None]
    if clients and not kubeconfig:
        kinds = ", ".join(sorted({j.kind for j in clients}))
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
    # 4. external kinds: the root, then the kind's own client, which makes the root own its workload; a
    # local job: the root, then its process on this machine, then the root annotated with the process
    started: list[tuple[Process, Path, str]] = []
    for kind, job, r in outside:
        try:
            if job.local is not None and here is not None:
                root, objects, details = _start_local(kube, job, r, here, base, created, started, clock)
            else:
                root = kube.create(r.root)
                created.append(r.root)
                done = kind.submit(
                    job,
                    kubeconfig=str(kubeconfig),
                    owner=owner_reference(root),
                    replace=replace,
                    timeout=timeout,
                )
                objects, details = (ref(r.root), *done.objects), done.details
        except (ApiException, TidescaleError) as e:
            stopped = _stop_started(started)
            removed = stopped + _roll_back(kube, created)
            why = api_reason(e) if isinstance(e, ApiException) else str(e)
            raise SubmitFailed(
                f"{job.kind} {job.name} in namespace {job.namespace} was not created: {why}; "
                f"removed what was created ({', '.join(removed) or 'nothing'})"
            ) from e
        out.append(
            Submitted(
                job.name,
                job.namespace,
                job.kind,
                str(root["metadata"]["uid"]),
                objects,
                r,
                None,
                details,
            )
        )
    if wait:
        local = {(j.namespace, j.name) for _, j, _ in outside if j.local is not None}
        out = [_waited(api, s, (s.namespace, s.name) in local, timeout, clock) for s in out]
    return out


def _waited(api: Any, s: Submitted, local: bool, timeout: float, clock: Clock) -> Submitted:
    if not local:
        return dataclasses.replace(s, view=wait_started(api, s.name, s.namespace, timeout, clock))
    view = wait_finished(api, s.name, s.namespace, timeout, clock)
    code = (view.local or {}).get("exitCode")
    return dataclasses.replace(s, view=view, exit_code=int(code) if code is not None else None)


def _dry_run(
    kind: ExternalKind, job: ExternalJob, r: Rendered, here: Host | None, base: Path, kubeconfig: str | None
) -> Submitted:
    if job.local is None or here is None:
        return dataclasses.replace(_submitted(r, "", r.objects), details=kind.dry_run(job, kubeconfig))
    record = record_for(here, job_directory(base, job.namespace, job.name), job.local)
    r = dataclasses.replace(r, root=_recorded(r.root, record))
    return dataclasses.replace(_submitted(r, "", r.objects), details=_local_plan(job, here, base))


# -- local jobs --------------------------------------------------------------------------------------


def _recorded(root: Mapping[str, Any], record: LocalRecord) -> dict[str, Any]:
    """The root of a local job, with its record in its annotations."""
    out: dict[str, Any] = json.loads(json.dumps(root))
    out["metadata"]["annotations"] = {**out["metadata"].get("annotations", {}), **record.annotations()}
    return out


def _local_plan(job: ExternalJob, here: Host, base: Path) -> dict[str, Any]:
    """What submitting a local job would create and run (its dry run)."""
    assert job.local is not None
    record = record_for(here, job_directory(base, job.namespace, job.name), job.local)
    return {
        "target": "local",
        "host": record.host,
        "directory": record.directory,
        "log": record.log,
        "objects": [f"ConfigMap/{root_name(job.name)}", "Process"],
        "command": list(record.command),
        "files": sorted(job.local.files),
        "notes": [
            f"runs on this machine ({record.host}) in {record.directory}, its output appended to {record.log}"
        ],
    }


def _start_local(
    kube: Kube,
    job: ExternalJob,
    r: Rendered,
    here: Host,
    base: Path,
    created: list[dict[str, Any]],
    started: list[tuple[Process, Path, str]],
    clock: Clock,
) -> tuple[dict[str, Any], tuple[str, ...], Mapping[str, Any]]:
    """The root with the job's record, the process, then the root annotated with the process."""
    assert job.local is not None
    directory = job_directory(base, job.namespace, job.name)
    record = record_for(here, directory, job.local)
    body = _recorded(r.root, record)
    root = kube.create(body)
    created.append(body)
    uid = str(root["metadata"]["uid"])
    process = processes.start(job.local, directory, uid)
    started.append((process, directory, uid))
    record = dataclasses.replace(record, process=process, started=clock.now().isoformat(timespec="seconds"))
    kube.patch(
        "ConfigMap", job.namespace, root_name(job.name), {"metadata": {"annotations": record.annotations()}}
    )
    details = _local_plan(job, here, base) | {
        "pid": process.pid,
        "objects": [ref(body), f"Process/{process.pid}"],
    }
    details.pop("notes")
    return root, (ref(body), f"Process/{process.pid}"), details


def _stop_started(started: Sequence[tuple[Process, Path, str]]) -> list[str]:
    """Stop the processes this call started and remove their directories (a failed submission)."""
    stopped = []
    for process, directory, uid in started:
        try:
            processes.stop(process)
        except TidescaleError:
            continue
        processes.remove(directory, uid)
        stopped.append(f"Process/{process.pid}")
    return stopped


def wait_finished(
    api: Any, name: str, namespace: str, timeout: float = 300.0, clock: Clock = SYSTEM_CLOCK
) -> JobView:
    """Poll until a local job's process has ended (Succeeded or Failed)."""
    return _wait(api, name, namespace, lambda v: v.phase in (SUCCEEDED, FAILED), timeout, clock)


def _wait(
    api: Any, name: str, namespace: str, done: Callable[[JobView], bool], timeout: float, clock: Clock
) -> JobView:
    """Poll the job's view until `done`; TemporaryError naming its phase and reason at the deadline."""
    deadline = Deadline(timeout, clock)
    while True:
        view = get_job(api, name, namespace, events=False)
        if done(view):
            return view
        if deadline.expired():
            raise TemporaryError(
                f"{view.kind} {name} still {view.phase} after {timeout:.0f} s: {view.reason}"
            )
        clock.sleep(0.2)


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
    return _wait(api, name, namespace, lambda v: v.phase != PENDING, timeout, clock)


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
    """The view of an external job whose workload is a Pod takes that pod's phase; a local job's, its
    process's as this machine sees it."""
    record = LocalRecord.of(root)
    if record is not None:
        return local_view(view, record, processes.observe(record, processes.this_host()))
    workload = ((root.get("metadata") or {}).get("annotations") or {}).get(WORKLOAD_ANNOTATION)
    return workload_view(view, str(workload)) if workload else view


def _root(kube: Kube, name: str, namespace: str) -> dict[str, Any]:
    root = kube.get("ConfigMap", namespace, root_name(name))
    if root is None or JOB_LABEL not in ((root.get("metadata") or {}).get("labels") or {}):
        raise JobNotFound(f"no job {name!r} in namespace {namespace}")
    return root


def _position(kube: Kube, view: JobView) -> QueuePosition | None:
    """Where a pending job stands in its queue, from the pending pods of its scheduler in every namespace
    (None when it has no pending pod, or when this user may not list them)."""
    scheduler = next((p.scheduler for p in view.pods if not p.bound and p.scheduler), None)
    if scheduler is None:
        return None
    try:
        pods = kube.list("Pod", None, fields=f"spec.schedulerName={scheduler},spec.nodeName=")
        groups = kube.list("PodGroup", None)
        queues = kube.list("Queue", None)
    except ApiException:
        return None  # 403: no right to list them cluster-wide; the rest of the view stands
    return position_of(view.namespace, view.name, pods, groups, queues, scheduler)


def get_job(api: Any, name: str, namespace: str = "default", events: bool = True) -> JobView:
    """One job: phase, pods (node, phase, devices, the scheduler's message when pending), its PodGroup's
    phase and the recent events of its pods, PodGroup and workloads; when it is pending, its place in its
    queue. A local job: its process (host, pid, log) and its phase. `events=False`: the quick read that
    `wait` polls, without events or queue position. JobNotFound when it does not exist."""
    kube = Kube(api)
    root = _root(kube, name, namespace)
    selector = f"{JOB_LABEL}={name}"
    workloads = [w for kind in WORKLOADS for w in kube.list(kind, namespace, selector)]
    pods = kube.list("Pod", namespace, selector)
    groups = kube.list("PodGroup", namespace, selector)
    listed = kube.list("Event", namespace) if events else []
    view = _with_workload(job_view(root, workloads, pods, groups, listed), root)
    if view.phase == PENDING and view.local is None and events:
        view = dataclasses.replace(view, position=_position(kube, view))
    return view


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
    kubelet endpoint, as every KWOK node is. A local job's log is its process's output, read on its host
    (`follow`: until the process ends); NoLogs from another host names the host."""
    kube = Kube(api)
    record = LocalRecord.of(_root(kube, name, namespace))
    if record is not None:
        yield from _local_log(name, record, follow=follow, tail=tail)
        return
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


def _local_log(name: str, record: LocalRecord, *, follow: bool, tail: int | None) -> Iterator[str]:
    here = processes.this_host()
    if record.host != here.name:
        raise NoLogs(
            f"no logs here: job {name} runs on host {record.host}, where its log is {record.log} "
            f"(run `jobs logs` there)"
        )
    path = Path(record.log)
    if not path.is_file():
        raise NoLogs(f"no logs: {record.log} does not exist (the process has not started, or it was removed)")
    process = record.process
    yield from processes.read_log(
        path,
        follow=follow,
        tail=tail,
        alive=(lambda: processes.running(process)) if process is not None else (lambda: False),
    )


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
    force: bool = False,
    grace: float = processes.GRACE_S,
) -> None:
    """Delete the job's root; Kubernetes' garbage collector removes its children (Foreground: the root
    goes last). `wait`: until no object labelled with the job remains, TemporaryError after `timeout`.

    A local job's process is stopped first (SIGTERM, SIGKILL after `grace` seconds) if it still runs and
    is the recorded one, and its directory is removed after the root. Only its host can stop it: from
    another, LauncherError, unless `force` (the record alone is deleted; the process, if it runs, is left
    to its host)."""
    if propagation not in ("Foreground", "Background"):
        raise ValueError(f"propagation: Foreground or Background, not {propagation!r}")
    kube = Kube(api)
    root = kube.get("ConfigMap", namespace, root_name(name))
    record = LocalRecord.of(root) if root is not None else None
    mine = False
    if record is not None:
        mine = record.host == processes.this_host().name
        if not mine and not force:
            pid = record.process.pid if record.process is not None else "-"
            raise LauncherError(
                f"job {name} runs on host {record.host} (process {pid}), which alone can stop it: delete it "
                "there, or pass --force to delete its record only"
            )
        if mine and record.process is not None:
            processes.stop(record.process, grace, clock)
    if not kube.delete("ConfigMap", namespace, root_name(name), propagation=propagation):
        raise JobNotFound(f"no job {name!r} in namespace {namespace}")
    if record is not None and mine and root is not None:
        processes.remove(Path(record.directory), str(root["metadata"].get("uid")))
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
    "wait_finished",
]
