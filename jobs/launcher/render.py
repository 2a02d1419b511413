"""A job -> the Kubernetes objects that run it, every pod through the tidescale scheduler.

What each kind creates besides its root, in creation order:
- InferenceService: Deployment, Service (ClusterIP on `port`), ScalingPolicy (with `scalingPolicy`).
- TrainingJob: PodGroup (a gang: `minMember` = minAvailable), headless Service, master Job (with a
  master), Indexed Job of the workers.
- BatchJob: Job.

Every object is labelled `tidescale.io/job=<name>` and `tidescale.io/kind=<Kind>` and owned by the job's
one root, the ConfigMap `tidescale-job-<name>` (ownerReferences, `blockOwnerDeletion`, not the
controller), which holds the job's resolved document as JSON: `list`/`get` read the cluster alone, and
deleting the root lets Kubernetes' garbage collector remove the rest. The root's uid is known only once it
exists, so children are rendered with a placeholder uid that `Rendered.owned_by(uid)` fills in.

Every pod template names the scheduler (`schedulerName`, default `tidescale`), its queue
(`scheduling.volcano.sh/queue-name`) and, in a gang, its PodGroup (`scheduling.k8s.io/group-name`).
A TrainingJob's workers find each other through the headless Service: `MASTER_ADDR=<name>-0.<name>` (the
master's host `<name>-master.<name>` when there is one), `MASTER_PORT`, `WORLD_SIZE` and `RANK` (the
completion index from the downward API; with a master, index + 1, set by a shell prefix in front of the
workers' command, since the downward API cannot add).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from jobs.launcher.kinds import (
    DEFAULT_QUEUE,
    DEFAULT_SCHEDULER,
    BatchJob,
    InferenceService,
    Job,
    Resources,
    TrainingJob,
    Workload,
)

JOB_LABEL = "tidescale.io/job"
KIND_LABEL = "tidescale.io/kind"
ROLE_LABEL = "tidescale.io/role"
QUEUE_LABEL = "tidescale.io/queue"  # on the root only: `jobs list --queue` selects by it
MANAGED_BY = "app.kubernetes.io/managed-by"
QUEUE_ANNOTATION = "scheduling.volcano.sh/queue-name"
GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
ROOT_PREFIX = "tidescale-job-"
SPEC_KEY = "job.json"
OWNER_UID = "<root uid>"  # replaced by `Rendered.owned_by`
VOLCANO_API = "scheduling.volcano.sh/v1beta1"
# with a master, a worker's rank is its index + 1 (the master is rank 0)
RANK_PREFIX = 'export RANK=$((JOB_COMPLETION_INDEX + 1)); exec "$@"'


@dataclass(frozen=True)
class Defaults:
    """What a document leaves out: the flags (`-n`, `--queue`, the scheduler's name), else these."""

    namespace: str = "default"
    queue: str = DEFAULT_QUEUE
    scheduler_name: str = DEFAULT_SCHEDULER


@dataclass(frozen=True)
class Rendered:
    """One job's objects: the root, then the children in creation order (owner uid still a placeholder)."""

    kind: str
    name: str
    namespace: str
    queue: str
    root: dict[str, Any]
    children: tuple[dict[str, Any], ...]

    def owned_by(self, uid: str) -> list[dict[str, Any]]:
        """The children, owned by the root whose uid is `uid`."""
        out = copy.deepcopy(list(self.children))
        for obj in out:
            for ref in obj["metadata"]["ownerReferences"]:
                ref["uid"] = uid
        return out

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [self.root, *self.children]


def root_name(name: str) -> str:
    return f"{ROOT_PREFIX}{name}"


def ref(obj: dict[str, Any]) -> str:
    """`Kind/name`, as messages name an object."""
    return f"{obj['kind']}/{obj['metadata']['name']}"


class _Ctx:
    def __init__(self, job: Job, defaults: Defaults) -> None:
        self.job = job
        self.name = job.metadata.name
        self.kind = job.kind
        self.namespace = job.metadata.namespace or defaults.namespace
        self.queue = job.spec.queue or defaults.queue
        self.scheduler = job.spec.scheduler_name or defaults.scheduler_name

    def labels(self, **extra: str) -> dict[str, str]:
        return {
            **self.job.metadata.labels,
            MANAGED_BY: "tidescale",
            JOB_LABEL: self.name,
            KIND_LABEL: self.kind,
            **extra,
        }

    def meta(self, name: str, **extra: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(**extra),
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": root_name(self.name),
                    "uid": OWNER_UID,
                    "controller": False,
                    "blockOwnerDeletion": True,
                }
            ],
        }

    def pod_template(
        self,
        role: str,
        container: dict[str, Any],
        resources: Resources,
        gang: bool,
        restart: str,
        **spec: Any,
    ) -> dict[str, Any]:
        w: Workload = self.job.spec
        annotations = {**w.annotations, **resources.annotations(), QUEUE_ANNOTATION: self.queue}
        if gang:
            annotations[GROUP_ANNOTATION] = self.name
        limits = resources.limits()
        if limits:
            container = {**container, "resources": {"limits": limits}}
        pod: dict[str, Any] = {
            "schedulerName": self.scheduler,
            "restartPolicy": restart,
            "containers": [container],
            **spec,
        }
        if w.priority:
            pod["priorityClassName"] = w.priority
        if w.node_selector:
            pod["nodeSelector"] = dict(w.node_selector)
        if w.tolerations:
            pod["tolerations"] = [t.model_dump(exclude_defaults=True) for t in w.tolerations]
        return {
            "metadata": {"labels": self.labels(**{ROLE_LABEL: role}), "annotations": annotations},
            "spec": pod,
        }


def _env(user: dict[str, str], ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours first, then the user's; a name the user sets replaces ours."""
    return [e for e in ours if e["name"] not in user] + [{"name": k, "value": v} for k, v in user.items()]


def _container(
    name: str, image: str, command: list[str], args: list[str], env: list[dict[str, Any]]
) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image}
    if command:
        c["command"] = list(command)
    if args:
        c["args"] = list(args)
    if env:
        c["env"] = env
    return c


def _root(ctx: _Ctx, document: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": root_name(ctx.name),
            "namespace": ctx.namespace,
            "labels": ctx.labels(**{QUEUE_LABEL: ctx.queue}),
        },
        "data": {SPEC_KEY: json.dumps(document, sort_keys=True)},
    }


def resolved_document(job: Job, defaults: Defaults = Defaults()) -> dict[str, Any]:
    """The job's document with what the flags filled in (namespace, queue, scheduler name)."""
    ctx = _Ctx(job, defaults)
    doc: dict[str, Any] = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["metadata"]["namespace"] = ctx.namespace
    doc["spec"]["queue"] = ctx.queue
    doc["spec"]["schedulerName"] = ctx.scheduler
    return doc


def _inference(ctx: _Ctx, job: InferenceService) -> list[dict[str, Any]]:
    s = job.spec
    container = _container("server", s.image, s.command, s.args, _env(s.env, []))
    container["ports"] = [{"name": "http", "containerPort": s.port}]
    template = ctx.pod_template("server", container, s.resources, gang=False, restart="Always")
    out = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": ctx.meta(ctx.name),
            "spec": {
                "replicas": s.replicas,
                "selector": {"matchLabels": {JOB_LABEL: ctx.name}},
                "template": template,
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": ctx.meta(ctx.name),
            "spec": {
                "selector": {JOB_LABEL: ctx.name},
                "ports": [{"name": "http", "port": s.port, "targetPort": s.port}],
            },
        },
    ]
    policy = job.policy_document(ctx.namespace)
    if policy is not None:
        policy["metadata"] = ctx.meta(ctx.name)
        out.append(policy)
    return out


def _training(ctx: _Ctx, job: TrainingJob) -> list[dict[str, Any]]:
    s = job.spec
    name = ctx.name
    master_host = f"{name}-master" if s.master is not None else f"{name}-0"
    shared = [
        {"name": "MASTER_ADDR", "value": f"{master_host}.{name}"},
        {"name": "MASTER_PORT", "value": str(s.port)},
        {"name": "WORLD_SIZE", "value": str(s.pods)},
    ]
    out: list[dict[str, Any]] = []
    if s.gang:
        group_spec: dict[str, Any] = {"minMember": s.min_available or s.pods, "queue": ctx.queue}
        if s.priority:
            group_spec["priorityClassName"] = s.priority
        out.append(
            {"apiVersion": VOLCANO_API, "kind": "PodGroup", "metadata": ctx.meta(name), "spec": group_spec}
        )
    out.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": ctx.meta(name),
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,  # peers resolve each other before they are ready
                "selector": {JOB_LABEL: name},
                "ports": [{"name": "dist", "port": s.port, "targetPort": s.port}],
            },
        }
    )
    port = [{"name": "dist", "containerPort": s.port}]
    if s.master is not None:
        m = s.master
        master = _container(
            "master",
            m.image or s.image,
            s.command if m.command is None else m.command,
            s.args if m.args is None else m.args,
            _env(s.env, [*shared, {"name": "RANK", "value": "0"}]),
        )
        master["ports"] = port
        template = ctx.pod_template(
            "master",
            master,
            m.resources or s.resources,
            gang=s.gang,
            restart="Never",
            hostname=master_host,
            subdomain=name,
        )
        out.append(_job(ctx, f"{name}-master", template, 1, 1, s.backoff_limit, indexed=False))
    if s.master is not None:
        command = ["sh", "-c", RANK_PREFIX, "tidescale-rank", *s.command, *s.args]
        args: list[str] = []
        rank: list[dict[str, Any]] = []  # exported by the prefix
    else:
        command, args = s.command, s.args
        index = f"metadata.annotations['{INDEX_ANNOTATION}']"
        rank = [{"name": "RANK", "valueFrom": {"fieldRef": {"fieldPath": index}}}]
    worker = _container("worker", s.image, command, args, _env(s.env, [*shared, *rank]))
    worker["ports"] = port
    template = ctx.pod_template("worker", worker, s.resources, gang=s.gang, restart="Never", subdomain=name)
    out.append(_job(ctx, name, template, s.workers, s.workers, s.backoff_limit, indexed=True))
    return out


def _job(
    ctx: _Ctx,
    name: str,
    template: dict[str, Any],
    completions: int,
    parallelism: int,
    backoff_limit: int,
    indexed: bool,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "completions": completions,
        "parallelism": parallelism,
        "backoffLimit": backoff_limit,
        "template": template,
    }
    if indexed:
        spec["completionMode"] = "Indexed"
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": ctx.meta(name), "spec": spec}


def _batch(ctx: _Ctx, job: BatchJob) -> list[dict[str, Any]]:
    s = job.spec
    container = _container("main", s.image, s.command, s.args, _env(s.env, []))
    template = ctx.pod_template("main", container, s.resources, gang=False, restart="Never")
    return [_job(ctx, ctx.name, template, s.completions, s.parallelism, s.backoff_limit, indexed=False)]


def render(job: Job, defaults: Defaults = Defaults()) -> Rendered:
    """The job's root and children (see the module's table)."""
    ctx = _Ctx(job, defaults)
    if isinstance(job, InferenceService):
        children = _inference(ctx, job)
    elif isinstance(job, TrainingJob):
        children = _training(ctx, job)
    else:
        children = _batch(ctx, job)
    root = _root(ctx, resolved_document(job, defaults))
    return Rendered(ctx.kind, ctx.name, ctx.namespace, ctx.queue, root, tuple(children))
